"""The ``Approval`` step (``flowbot/steps/approval.py``): what a decision carries, and what the step
makes of it, against a stand-in build."""

from __future__ import annotations

from typing import Any

import pytest

from flowbot import Approval, BoolParameter, IntParameter, StringParameter
from flowbot.results import Result
from flowbot.steps.approval import Decision


class WaitingBuild:
    """Just enough of a build for an approval: the decision it is handed, and what the step recorded."""

    def __init__(self, decision: Decision | None):
        self.decision = decision
        self.properties: dict[str, tuple[Any, str]] = {}
        self.summary = ""

    async def wait_for_approval(self, approval: Approval) -> Decision | None:
        return self.decision

    def set_property(self, name: str, value: Any, source: str) -> None:
        self.properties[name] = (value, source)

    def set_summary(self, text: str) -> None:
        self.summary = text


def test_an_approval_checks_its_form_and_a_rejection_takes_none():
    step = Approval("ship", fields=[StringParameter("channel", required=True), IntParameter("percent", default=10)])
    decision = step.decide(True, "alice", "go", {"channel": "beta", "percent": "25"})
    assert decision.properties == {"channel": ("beta", "Approval Form"), "percent": (25, "Approval Form")}
    assert step.decide(True, values={"channel": "beta"}).properties["percent"] == (10, "Approval Form")
    with pytest.raises(ValueError, match="channel is required"):
        step.decide(True, values={})
    with pytest.raises(ValueError, match="unknown parameter"):
        step.decide(True, values={"channel": "beta", "colour": "red"})
    with pytest.raises(ValueError, match="a rejection takes no form values"):
        step.decide(False, values={"channel": "beta"})
    assert step.decide(False, "bob", "not today").properties == {}


async def test_the_step_passes_on_approval_fails_on_rejection_or_timeout_and_says_who_decided():
    step = Approval("ship", fields=[BoolParameter("canary")], timeout=60)
    approved = WaitingBuild(step.decide(True, "alice", "go", {"canary": "yes"}))
    assert await step.run(approved) == Result.SUCCESS
    assert approved.properties == {"canary": (True, "Approval Form")}
    assert approved.summary == "approved by alice: go"
    rejected = WaitingBuild(step.decide(False, "bob"))
    assert await step.run(rejected) == Result.FAILURE and rejected.summary == "rejected by bob"
    timed_out = WaitingBuild(None)
    assert await step.run(timed_out) == Result.FAILURE and timed_out.summary == "no decision within 60 s"
    assert step.halt_on_failure and not step.needs_worker  # a rejection halts the build; waiting needs no worker
