"""A fleet's events in the human renderer: each host's plan and run start are neither shown nor masked one by one
(the plans come grouped); a host outside the fleet's rows is shown as any other."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from remediate import redact
from remediate.cli import render
from remediate.contract.plan import PlanStatus, ShownDiff, ShownPlan
from remediate.engine import events
from remediate.engine.outcome import Action, Mode

STEP = ShownPlan("conf", "file", "h1", PlanStatus.CHANGE, "password Tr0ub4dor&3x differs",
                 (ShownDiff("/etc/app.conf", "--- a\n+++ b\n-old\n+new Tr0ub4dor&3x\n"),), ("postfix reload",))


def fleet_of_two(monkeypatch: pytest.MonkeyPatch) -> tuple[render.HumanRenderer, io.StringIO, list[Any]]:
    """A renderer that has shown a rollout on h1 and h2, what it writes, and each value shown() gets from now on."""
    redact.register("Tr0ub4dor&3x")
    given: list[Any] = []
    real = render.shown
    monkeypatch.setattr(render, "shown", lambda value, secret=False: (given.append(value), real(value, secret))[1])
    out = io.StringIO()
    renderer = render.HumanRenderer(Console(file=out, highlight=False, soft_wrap=True), Console(file=io.StringIO()))
    renderer(events.RolloutStarted(Mode.APPLY, ["h1", "h2"], 2, None, 0.0))
    given.clear()
    return renderer, out, given


def test_a_fleet_hosts_plan_is_not_masked_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer, out, given = fleet_of_two(monkeypatch)
    renderer(events.StepPlanned("h1", STEP, 0.1))
    renderer(events.RunStarted("h2", Mode.APPLY, "r2", "book"))
    assert given == ["h1", "h2"]  # the host, to find its row: nothing else of either event
    renderer(events.StepPlanned("h9", STEP, 0.1))  # not one of the fleet's hosts: shown as any plan
    assert out.getvalue().splitlines()[1:] == [
        "  ~ conf (file on h1) will change: password ******** differs", "      --- a", "      +++ b", "      -old",
        "      +new ********", "      $ postfix reload"]


def test_a_fleet_hosts_steps_mask_only_what_their_row_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer, out, given = fleet_of_two(monkeypatch)
    renderer(events.StepStarted("h1", "conf", Action.APPLY))
    renderer(events.StepApplied("h1", "conf", 0.2))
    renderer(events.StepFailed("h2", "conf", "cannot write: password Tr0ub4dor&3x refused"))
    assert all(isinstance(v, str) for v in given), given  # the row's text, never a whole event walked through
    assert out.getvalue().splitlines()[1:] == [
        "h1  conf applying", "h1  conf applied", "h2  conf FAILED: cannot write: password ******** refused"]
