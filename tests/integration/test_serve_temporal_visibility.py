"""serve --backend temporal reads Temporal's visibility (a real dev server, conftest.py): incidents listed, counted and
shown with no worker to query, on a replica that never saw them; the run limits counted across replicas in the
embedded backend's words; the search attributes added to a namespace that lacks them, or named with the command that
creates them when the namespace refuses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.protobuf.duration_pb2 import Duration
from starlette.testclient import TestClient
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
    RemoveSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from remediate.serve import app as app_mod
from remediate.serve import rules as rules_mod
from remediate.serve.identity import Tokens
from remediate.serve.models import State
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal import shared, visibility
from remediate.serve.temporal.backend import Connection, TemporalBackend
from tests.unit.test_serve import AUTH, TOKEN, alert, webhook

from .test_serve_temporal import BOOK, FAST, Host, Replica, unique

T = TypeVar("T")


def until(what: str, found: Callable[[], T], done: Callable[[T], bool], within: float = 60) -> T:
    """`found()` once `done` holds of it (visibility shows a change a moment after it is made)."""
    deadline = time.monotonic() + within
    while True:
        value = found()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not {what} within {within} s: {value}"
        time.sleep(0.2)


def rules_file(tmp_path: Path, *rules: dict[str, Any]) -> rules_mod.Rules:
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps({"rules": [{"match": {"alertname": "AppBroken"}, "playbook": str(book),
                                           "max_runs_per_hour": 5, "resolve_timeout": "5m", **r} for r in rules]}))
    return rules_mod.load(path)


def team(tmp_path: Path, address: str, host: Host, rules: rules_mod.Rules, count: int = 2, *, namespace: str = "default",
         host_runs_per_hour: int = 6) -> list[Replica]:
    """`count` replicas of one team (a task queue of their own), each a front end and a worker."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    queue = f"remediate-{uuid.uuid4().hex[:8]}"
    tokens = Tokens(tmp_path / "people")  # the replicas share one tokens file here
    people = {name: {"Authorization": f"Bearer {tokens.add(name, ['admin'])}"} for name in ("alice", "bob")}
    made = []
    for _ in range(count):
        runs = LibraryRuns(inventory, lambda opts, emit: (lambda h: host), tmp_path)
        backend = TemporalBackend(Connection(address, namespace=namespace, task_queue=queue), rules, inventory, runs,
                                  timing=FAST, host_runs_per_hour=host_runs_per_hour)
        backend.start()
        registry, _, alerts = app_mod.metrics_for(backend)
        made.append(Replica(backend, TestClient(app_mod.build(backend, TOKEN, registry=registry, alerts=alerts,
                                                              tokens=tokens)), people))
    return made


@pytest.fixture
def host() -> Host:
    fake = Host(name="h1")
    fake.put("/etc/app.conf", "broken\n")
    fake.put("/etc/app.extra", "broken\n")
    return fake


@pytest.fixture
def stopped() -> Iterator[list[Replica]]:
    """Replicas a test made, stopped at its end."""
    made: list[Replica] = []
    yield made
    with contextlib.ExitStack() as stack:  # every one stopped, even after one fails to stop
        for replica in made:
            stack.callback(replica.backend.stop)


def status(replica: Replica, number: int) -> WorkflowExecutionStatus | None:
    async def describe() -> WorkflowExecutionStatus | None:
        client = await replica.backend._connect()
        return (await client.get_workflow_handle(shared.workflow_id(number)).describe()).status
    return replica.backend._call(describe())


def listed(replica: Replica) -> dict[int, str]:
    response = replica.client.get("/incidents", headers=replica.people["alice"])
    assert response.status_code == 200, response.text
    return {i["id"]: i["state"] for i in response.json()}


def test_a_replica_that_never_saw_the_incidents_lists_counts_and_shows_them_without_a_query(
        tmp_path: Path, temporal: str, host: Host, stopped: list[Replica], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = team(tmp_path, temporal, host, rules_file(tmp_path, {"name": "app", "max_runs_per_hour": 10}),
                host_runs_per_hour=10)
    stopped += [a, b]
    numbers = [n["id"] for n in a.post(*(alert(unique(), "h1:9100") for _ in range(6)))]
    denied = numbers[0]
    a.wait(denied, "planned", lambda i: i["state"] == "pending" and i["plan_diff"])
    assert a.client.post(f"/incidents/{denied}/deny", json={"reason": "by hand"},
                         headers=a.people["bob"]).status_code == 200
    until("closed", lambda: status(a, denied), lambda s: s == WorkflowExecutionStatus.COMPLETED)
    a.backend.stop()  # the replica that took them, and its worker's cache, gone
    stopped.remove(a)
    asked = queries(monkeypatch)
    wanted = {n: "denied" if n == denied else "pending" for n in numbers}
    assert until("listed", lambda: listed(b), lambda found: found == wanted) == wanted
    scraped = b.client.get("/metrics", headers=AUTH).text
    assert 'remediate_serve_incidents{state="pending"} 5.0' in scraped, scraped
    assert 'remediate_serve_incidents{state="denied"} 1.0' in scraped, scraped
    page = b.client.get("/", headers=b.people["alice"])
    assert page.status_code == 200 and all(f'id="incident-{n}"' in page.text for n in numbers)
    assert [i.id for i in b.backend.list(state=State.DENIED)] == [denied]
    assert sorted(i.id for i in b.backend.list(state=State.PENDING, host="h1", rule="app")) == sorted(numbers[1:])
    assert b.backend.list(host="h2") == [] and b.backend.list(rule="other") == []
    assert asked == []  # not one incident was asked: all of it came from visibility
    b.backend._call(b.backend._worker.shutdown())  # type: ignore[union-attr]  # no worker left to ask at all
    assert listed(b) == wanted
    closed = b.incident(denied)  # its result: the whole record, history and all
    assert closed["state"] == "denied" and [h["what"] for h in closed["history"]][:2] == ["received", "matched"]
    assert closed["reason"] == "denied by bob (token): by hand"
    monkeypatch.setattr(visibility, "QUERY_WAIT", 1.0)
    shown = b.incident(numbers[1])  # running, and no worker answers: its summary
    assert shown["state"] == "pending" and shown["host"] == "h1" and shown["rule"] == "app"


def queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every query sent to an incident's workflow from now on, by workflow id."""
    asked: list[str] = []
    original = WorkflowHandle.query

    def counted(self: WorkflowHandle[Any, Any], *args: Any, **kwargs: Any) -> Any:
        if self.id.startswith("remediate-incident-"):
            asked.append(self.id)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(WorkflowHandle, "query", counted)
    return asked


def test_the_counts_are_reused_for_a_few_seconds(tmp_path: Path, temporal: str, host: Host,
                                                 stopped: list[Replica]) -> None:
    (a,) = team(tmp_path, temporal, host, rules_file(tmp_path, {"name": "app"}), count=1)
    stopped.append(a)
    now = [0.0]
    a.backend.visibility.clock = lambda: now[0]
    before = a.backend.counts()
    number = a.post(alert(unique(), "h1:9100"))[0]["id"]
    until("listed", lambda: listed(a), lambda found: number in found)
    now[0] += visibility.COUNTS_TTL - 0.1
    assert a.backend.counts() == before  # within COUNTS_TTL of the first count: the same answer, no new count
    now[0] += 0.1
    assert before[State.PENDING] == 0 and a.backend.counts()[State.PENDING] == 1


def test_the_rule_limit_counts_what_another_replica_ran(tmp_path: Path, temporal: str, host: Host,
                                                         stopped: list[Replica]) -> None:
    a, b = team(tmp_path, temporal, host, rules_file(tmp_path, {"name": "app", "approval": "auto",
                                                                  "max_runs_per_hour": 2}))
    stopped += [a, b]
    ran = []
    for _ in range(2):  # one after the other, the host broken again between them: two alerts at once race for its
        # lock, and the second, planning while the first applies, is refused (LOCKED) rather than run
        host.put("/etc/app.conf", "broken\n")
        host.put("/etc/app.extra", "broken\n")
        ran.append(a.post(alert(unique(), "h1:9100"))[0]["id"])
        a.wait(ran[-1], "run", lambda i: i["state"] == "waiting_resolved")
    until("listed on the other replica", lambda: listed(b), lambda found: set(ran) <= set(found))
    third = b.post(alert(unique(), "h1:9100"))[0]
    assert third["new"] and third["state"] == "ignored"
    assert b.incident(third["id"])["reason"] == ("rate-limited: rule 'app' already has 2 incident(s) on h1 in the "
                                                 "last hour (max_runs_per_hour: 2)")


def test_the_limits_count_what_this_replica_just_started_before_visibility_shows_it(
        tmp_path: Path, temporal: str, host: Host, stopped: list[Replica]) -> None:
    (a,) = team(tmp_path, temporal, host, rules_file(tmp_path, {"name": "app", "max_runs_per_hour": 2}), count=1)
    stopped.append(a)
    said = a.post(*(alert(unique(), "h1:9100") for _ in range(3)))  # one payload: no time for visibility
    assert [s["state"] for s in said] == ["pending", "pending", "ignored"]
    assert a.incident(said[2]["id"])["reason"].startswith("rate-limited: rule 'app' already has 2 incident(s)")


def test_the_host_limit_counts_every_rule_across_replicas(tmp_path: Path, temporal: str, host: Host,
                                                          stopped: list[Replica]) -> None:
    rules = rules_file(tmp_path, {"name": "app"}, {"name": "app2", "match": {"alertname": "AppBroken2"}})
    a, b = team(tmp_path, temporal, host, rules, host_runs_per_hour=2)
    stopped += [a, b]
    first = a.post(alert(unique(), "h1:9100"))[0]["id"]
    second = a.post(alert(unique(), "h1:9100", name="AppBroken2"))[0]["id"]
    until("listed on the other replica", lambda: listed(b), lambda found: {first, second} <= set(found))
    third = b.post(alert(unique(), "h1:9100", name="AppBroken2"))[0]
    assert third["state"] == "ignored"
    assert b.incident(third["id"])["reason"] == ("rate-limited: h1 already has 2 incident(s) in the last hour (serve "
                                                 "--host-runs-per-hour 2)")
    assert a.client.post(f"/incidents/{first}/deny", json={"reason": "not now"},
                         headers=a.people["bob"]).status_code == 200  # a denied incident was no run: it no longer counts
    until("denied in visibility", lambda: listed(b), lambda found: found[first] == "denied")
    assert b.post(alert(unique(), "h1:9100"))[0]["state"] == "pending"


def test_an_apply_counts_from_when_it_started(tmp_path: Path, temporal: str, host: Host,
                                              stopped: list[Replica]) -> None:
    (a,) = team(tmp_path, temporal, host, rules_file(tmp_path, {"name": "app"}), count=1)
    stopped.append(a)
    left, approved = (a.post(alert(unique(), "h1:9100"))[0]["id"] for _ in range(2))
    for number in (left, approved):
        a.wait(number, "planned", lambda i: i["state"] == "pending" and i["plan_diff"])
    until("listed", lambda: listed(a), lambda found: {left, approved} <= set(found))
    since = time.time()  # both were opened before this; only one is applied after it
    seen = a.incident(approved)["plan_identity"]
    assert a.client.post(f"/incidents/{approved}/approve", json={"plan_identity": seen},
                         headers=a.people["alice"]).status_code == 200
    a.wait(approved, "applied", lambda i: i["state"] == "waiting_resolved")

    def counted() -> int:
        return a.backend._call(a.backend.visibility.runs_since(since, host="h1", rule="app"))
    assert until("counted", counted, lambda n: n >= 1) == 1


def namespace_with(address: str, **attributes: IndexedValueType.ValueType) -> str:
    """A fresh namespace on the dev server, with only these custom search attributes."""
    name = f"ns-{uuid.uuid4().hex[:8]}"

    async def make() -> None:
        client = await Client.connect(address)
        await client.workflow_service.register_namespace(RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)))
        if attributes:
            await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
                namespace=name, search_attributes=attributes))
    asyncio.run(make())
    return name


def _custom(replica: Replica) -> dict[str, int]:
    async def read() -> dict[str, int]:
        client = await replica.backend._connect()
        found = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(
            namespace=replica.backend.connection.namespace))
        return dict(found.custom_attributes)
    return replica.backend._call(read())


def test_a_namespace_without_the_search_attributes_gets_them(tmp_path: Path, temporal: str, host: Host,
                                                             stopped: list[Replica]) -> None:
    namespace = namespace_with(temporal)
    (a,) = team(tmp_path, temporal, host, rules_file(tmp_path, {"name": "app"}), count=1, namespace=namespace)
    stopped.append(a)
    assert set(a.backend.checked.added) == set(shared.SEARCH_ATTRIBUTES) and a.backend.checked.problem is None
    assert _custom(a) == {"RemediateHost": 2, "RemediateRule": 2, "RemediateState": 2, "RemediateApplied": 6}
    assert a.client.get("/healthz").json() == {"ok": True, "paused": False}
    number = a.post(alert(unique(), "h1:9100"))[0]["id"]
    assert until("listed", lambda: listed(a), lambda found: found.get(number) == "pending")


def test_a_namespace_that_refuses_them_is_told_the_command_until_they_exist(tmp_path: Path, temporal: str, host: Host,
                                                                            stopped: list[Replica]) -> None:
    full = {f"Taken{i}": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME for i in range(3)}  # SQL visibility's 3 slots
    namespace = namespace_with(temporal, **full)
    (a,) = team(tmp_path, temporal, host, rules_file(tmp_path, {"name": "app"}), count=1, namespace=namespace)
    stopped.append(a)
    command = (f"`temporal operator search-attribute create --namespace {namespace} --name RemediateApplied --type "
               "Datetime`")
    assert command in str(a.backend.checked.problem) and "RemediateHost" not in str(a.backend.checked.problem)
    assert set(a.backend.checked.added) == {"RemediateHost", "RemediateRule", "RemediateState"}
    health = a.client.get("/healthz")
    assert health.status_code == 503 and command in health.json()["reason"], health.text
    refused = a.client.post("/alertmanager", json=webhook(alert(unique(), "h1:9100")), headers=AUTH)
    assert refused.status_code == 503 and command in refused.json()["error"], refused.text

    async def free_a_slot() -> None:  # the operator makes room, as the message says
        client = await a.backend._connect()
        await client.operator_service.remove_search_attributes(RemoveSearchAttributesRequest(
            namespace=namespace, search_attributes=["Taken0"]))
    a.backend._call(free_a_slot())
    assert a.client.get("/healthz").json() == {"ok": True, "paused": False}  # looked for again, and added
    assert _custom(a)["RemediateApplied"] == 6
    assert a.post(alert(unique(), "h1:9100"))[0]["new"] is True


def test_a_summary_keeps_the_list_small_and_says_where_the_rest_is() -> None:
    record = {"id": 7, "state": "pending", "plan": {"plans": {}}, "plan_diff": "+line\n" * 10000,
              "history": [{"at": 1.0, "what": "received", "detail": ""}, {"at": 2.0, "what": "planned", "detail": ""}]}
    found = shared.summary(record)
    assert found["plan"] is None and found["history"] == [{"at": 2.0, "what": "planned", "detail": ""}]
    assert len(found["plan_diff"]) < shared.SUMMARY_DIFF + 200 and found["plan_diff"].startswith("+line\n+line\n")
    assert found["plan_diff"].endswith("GET /incidents/7 has the whole diff\n")
    assert shared.summary({**record, "plan_diff": "+short\n"})["plan_diff"] == "+short\n"
