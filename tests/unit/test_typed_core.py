"""The typed core: every event printed is an Event (no hand-built dict), states are Enums, and the library's plan()
returns a PlanSet that apply() applies exactly (the host still as planned, or nothing changes)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import remediate
from remediate import api
from remediate.contract.plan import PlanStatus, ShownPlan
from remediate.engine import events, outcome
from remediate.engine.events import Event

ROOT = Path(remediate.__file__).parent


def event_literals() -> list[str]:
    """Every dict literal in the package with an "event" key, outside events.py and event.py (the base, with the one
    serializer): a name printed by hand."""
    found = []
    for path in ROOT.rglob("*.py"):
        if path in (ROOT / "engine" / "events.py", ROOT / "engine" / "event.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "event" for k in node.keys):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_event_is_built_by_hand_outside_events_py() -> None:
    assert event_literals() == []


def subclasses(cls: type[Event]) -> list[type[Event]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]


def test_every_event_name_is_one_typed_event() -> None:
    names = [c.name for c in subclasses(Event)]
    assert len(names) == len(set(names)), names
    printed = {"command", "saved_plan", "step_planned", "run_started", "validated", "inventory_host", "inventory_group",
               "playbook", "check_type", "error", "kind", "run", "check", "signature", "probe", "diagnosis", "summary",
               "run_finished", "notice", "plan_group", "rollout_started", "rollout_finished", "rollout_aborted"}
    assert printed <= set(names)


def test_the_json_of_an_event_is_its_fields_in_order_with_a_records_own_fields_in_place() -> None:
    assert events.Command("h1", "true", 0, 0.01).as_dict() == {"event": "command", "host": "h1", "command": "true",
                                                               "exit_code": 0, "duration": 0.01}
    planned = ShownPlan("conf", "file", "host", PlanStatus.OK, "as wanted")
    assert list(events.StepPlanned("h1", planned).as_dict()) == ["event", "host", "step", "kind", "target", "status",
                                                                 "reason", "diffs", "commands", "checks"]
    assert events.Diagnosed("h1", True, 0, 0, [], None, [], {}).as_dict()["error"] is None  # always printed


def test_states_are_enums_that_print_and_compare_as_their_words() -> None:
    done = outcome.Outcome("h1", "rolled-back", 1)  # type: ignore[arg-type]
    assert done.status is outcome.Status.ROLLED_BACK and done.status == "rolled-back"
    assert json.dumps({"status": done.status}) == '{"status": "rolled-back"}' and f"{done.status}" == "rolled-back"
    with pytest.raises(ValueError):
        outcome.Outcome("h1", "rolled_back", 1)  # type: ignore[arg-type]
    assert outcome.Mode.PLAN == "plan" and outcome.StepState.TO_CHECK == "to-check" and outcome.RunEnd.NO_OP == "no-op"


def test_serves_statuses_are_its_own_words(tmp_path: Path) -> None:
    from remediate.serve.runs import STATUSES, ApplyStatus
    assert STATUSES[outcome.Status.ROLLBACK_INCOMPLETE] == "incomplete" and ApplyStatus.ROLLED_BACK == "rolled_back"


def test_plan_returns_a_planset_that_apply_applies_only_while_the_host_is_as_planned(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    opts = api.Options(inventory=inv, hosts=("h1",), playbook=str(book))
    seen: list[Event] = []
    planset = api.plan(opts, seen.append, lambda host: fake)
    [(name, planned)] = planset.hosts.items()
    assert name == "h1" and planned.changed and planned.outcome is not None
    assert planned.outcome.status is outcome.Status.PENDING and [p.step_id for p in planned.plans] == ["conf"]
    assert "-old\n+new" in planned.review() and planned.review().startswith("# conf (file): ")
    assert all(isinstance(e, Event) for e in seen)
    fake.put("/etc/app.conf", "changed underfoot\n")
    stale = api.apply(planset, seen.append, lambda host: fake, lambda pending: True)
    assert [o.status for o in stale] == ["stale"] and fake.files["/etc/app.conf"].content == b"changed underfoot\n"
    fake.put("/etc/app.conf", "old\n")
    applied = api.apply(planset, seen.append, lambda host: fake, lambda pending: True)
    assert [o.status for o in applied] == ["changed"] and fake.files["/etc/app.conf"].content == b"new\n"


def test_a_planset_document_is_the_saved_plan_and_comes_back_whole(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    opts = api.Options(inventory=inv, hosts=("h1",), playbook=str(book))
    planset = api.plan(opts, lambda e: None, lambda host: fake)
    doc = planset.document()
    again = api.PlanSet.saved(doc)
    assert again.hosts["h1"].identity == planset.hosts["h1"].identity and again.options.hosts == ("h1",)
    assert [o.status for o in api.apply(again, lambda e: None, lambda host: fake, lambda p: True)] == ["changed"]
