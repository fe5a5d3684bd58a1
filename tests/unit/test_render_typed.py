"""The human renderer reads typed events: it dispatches on their classes and reads their fields, never their JSON form;
and a step's plan as shown is a typed record whose status is an Enum."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from remediate import redact
from remediate.cli.render import HANDLERS, HumanRenderer
from remediate.contract.plan import FileChange, Plan, PlanStatus, ShownDiff, ShownPlan
from remediate.engine import events
from remediate.engine.events import Event
from remediate.engine.outcome import Action, Mode, RunEnd, Status


def rendered(*shown: Event) -> str:
    out = io.StringIO()
    render = HumanRenderer(Console(file=out, width=200, highlight=False), Console(file=out, width=200))
    for event in shown:
        render(event)
    return out.getvalue()


def test_a_plans_status_is_an_enum_and_its_shown_form_reads_back_from_json() -> None:
    plan = Plan("conf", "file", "h1", "differs", files=(FileChange("/etc/app.conf", "h1", b"old\n", b"new\n"),))
    assert plan.status is PlanStatus.CHANGE and Plan("c", "assert", "h1", "x", checks=("a",)).status is PlanStatus.CHECK
    assert Plan("c", "file", "h1", "same").status is PlanStatus.OK and plan.event()["status"] == "change"
    assert ShownPlan.parse(plan.event()) == plan.shown() and plan.shown().diffs[0].path == "/etc/app.conf"


def test_the_human_renderer_never_needs_an_events_json_form(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Event) -> None:
        raise AssertionError(f"{self.name} turned into JSON to be shown")

    monkeypatch.setattr(Event, "as_dict", refuse)
    redact.register("Tr0ub4dor&3x")
    step = ShownPlan("conf", "file", "h1", PlanStatus.CHANGE, "password Tr0ub4dor&3x \x1b[2J differs",
                     (ShownDiff("/etc/app.conf", "--- a\n+++ b\n-old\n+new\n"),), ("postfix reload",))
    text = rendered(
        events.RolloutStarted(Mode.APPLY, ["h1", "h2"], 2, None, 0.0),
        events.StepPlanned("h1", step, 0.1),
        events.PlanGroup(["h1", "h2"], 1, Status.PENDING, [step], None),
        events.StepStarted("h1", "conf", Action.APPLY),
        events.StepApplied("h1", "conf", 0.2),
        events.StepVerified("h1", "conf", "read back", 0.1),
        events.RunFinished("h1", "r1", RunEnd.APPLIED, 0),
        events.Summary("h1", Status.CHANGED, 0, "r1", "applied and verified"),
        events.Summary("h2", Status.SKIPPED, 4, None, "not started"),
        events.RolloutFinished(2, {"changed": 1, "skipped": 1}, 4),
        events.Command("h1", "postfix reload", 1, 0.5, None, "fatal: no"),
    )
    assert "apply on 2 hosts, 2 at a time" in text and "2 hosts (h1, h2): 1 step(s) to change" in text
    assert "conf (file on h1) will change: password ******** ^[[2J differs" in text and "+new" in text
    assert "$ postfix reload" in text and "h1  conf applying" in text and "h1  conf verified: read back" in text
    assert "Tr0ub4dor" not in text and "\x1b[2J" not in text
    assert "h2 " in text and "skipped" in text and "not started" in text  # the summary table
    assert "h1 $ postfix reload -> 1" in text and "err: fatal: no" in text


def test_every_event_people_see_has_its_own_method() -> None:
    assert {events.StepPlanned, events.PlanGroup, events.Summary, events.RunFinished, events.Command} <= set(HANDLERS)
