"""`remediate serve --backend temporal` as processes: two replicas (their own --listen and --state-dir, one task queue)
against a real Temporal dev server (conftest.py), the plan made and applied over the integration sshd; and a Temporal
that is not there."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import SshLab

TOKEN = "cli-test-token-0123456789abcdef0123"  # the shared token: Alertmanager's webhook and /metrics alone
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: alice's named token (role admin), the same in every replica's state directory (tokens.json copied to each).
PERSON: dict[str, str] = {}


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        shared = path in ("/alertmanager", "/metrics")
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={**(AUTH if shared else {"Authorization": f"Bearer {PERSON['token']}"}),
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait(self, number: int, what: str, done: Callable[[dict[str, Any]], bool], within: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            status, found = self.call("GET", f"/incidents/{number}")
            if status == 200 and done(found):
                return dict(found)
            assert time.monotonic() < deadline, f"incident {number} not {what} within {within} s: {found}"
            time.sleep(0.2)

    def stop(self) -> str:
        """SIGTERM, and what serve said on stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        return self.log.read_text()


def start(address: str, state: Path, rules: Path, inventory: Path, *temporal: str) -> Serve:
    """`remediate serve --backend temporal` on a free port of `address`, once /healthz answers at all."""
    port = free_port(address)
    log = state.with_suffix(".log")
    people(state)
    with open(log, "wb") as out:
        proc = subprocess.Popen(["remediate", "serve", "--rules", str(rules), "-i", str(inventory), "--listen",
                                 f"{address}:{port}", "--state-dir", str(state), "--backend", "temporal", *temporal],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "REMEDIATE_SERVE_TOKEN": TOKEN})
    url = f"http://{address}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
            break
        except urllib.error.HTTPError:
            break  # it answers: unhealthy is for the test to see
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"serve on {url} not up in 60 s: {log.read_text()}"
            time.sleep(0.1)
    return Serve(proc, url, log)


def people(state: Path) -> None:
    """alice's named token in this replica's state directory: made once, then the same file copied to the others."""
    from remediate.serve.identity import FILE, Tokens
    state.mkdir(mode=0o700, exist_ok=True)
    made = PERSON.get("file")
    if made and Path(made).exists():
        (state / FILE).write_bytes(Path(made).read_bytes())
        (state / FILE).chmod(0o600)
        return
    PERSON["token"] = Tokens(state).add("alice", ["admin"])
    PERSON["file"] = str(state / FILE)


def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A rule whose playbook fixes tmp_path/toy/app.conf on the lab's host `nopw`; that file, broken."""
    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "app.conf").write_text("broken\n")
    book = tmp_path / "book.yml"
    book.write_text(f"name: temporal-cli\nsteps:\n  - id: conf\n    kind: file\n"
                    f"    params: {{path: {toy / 'app.conf'}, content: \"fixed\\n\"}}\n")
    rules = tmp_path / "rules.yml"
    rules.write_text(json.dumps({"rules": [{"name": "app", "match": {"alertname": "AppBrokenCli"},
                                            "playbook": str(book), "resolve_timeout": "5m"}]}))
    return rules, toy / "app.conf"


@pytest.fixture
def two(ssh_lab: SshLab, temporal: str, tmp_path: Path) -> Iterator[tuple[Serve, Serve, Path]]:
    rules, conf = setup(tmp_path)
    inventory = ssh_lab.inventory(tmp_path)
    queue = ("--temporal-address", temporal, "--temporal-task-queue", f"cli-{uuid.uuid4().hex[:8]}")
    made = [start("127.0.0.22", tmp_path / "a", rules, inventory, *queue)]
    try:
        made.append(start("127.0.0.23", tmp_path / "b", rules, inventory, *queue))
        yield made[0], made[1], conf
    finally:
        for serve in made:
            serve.stop()


def remediate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["remediate", *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "REMEDIATE_SERVE_TOKEN": PERSON["token"]})


def payload(fingerprint: str, status: str = "firing") -> dict[str, Any]:
    return {"version": "4", "status": status, "receiver": "remediate", "alerts": [{
        "status": status, "labels": {"alertname": "AppBrokenCli", "instance": "nopw:9100"},
        "startsAt": "2026-12-01T10:00:00Z", "fingerprint": fingerprint}]}


def test_two_replicas_make_one_incident_planned_applied_and_read_on_either(two: tuple[Serve, Serve, Path]) -> None:
    a, b, conf = two
    assert a.call("GET", "/healthz") == b.call("GET", "/healthz") == (200, {"ok": True, "paused": False})
    fingerprint = uuid.uuid4().hex
    (status_a, first), (status_b, second) = (a.call("POST", "/alertmanager", payload(fingerprint)),
                                             b.call("POST", "/alertmanager", payload(fingerprint)))
    assert status_a == status_b == 200, (first, second)
    number = first["incidents"][0]["id"]
    assert second["incidents"][0]["id"] == number
    assert [first["incidents"][0]["new"], second["incidents"][0]["new"]] == [True, False]
    for serve in (a, b):
        listed = serve.call("GET", "/incidents")[1]
        assert [i["fingerprint"] for i in listed].count(fingerprint) == 1, listed
    pending = b.wait(number, "planned over SSH", lambda i: i["state"] == "pending" and bool(i["plan_diff"]))
    assert "+fixed" in pending["plan_diff"] and pending["host"] == "nopw"
    shown = remediate("incidents", "--server", b.url)
    assert shown.returncode == 0 and f"{number:>5}  pending" in shown.stdout and "+fixed" in shown.stdout, shown
    approved = remediate("approve", str(number), "--server", a.url)
    assert approved.returncode == 0 and f"incident {number}: running" in approved.stdout, approved
    b.wait(number, "applied", lambda i: i["state"] == "waiting_resolved")
    assert conf.read_text() == "fixed\n"
    assert a.call("POST", "/alertmanager", payload(fingerprint, "resolved"))[0] == 200
    assert b.wait(number, "resolved", lambda i: i["state"] == "resolved")["run_id"]
    for serve, name in ((a, "127.0.0.22"), (b, "127.0.0.23")):
        said = serve.stop()
        assert f"http://{name}:" in said and "backend temporal at 127.0.0.1:" in said and "task queue cli-" in said
        assert "workflows in flight stay with Temporal" in said and "serve: stopped" in said, said


def test_a_temporal_that_is_not_there_is_503_and_an_unhealthy_healthz_and_said(tmp_path: Path) -> None:
    rules, _ = setup(tmp_path)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    nopw:\n      ansible_host: 127.0.0.20\n")
    nowhere = f"127.0.0.19:{free_port('127.0.0.19')}"  # no Temporal there
    serve = start("127.0.0.24", tmp_path / "a", rules, inventory, "--temporal-address", nowhere,
                  "--temporal-api-key", "api-key-never-shown-7f3e")
    try:
        status, said = serve.call("POST", "/alertmanager", payload(uuid.uuid4().hex))
        assert status == 503 and f"Temporal at {nowhere}" in said["error"] and "cannot be reached" in said["error"]
        status, health = serve.call("GET", "/healthz")
        assert status == 503 and health["ok"] is False and f"Temporal at {nowhere}" in health["reason"]
    finally:
        log = serve.stop()
    assert "answering 503 to alerts and an unhealthy /healthz" in log and "api-key-never-shown" not in log


def history(address: str, number: int, namespace: str = "default") -> list[Any]:
    """The incident workflow's events, as Temporal keeps them."""
    from temporalio.client import Client

    async def read() -> list[Any]:
        client = await Client.connect(address, namespace=namespace)
        found = await client.get_workflow_handle(f"remediate-incident-{number}").fetch_history()
        return list(found.events)
    return asyncio.run(read())


def metrics(serve: Serve, showing: str, within: float = 60) -> str:
    """serve's /metrics once it shows `showing` (the counts by state are visibility's, and reused for a few
    seconds)."""
    deadline = time.monotonic() + within
    while True:
        with urllib.request.urlopen(urllib.request.Request(f"{serve.url}/metrics", headers=AUTH), timeout=60) as got:
            scraped = got.read().decode()
        if showing in scraped:
            return scraped
        assert time.monotonic() < deadline, f"/metrics without {showing!r} after {within} s: {scraped}"
        time.sleep(0.5)


def test_the_heartbeat_timeout_reaches_the_apply_the_rule_limit_holds_and_runs_are_counted(ssh_lab: SshLab, temporal: str,
                                                                         tmp_path: Path) -> None:
    rules, conf = setup(tmp_path)
    doc = json.loads(rules.read_text())
    doc["rules"][0]["max_runs_per_hour"] = 1
    rules.write_text(json.dumps(doc))
    queue = ("--temporal-address", temporal, "--temporal-task-queue", f"cli-{uuid.uuid4().hex[:8]}")
    serve = start("127.0.0.25", tmp_path / "a", rules, ssh_lab.inventory(tmp_path), *queue,
                  "--temporal-heartbeat-timeout", "7")
    try:
        number = serve.call("POST", "/alertmanager", payload(uuid.uuid4().hex))[1]["incidents"][0]["id"]
        serve.wait(number, "planned over SSH", lambda i: i["state"] == "pending" and bool(i["plan_diff"]))
        assert remediate("approve", str(number), "--server", serve.url).returncode == 0
        serve.wait(number, "applied", lambda i: i["state"] == "waiting_resolved")
        assert conf.read_text() == "fixed\n"
        scheduled = [e.activity_task_scheduled_event_attributes for e in history(temporal, number)
                     if e.HasField("activity_task_scheduled_event_attributes")]
        applies = [s for s in scheduled if s.activity_type.name == "remediate_apply"]
        assert [s.heartbeat_timeout.ToSeconds() for s in applies] == [7], scheduled
        status, said = serve.call("POST", "/alertmanager", payload(uuid.uuid4().hex))
        second = said["incidents"][0]
        assert status == 200 and second["state"] == "ignored", said
        assert serve.wait(second["id"], "recorded", lambda i: True)["reason"] == (
            "rate-limited: rule 'app' already has 1 incident(s) on nopw in the last hour (max_runs_per_hour: 1)")
        scraped = metrics(serve, 'remediate_serve_incidents{state="ignored"} 1.0')  # counted in visibility
        assert 'remediate_serve_runs_total{mode="apply",outcome="applied",playbook="book"} 1.0' in scraped, scraped
        assert 'remediate_serve_runs_total{mode="plan",outcome="changes",playbook="book"} 1.0' in scraped, scraped
    finally:
        log = serve.stop()
    assert "not applied by the Temporal backend" not in log


def test_a_namespace_that_refuses_the_search_attributes_is_told_the_command(temporal: str, tmp_path: Path) -> None:
    from temporalio.api.enums.v1 import IndexedValueType

    from .test_serve_temporal_visibility import namespace_with

    # SQL visibility has 3 Datetime slots: all taken, RemediateApplied cannot be added
    namespace = namespace_with(temporal, **{f"Taken{i}": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME
                                            for i in range(3)})
    rules, _ = setup(tmp_path)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    nopw:\n      ansible_host: 127.0.0.20\n")
    serve = start("127.0.0.26", tmp_path / "a", rules, inventory, "--temporal-address", temporal,
                  "--temporal-namespace", namespace)
    command = f"temporal operator search-attribute create --namespace {namespace} --name RemediateApplied --type Datetime"
    try:
        status, health = serve.call("GET", "/healthz")
        assert status == 503 and command in health["reason"], health
        status, said = serve.call("POST", "/alertmanager", payload(uuid.uuid4().hex))
        assert status == 503 and command in said["error"], said
    finally:
        log = serve.stop()
    assert (f"added the search attribute(s) RemediateHost, RemediateRule, RemediateState to Temporal namespace "
            f"{namespace}") in log, log
    assert command in log and "answering 503 to alerts and an unhealthy /healthz until they exist" in log, log
