"""``Approval``: a step that holds its build until a person approves or rejects it.

While it waits the build holds no worker and none of its builder's locks: other builds take them,
and the next step that needs a worker takes one of the builder's again (it may be another one).
People allowed to (the ``approve`` permission of :class:`~flowbot.roles.Role`, for the builder)
decide from the web page, the API (``POST /api/builds/{id}/approve`` or ``/reject``), the CLI
(``flowbot approve BUILD``, ``flowbot reject BUILD``) or the notebook panel, filling in the step's
form, whose values become build properties.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..fields import RENDERED_TEXT, SECONDS, checked, instance, list_of, optional
from ..results import Result
from ..schedulers.parameters import Parameter, form_values, unique_names
from .base import BuildContext, Step

#: Where the values of an approval's form come from, as build properties.
APPROVAL_SOURCE = "Approval Form"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a person decided about a build that waits for approval."""

    approved: bool
    #: Who decided ("" on a master without access control).
    by: str = ""
    #: Why, in their words.
    comment: str = ""
    #: The form's values, as properties: ``{name: (value, source)}``.
    properties: dict[str, tuple[Any, str]] = field(default_factory=dict)


class Approval(Step):
    """Hold the build until a person approves it (the build goes on) or rejects it (it fails).

    Args:
        name: shown in every view, and on the button people press.
        prompt: what people are asked (``"Deploy 2.4 to production?"``); may hold renderables.
        fields: a form to fill in when approving, made of the force scheduler's parameters
            (:class:`~flowbot.StringParameter`, :class:`~flowbot.IntParameter`...); its values
            become build properties.
        timeout: seconds to wait for a decision; without one in time the step fails (None: no limit).
        **flags: the flags of :class:`~flowbot.steps.base.Step`; ``halt_on_failure`` is True by
            default, so a rejected build runs only its ``always_run`` steps after this one.
    """

    default_name = "approval"
    needs_worker = False

    @checked(
        prompt=RENDERED_TEXT,
        fields=list_of(instance(Parameter, "a parameter (StringParameter, IntParameter...)"), "a list of parameters"),
        timeout=optional(SECONDS),
    )
    def __init__(
        self,
        name: str | None = None,
        *,
        prompt: Any = "",
        fields: Iterable[Parameter] = (),
        timeout: float | None = None,
        **flags: Any,
    ):
        flags.setdefault("halt_on_failure", True)
        super().__init__(name, **flags)
        self.prompt = prompt
        self.fields = list(fields)
        self.timeout = timeout
        unique_names(self, "fields", self.fields)

    def decide(self, approved: bool, by: str = "", comment: str = "", values: dict[str, Any] | None = None) -> Decision:
        """A decision, with the form's ``values`` checked (only an approval fills the form in).

        Raises:
            ValueError: a value that is unknown, missing or of the wrong type.
        """
        properties = form_values(self.fields, values, APPROVAL_SOURCE) if approved else {}
        if not approved and values:
            raise ValueError("a rejection takes no form values")
        return Decision(approved, by, comment, properties)

    def describe(self, build: BuildContext) -> dict[str, Any]:
        """The step as the API and the page show ``build`` waiting for it."""
        return {
            "name": self.name,
            "prompt": str(build.render(self.prompt)),
            "fields": [f.describe() for f in self.fields],
            "timeout": self.timeout,
        }

    async def run(self, build: BuildContext) -> Result:
        decision = await build.wait_for_approval(self)
        if decision is None:
            build.set_summary(f"no decision within {self.timeout:g} s")
            return Result.FAILURE
        for name, (value, source) in decision.properties.items():
            build.set_property(name, value, source)
        verb = "approved" if decision.approved else "rejected"
        said = f": {decision.comment}" if decision.comment else ""
        build.set_summary(f"{verb} by {decision.by or 'someone'}{said}")
        return Result.SUCCESS if decision.approved else Result.FAILURE
