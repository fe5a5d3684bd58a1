"""A run serve starts says whom it was for, in its journal and in `remediate runs`: the incident, the approvers'
verified identities, who asked for it; a run started from the CLI says none of it (#27)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from remediate.cli import main as cli
from remediate.engine import journal
from remediate.serve import runs as runs_mod

from .test_serve import Serve, alert, fake_host, make


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    made = make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, "http://127.0.0.19:9/hook")
    yield made
    made.engine.stop()


def test_an_approved_incidents_run_records_the_incident_and_its_verified_approver(served: Serve) -> None:
    number = served.post(alert())[0]["id"]
    assert served.act(number, "approve", {"by": "mallory"}, who="bob").status_code == 200
    incident = served.incident(number)
    assert incident["state"] == "waiting_resolved", incident
    record = journal.named("h1", incident["run_id"]).record
    given = record["for"]
    assert given["incident"] == number and given["requested_by"] is None
    assert [a["by"] for a in given["approvers"]] == ["bob"] and "mallory" not in json.dumps(record)
    assert datetime.fromisoformat(given["approvers"][0]["at"]).tzinfo is not None  # epoch seconds made ISO 8601
    rows = CliRunner().invoke(cli.cli, ["runs"]).stdout.splitlines()
    assert rows[0].endswith("\tfor") and rows[1].startswith(incident["run_id"])
    assert f"incident {number}, approved by bob" in rows[1]
    shown = [json.loads(line) for line in CliRunner().invoke(cli.cli, ["runs", "--json"]).stdout.splitlines()]
    assert shown[0]["for"] == given


def test_attribution_keeps_a_typed_name_only_when_no_verified_approval_is() -> None:
    verified = runs_mod.attribution(3, approvals=[{"by": "alice", "via": "token", "at": 0}], approved_by="alice")
    assert verified == {"incident": 3, "approvers": [{"by": "alice", "via": "token", "at": "1970-01-01T00:00:00+00:00"}],
                        "requested_by": None, "url": None}
    assert runs_mod.attribution(4, approved_by="bob")["approved_by"] == "bob"


def test_a_rollback_asked_for_by_a_person_records_whom_it_was_for(served: Serve) -> None:
    number = served.post(alert())[0]["id"]
    assert served.act(number, "approve", who="bob").status_code == 200
    run_id = served.incident(number)["run_id"]
    assert served.act(number, "rollback", who="alice").status_code == 200
    assert served.incident(number)["state"] == "rolled_back", served.incident(number)
    given = journal.named("h1", run_id).record["rollback_for"]
    assert given["incident"] == number and given["requested_by"] == "alice (token)"
    assert [a["by"] for a in given["approvers"]] == ["bob"]  # the run it undid was approved by bob
