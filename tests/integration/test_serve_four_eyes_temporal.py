"""Four eyes on serve --backend temporal, against a real Temporal dev server (the `temporal` fixture): two distinct
approvers with named tokens, the same one twice and the requester refused by the workflow's validator (said in the
audit log), a run asked for by hand, a re-plan and a rollback; the runs on a fake transport (test_serve_temporal.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediate.engine import journal
from remediate.serve import app as app_mod
from remediate.serve.identity import Tokens
from remediate.serve.temporal.backend import TemporalBackend
from tests.unit.test_serve import AUTH, TOKEN, alert

from . import test_serve_temporal as base
from .test_serve_temporal import Host, replicas

host = base.host  # the fixture: the fake host, /etc/app.conf broken

PEOPLE = ("alice", "bob", "carol", "dave")


@dataclass
class Serve:
    backend: TemporalBackend
    client: TestClient
    people: dict[str, dict[str, str]]

    def post(self, fired: dict[str, Any]) -> int:
        response = self.client.post("/alertmanager", json={"version": "4", "status": "firing", "receiver": "r",
                                                           "alerts": [fired]}, headers=AUTH)
        assert response.status_code == 200, response.text
        return int(response.json()["incidents"][0]["id"])

    def incident(self, number: int) -> dict[str, Any]:
        response = self.client.get(f"/incidents/{number}", headers=self.people["alice"])
        assert response.status_code == 200, response.text
        return dict(response.json())

    def act(self, number: int, action: str, who: str, **body: Any) -> Any:
        if action == "approve" and "plan_identity" not in body:  # as a person approves: the plan they looked at
            body["plan_identity"] = self.incident(number)["plan_identity"]
        return self.client.post(f"/incidents/{number}/{action}", json=body, headers=self.people[who])

    def wait(self, number: int, what: str, done: Callable[[dict[str, Any]], bool], within: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            found = self.incident(number)
            if done(found):
                return found
            assert time.monotonic() < deadline, f"incident {number} not {what} within {within} s: {found}"
            time.sleep(0.2)


def people_serve(tmp_path: Path, temporal: str, host: Host, **rule: Any) -> Serve:
    """One replica whose app lets alice, bob, carol and dave in, each with a named admin token."""
    (replica,) = replicas(tmp_path, temporal, host, count=1, **rule)
    tokens = Tokens(tmp_path / "state")
    people = {name: {"Authorization": f"Bearer {tokens.add(name, ['admin'])}"} for name in PEOPLE}
    return Serve(replica.backend, TestClient(app_mod.build(replica.backend, TOKEN, tokens=tokens)), people)


@pytest.fixture
def two(tmp_path: Path, temporal: str, host: Host) -> Iterator[Serve]:
    made = people_serve(tmp_path, temporal, host, approvals=2)
    yield made
    host.gate.set()
    made.backend.stop()


def pending(serve: Serve, number: int) -> dict[str, Any]:
    return serve.wait(number, "planned", lambda i: i["state"] == "pending" and bool(i["plan_diff"]))


def test_two_distinct_approvers_and_the_same_one_twice_refused(two: Serve, host: Host) -> None:
    number = two.post(alert(uuid.uuid4().hex, "h1:9100"))
    seen = pending(two, number)["plan_identity"]
    first = two.act(number, "approve", "alice", plan_identity=seen)
    assert first.status_code == 200 and first.json()["state"] == "pending", first.text
    assert [a["by"] for a in first.json()["approvals"]] == ["alice"]
    again = two.act(number, "approve", "alice")
    assert again.status_code == 409 and "alice approved this plan already" in again.json()["error"], again.text
    assert host.files["/etc/app.conf"].content == b"broken\n"
    done = two.act(number, "approve", "bob", plan_identity=seen)
    assert done.status_code == 200 and done.json()["state"] == "running", done.text
    waiting = two.wait(number, "applied", lambda i: i["state"] == "waiting_resolved")
    assert waiting["approved_by"] == "alice, bob" and host.files["/etc/app.conf"].content == b"fixed\n"
    said = {h["what"]: h["detail"] for h in waiting["history"]}
    assert said["approval refused"].startswith("alice (token): alice approved this plan already")
    assert said["approved -> running"] == "by bob (token) (2 of 2)"
    assert f"(identity {seen[:8]}…) on h1, approved by alice (token), bob (token), as run" in said["applying"]
    given = journal.named("h1", waiting["run_id"]).record["for"]  # the run's journal says whom it was for
    assert given["incident"] == number and [a["by"] for a in given["approvers"]] == ["alice", "bob"], given


def test_the_requester_is_refused_then_a_replan_and_a_rollback(tmp_path: Path, temporal: str, host: Host) -> None:
    serve = people_serve(tmp_path, temporal, host)
    try:
        asked = serve.client.post("/incidents", json={"rule": "app", "host": "h1"}, headers=serve.people["carol"])
        assert asked.status_code == 201 and asked.json()["requested_by"] == "carol", asked.text
        number = int(asked.json()["id"])
        first = pending(serve, number)
        mine = serve.act(number, "approve", "carol")
        assert mine.status_code == 409 and "carol asked for this run: someone else must approve it" in \
            mine.json()["error"], mine.text
        replanned = serve.act(number, "replan", "dave")
        assert replanned.status_code == 200 and replanned.json()["requested_by"] == "dave", replanned.text
        again = serve.wait(number, "planned again", lambda i: i["state"] == "pending" and bool(i["plan_diff"])
                           and (i["planned_at"] or "") >= (first["planned_at"] or "") and i["approvals"] == []
                           and any(h["what"] == "re-plan" for h in i["history"]) and i["history"][-1]["what"] == "planned")
        assert serve.act(number, "approve", "dave").status_code == 409
        assert serve.act(number, "approve", "carol").status_code == 200  # carol asked for the run, not this plan
        serve.wait(number, "applied", lambda i: i["state"] == "waiting_resolved")
        assert host.files["/etc/app.conf"].content == b"fixed\n" and again["plan_identity"]
        back = serve.act(number, "rollback", "bob")
        assert back.status_code == 200, back.text
        done = serve.wait(number, "rolled back", lambda i: i["state"] == "rolled_back")
        assert str(done["reason"]).startswith("rolled back by bob (token): run ") and \
            host.files["/etc/app.conf"].content == b"broken\n"
    finally:
        host.gate.set()
        serve.backend.stop()


def test_an_expired_approval_is_not_counted(tmp_path: Path, temporal: str, host: Host) -> None:
    serve = people_serve(tmp_path, temporal, host, approvals=2, approval_expires=2)
    try:
        number = serve.post(alert(uuid.uuid4().hex, "h1:9100"))
        pending(serve, number)
        first = serve.act(number, "approve", "alice")
        assert first.status_code == 200, first.text
        given = datetime.fromisoformat(first.json()["approvals"][0]["at"].replace("Z", "+00:00")).timestamp()
        deadline = time.monotonic() + 30
        while time.time() < given + 3:  # the workflow's clock past the approval's two seconds (a condition, not an order)
            assert time.monotonic() < deadline
            time.sleep(0.2)
        late = serve.act(number, "approve", "bob")
        assert late.status_code == 200 and late.json()["state"] == "pending", late.text
        assert [a["by"] for a in late.json()["approvals"]] == ["bob"]
        assert any(h["what"] == "approval dropped" and h["detail"].startswith("alice's approval of ")
                   and "expired" in h["detail"] for h in late.json()["history"])
        assert host.files["/etc/app.conf"].content == b"broken\n"
    finally:
        host.gate.set()
        serve.backend.stop()
