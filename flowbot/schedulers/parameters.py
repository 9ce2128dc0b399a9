"""Typed parameters of a force scheduler: what the API, the CLI and the web page offer and check."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..fields import FLAG, NAME, TEXT, checked, list_of, optional, refuse, whole


class Parameter:
    """One field of a force form; its value becomes a build property of the same name.

    Args:
        name: the property name.
        label: what people see (defaults to the name).
        default: the value when none is given.
        required: refuse a force without it.
    """

    kind = "string"

    @checked(name=NAME, label=optional(TEXT), required=FLAG)
    def __init__(self, name: str, *, label: str | None = None, default: Any = None, required: bool = False):
        self.name = name
        self.label = label or name
        self.required = required
        try:
            self.default = default if default is None else self.parse(default)
        except ValueError as exc:
            raise refuse(self, "default", f"the default {default!r} is not a value it takes: {exc}") from None

    def parse(self, raw: Any) -> Any:
        """The value from what a client sent (JSON or text); raises ValueError saying why not."""
        return raw

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.kind,
            "label": self.label,
            "default": self.default,
            "required": self.required,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class StringParameter(Parameter):
    """Text, optionally of at most ``max_length`` characters."""

    @checked(max_length=optional(whole(minimum=1)))
    def __init__(self, name: str, *, max_length: int | None = None, **options: Any):
        self.max_length = max_length
        super().__init__(name, **options)

    def parse(self, raw: Any) -> str:
        if not isinstance(raw, str):
            raise ValueError(f"{self.name} must be text")
        if self.max_length is not None and len(raw) > self.max_length:
            raise ValueError(f"{self.name} must be at most {self.max_length} characters")
        return raw


class IntParameter(Parameter):
    """A whole number, optionally between ``minimum`` and ``maximum``."""

    kind = "int"

    @checked(minimum=optional(whole()), maximum=optional(whole()))
    def __init__(self, name: str, *, minimum: int | None = None, maximum: int | None = None, **options: Any):
        self.minimum, self.maximum = minimum, maximum
        super().__init__(name, **options)
        if minimum is not None and maximum is not None and minimum > maximum:
            raise refuse(self, "maximum", f"maximum {maximum} is below minimum {minimum}")

    def parse(self, raw: Any) -> int:
        if isinstance(raw, bool):
            raise ValueError(f"{self.name} must be a whole number")
        try:
            value = int(raw.strip()) if isinstance(raw, str) else raw
        except ValueError:
            raise ValueError(f"{self.name} must be a whole number, not {raw!r}") from None
        if not isinstance(value, int):
            raise ValueError(f"{self.name} must be a whole number, not {raw!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{self.name} must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{self.name} must be at most {self.maximum}")
        return value

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "minimum": self.minimum, "maximum": self.maximum}


class BoolParameter(Parameter):
    """Yes or no (``true``/``false``, ``1``/``0``, ``yes``/``no`` from text)."""

    kind = "bool"
    _TEXT = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}

    @checked(default=FLAG)
    def __init__(self, name: str, *, default: bool = False, **options: Any):
        super().__init__(name, default=default, **options)

    def parse(self, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in self._TEXT:
            return self._TEXT[raw.strip().lower()]
        raise ValueError(f"{self.name} must be true or false, not {raw!r}")


class ChoiceParameter(Parameter):
    """One of ``choices``."""

    kind = "choice"

    @checked(choices=list_of(TEXT, "a list of strings"))
    def __init__(self, name: str, *, choices: Iterable[str], **options: Any):
        self.choices = list(choices)
        if self.choices:
            options.setdefault("default", self.choices[0])
        super().__init__(name, **options)
        if not self.choices:
            raise refuse(self, "choices", "needs choices")

    def parse(self, raw: Any) -> str:
        if raw not in self.choices:
            raise ValueError(f"{self.name} must be one of {self.choices}, not {raw!r}")
        return raw

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "choices": self.choices}


def form_values(params: Sequence[Parameter], given: dict[str, Any] | None, source: str) -> dict[str, tuple[Any, str]]:
    """The properties a form's ``params`` make of the values ``given`` (checked and converted, with
    defaults for those left out), each as ``(value, source)``.

    Raises:
        ValueError: a parameter that is unknown, missing or of the wrong type.
    """
    given = dict(given or {})
    values: dict[str, tuple[Any, str]] = {}
    for param in params:
        raw = given.pop(param.name, None)
        if _left_empty(raw) and (param.required or not isinstance(param, StringParameter)):
            raw = None  # only an optional string takes "" as its value
        if raw is not None:
            values[param.name] = (param.parse(raw), source)
        elif param.required:
            raise ValueError(f"{param.name} is required")
        elif param.default is not None:
            values[param.name] = (param.default, source)
    if given:
        known = [p.name for p in params] or "none"
        raise ValueError(f"unknown parameter(s) {sorted(given)}; the form takes {known}")
    return values


def unique_names(owner: Any, argument: str, params: Sequence[Parameter]) -> None:
    """Refuse, at the line of ``owner``'s ``argument``, parameters that share a name."""
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise refuse(owner, argument, f"has parameters with the same name: {names}")


def _left_empty(raw: Any) -> bool:
    """Whether ``raw`` is text with nothing in it, as a form sends a field left empty."""
    return isinstance(raw, str) and not raw.strip()
