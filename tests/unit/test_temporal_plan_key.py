"""serve on Temporal across machines: a replica whose plan key is not the one the plan was made under does not apply
it (it would call every plan changed underfoot), says why and what to do, and changes nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from remediate.engine import planfile
from remediate.serve import rules as rules_mod
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal.activities import Activities
from remediate.serve.temporal.shared import RunInput

from .fakes import FakeTransport


def test_an_apply_planned_under_another_plan_key_changes_nothing_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    book = tmp_path / "book.yml"
    book.write_text("name: app\nsteps:\n  - id: conf\n    kind: file\n    params: {path: /etc/app.conf, content: x}\n")
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(json.dumps({"rules": [{"name": "app", "match": {"alertname": "A"}, "playbook": str(book)}]}))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    host = FakeTransport(name="h1")
    host.put("/etc/app.conf", "broken\n")
    runs = LibraryRuns(inventory, lambda opts, emit: (lambda h: host), tmp_path)
    activities = Activities(runs, rules_mod.load(rules_path), lambda: True)
    env = ActivityEnvironment()
    env.info = env.info.__class__(**{**env.info.__dict__, "heartbeat_timeout": timedelta(seconds=10)})
    other = "0123456789abcdef"
    assert other != planfile.key_id()
    ran = env.run(activities.apply, RunInput(1, "app", "h1", "20261206T000000Z-abcdef", {"plans": {}}, other))
    assert ran.status == "failed" and ran.run_id is None, ran
    assert f"id {planfile.key_id()}" in ran.message and f"(id {other})" in ran.message
    assert "same plan.key" in ran.message and "nothing was changed" in ran.message
    assert host.files["/etc/app.conf"].content == b"broken\n" and not host.writes
