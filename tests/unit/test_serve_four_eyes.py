"""Four eyes on serve's embedded backend: N distinct approvers of the plan held, approvals that expire, the requester
never approving their own run, a re-plan clearing approvals, a rollback asked for by hand; the engine and its SQLite
store for real, the runs on fake transports (as test_serve.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediate.serve.backend import EngineBackend, plan_identity
from remediate.serve.engine import Refused
from remediate.serve.identity import Person

from . import test_serve as base
from .test_serve import Serve, alert, fake_host, make

receiver = base.receiver  # the fixture: an outgoing webhook's far end
ALICE, BOB, CAROL = (Person(name, frozenset({"oncall"}), "token") for name in ("alice", "bob", "carol"))


def four_eyes(tmp_path: Path, receiver_url: str, **rule: Any) -> Serve:
    return make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, receiver_url, **rule)


@pytest.fixture
def two(tmp_path: Path, receiver: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """serve whose rule wants two approvers, each approval good for ten minutes."""
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    made = four_eyes(tmp_path, receiver, approvals=2, approval_expires="10m")
    yield made
    made.engine.stop()


def history(serve: Serve, number: int) -> list[tuple[str, str]]:
    return [(h["what"], h["detail"]) for h in serve.engine.get(number).history]


def approve(serve: Serve, number: int, person: Person) -> Any:
    done = EngineBackend(serve.engine).approve(number, person)
    serve.engine.idle()
    return done


def test_two_distinct_approvers_are_needed_and_the_apply_names_the_plan_they_reviewed(two: Serve) -> None:
    number = two.post(alert())[0]["id"]
    planned = two.engine.get(number)
    assert planned.planned_at == two.clock.now and planned.approvals == []
    two.clock.now += 120  # the approvals come later than the plan: the apply names the plan's time, not theirs
    first = approve(two, number, ALICE)
    assert first.state == "pending" and [a["by"] for a in first.approvals] == ["alice"]
    assert ("approved", "by alice (token) (1 of 2): the plan waits for 1 more") in history(two, number)
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"  # one approver: nothing ran
    two.clock.now += 60
    approve(two, number, BOB)
    done = two.engine.get(number)
    assert done.state == "waiting_resolved" and done.approved_by == "alice, bob", done
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    when = time.strftime("%H:%M:%S", time.gmtime(planned.planned_at or 0))
    identity = str(plan_identity(planned))
    assert ("applying", f"exactly the plan of {when} (identity {identity[:8]}…) on h1, approved by alice (token), "
                        "bob (token)") in history(two, number)
    public = two.incident(number)
    assert [(a["by"], a["via"], a["plan"]) for a in public["approvals"]] == [("alice", "token", identity),
                                                                              ("bob", "token", identity)]


def test_the_same_person_twice_is_refused_said_in_the_history_and_runs_nothing(two: Serve) -> None:
    number = two.post(alert())[0]["id"]
    approve(two, number, ALICE)
    with pytest.raises(Refused, match="alice approved this plan already"):
        approve(two, number, Person("alice", frozenset(), "session"))  # another way in is the same person
    incident = two.engine.get(number)
    assert incident.state == "pending" and len(incident.approvals) == 1
    assert any(what == "approval refused" and detail.startswith("alice (session): alice approved this plan already")
               for what, detail in history(two, number))
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"


def test_an_expired_approval_is_not_counted_and_the_history_says_so(two: Serve) -> None:
    number = two.post(alert())[0]["id"]
    approve(two, number, ALICE)
    two.clock.now += 601
    approve(two, number, BOB)
    incident = two.engine.get(number)
    assert incident.state == "pending" and [a["by"] for a in incident.approvals] == ["bob"], incident.history
    assert any(what == "approval dropped" and "alice's approval of" in detail and "expired" in detail
               for what, detail in history(two, number))
    approve(two, number, ALICE)  # alice again, within the window: two distinct, unexpired
    assert two.engine.get(number).state == "waiting_resolved"


def test_the_requester_may_not_approve_their_own_run(tmp_path: Path, receiver: str) -> None:
    serve = four_eyes(tmp_path, receiver)
    try:
        asked = EngineBackend(serve.engine).request("app", "h1", ALICE)
        serve.engine.idle()
        incident = serve.engine.get(asked.id)
        assert incident.state == "pending" and incident.requested_by == "alice" and incident.plan is not None
        assert incident.fingerprint.startswith("manual:") and incident.rule == "app" and incident.host == "h1"
        with pytest.raises(Refused, match="alice asked for this run: someone else must approve it"):
            approve(serve, asked.id, ALICE)
        assert serve.engine.get(asked.id).state == "pending"
        assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
        approve(serve, asked.id, BOB)
        assert serve.engine.get(asked.id).state == "waiting_resolved"
        for rule, host, words in (("nope", "h1", "no rule 'nope'"), ("app", "h9", "host 'h9' is not in")):
            with pytest.raises(Refused, match=words):
                serve.engine.manual.request(rule, host, ALICE)
    finally:
        serve.engine.stop()


def test_a_replan_clears_the_approvals_and_its_requester_may_not_approve(two: Serve) -> None:
    number = two.post(alert())[0]["id"]
    approve(two, number, ALICE)
    EngineBackend(two.engine).replan(number, CAROL)
    two.engine.idle()
    incident = two.engine.get(number)
    assert incident.state == "pending" and incident.approvals == [] and incident.requested_by == "carol"
    assert incident.plan is not None and incident.planned_at is not None
    approve(two, number, BOB)
    assert two.engine.get(number).state == "pending"  # alice's approval was of the plan before: bob is 1 of 2
    with pytest.raises(Refused, match="carol asked for this run"):
        approve(two, number, CAROL)
    approve(two, number, ALICE)
    assert two.engine.get(number).state == "waiting_resolved"
    with pytest.raises(Refused, match="only a pending incident"):
        two.engine.manual.replan(number, CAROL)


def test_an_approval_of_a_plan_that_changed_underfoot_is_not_counted(two: Serve) -> None:
    number = two.post(alert())[0]["id"]
    seen = plan_identity(two.engine.get(number))
    approve(two, number, ALICE)
    two.fakes["h1"].put("/etc/app.conf", "someone else's edit\n")
    approve(two, number, BOB)  # the apply finds the host changed: a fresh plan, no approval kept
    incident = two.engine.get(number)
    assert incident.state == "pending" and incident.approvals == [] and plan_identity(incident) != seen
    with pytest.raises(Refused, match="not the one you approved"):
        EngineBackend(two.engine).approve(number, ALICE, seen)
    approve(two, number, BOB)
    assert two.engine.get(number).state == "pending"


def test_a_rollback_asked_for_by_hand_undoes_the_run(tmp_path: Path, receiver: str) -> None:
    serve = four_eyes(tmp_path, receiver)
    try:
        number = serve.post(alert())[0]["id"]
        with pytest.raises(Refused, match="only an incident whose run applied"):
            serve.engine.manual.rollback(number, CAROL)
        approve(serve, number, ALICE)
        assert serve.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
        EngineBackend(serve.engine).rollback(number, CAROL)
        serve.engine.idle()
        incident = serve.engine.get(number)
        assert incident.state == "rolled_back" and incident.reason is not None
        assert incident.reason.startswith("rolled back by carol (token): run "), incident.reason
        assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    finally:
        serve.engine.stop()


def test_a_failed_incident_that_ran_nothing_is_planned_again(tmp_path: Path, receiver: str) -> None:
    serve = four_eyes(tmp_path, receiver)
    try:
        serve.fakes["h1"].put("/etc/app.conf", "fixed\n")  # nothing to do: the alert has another cause
        number = serve.post(alert())[0]["id"]
        failed = serve.engine.get(number)
        assert failed.state == "failed" and failed.run_id is None, failed
        serve.fakes["h1"].put("/etc/app.conf", "broken\n")  # it broke in the way the playbook fixes after all
        EngineBackend(serve.engine).replan(number, CAROL)
        serve.engine.idle()
        again = serve.engine.get(number)
        assert again.state == "pending" and again.plan is not None and again.requested_by == "carol"
        assert again.reason is None and ("re-plan", "asked by carol (token): the plan is made again and its approvals "
                                                    "are cleared; carol may not approve it") in history(serve, number)
        approve(serve, number, BOB)
        assert serve.engine.get(number).state == "waiting_resolved"
    finally:
        serve.engine.stop()
