"""serve on Temporal: the apply activity asks again whether the approvals approve the plan as it begins. The workflow
took them when they were given, but the activity may start much later (no worker was up, serve was restarted): an
approval older than the rule's approval_expires, or whose person was revoked since, no longer counts, and the run is
refused without changing anything, as the embedded backend refuses it (execution.approved)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from remediate.serve import approvals
from remediate.serve import rules as rules_mod
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal.activities import Activities, Steps
from remediate.serve.temporal.shared import Ran, RunInput

from .fakes import FakeTransport

RULE = {"name": "app", "match": {"alertname": "A"}, "approval": "required", "approvals": 2,
        "approval_expires": "1h"}


def setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            revoked: frozenset[str] = frozenset()) -> tuple[Activities, FakeTransport, dict[str, Any], str]:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    book = tmp_path / "book.yml"
    book.write_text("name: app\nsteps:\n  - id: conf\n    kind: file\n    params: {path: /etc/app.conf, content: x}\n")
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(json.dumps({"rules": [{**RULE, "playbook": str(book)}]}))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    host = FakeTransport(name="h1")
    host.put("/etc/app.conf", "broken\n")
    runs = LibraryRuns(inventory, lambda opts, emit: (lambda h: host), tmp_path)
    rules = rules_mod.load(rules_path)
    activities = Activities(runs, rules, lambda: True, lambda by, via: by not in revoked)
    rule = rules.named("app")
    assert rule is not None
    planned = runs.plan(rule, "h1", Steps())
    assert planned.plan is not None, planned.message
    return activities, host, dict(planned.plan), str(approvals.identity_of(planned.plan, "h1"))


def apply(activities: Activities, plan: dict[str, Any], given: list[dict[str, Any]]) -> Ran:
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "heartbeat_timeout": timedelta(seconds=10)})
    ran: Ran = env.run(activities.apply, RunInput(1, "app", "h1", "20261206T000000Z-abcdef", plan, "", given, None))
    return ran


def approval(by: str, identity: str, age: float) -> dict[str, Any]:
    return {"by": by, "via": "token", "at": time.time() - age, "plan": identity}


def test_an_approval_that_expired_while_the_apply_waited_for_a_worker_refuses_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    activities, host, plan, identity = setting(tmp_path, monkeypatch)
    ran = apply(activities, plan, [approval("alice", identity, 7200), approval("bob", identity, 5)])
    assert ran.status == "unapproved" and ran.run_id is None, ran
    assert "1 of 2 count" in ran.message and "nothing was changed" in ran.message
    assert [a["by"] for a in ran.approvals or []] == ["bob"]  # the one that still counts is kept
    dropped = [detail for what, detail in ran.log if what == "approval dropped"]
    assert len(dropped) == 1 and "alice" in dropped[0] and "expired" in dropped[0], ran.log
    assert host.files["/etc/app.conf"].content == b"broken\n" and not host.writes


def test_an_approver_revoked_since_refuses_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    activities, host, plan, identity = setting(tmp_path, monkeypatch, revoked=frozenset({"bob"}))
    ran = apply(activities, plan, [approval("alice", identity, 60), approval("bob", identity, 5)])
    assert ran.status == "unapproved", ran
    assert [a["by"] for a in ran.approvals or []] == ["alice"]
    assert any(what == "approval dropped" and "bob" in detail and "revoked" in detail for what, detail in ran.log)
    assert host.files["/etc/app.conf"].content == b"broken\n" and not host.writes


def test_approvals_that_still_stand_apply_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    activities, host, plan, identity = setting(tmp_path, monkeypatch)
    ran = apply(activities, plan, [approval("alice", identity, 3000), approval("bob", identity, 5)])
    assert ran.status == "applied", ran
    assert host.files["/etc/app.conf"].content == b"x"
