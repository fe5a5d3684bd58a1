"""remediate serve, in process: the HTTP API (Starlette's test client), the engine and SQLite store for real, the
runs through remediate's own plan/apply/rollback on fake transports (the transport seam), notifications over real
HTTP on loopback."""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediate.engine.undo import DEFAULT_STATE_DIR, LOCK_NAME
from remediate.errors import InputError
from remediate.serve import app as app_mod
from remediate.serve import roles as roles_mod
from remediate.serve import rules as rules_mod
from remediate.serve.engine import Engine, host_of
from remediate.serve.identity import Tokens
from remediate.serve.notify import Notifier
from remediate.serve.runs import LibraryRuns
from remediate.serve.store import Store

from .fakes import FakeTransport

TOKEN = "t0ken-for-tests-0123456789abcdef0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}  # the shared token: Alertmanager's webhook and /metrics alone
PEOPLE = ("alice", "bob", "carol", "dave")  # each with a named admin token (Serve.people)
BOOK = """\
name: unit-serve
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "fixed\\n"}
"""


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Receiver(http.server.BaseHTTPRequestHandler):
    """An outgoing webhook's far end: keeps what it was sent."""

    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append({"auth": self.headers.get("Authorization"), "body": json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Serve:
    engine: Engine
    client: TestClient
    fakes: dict[str, FakeTransport]
    clock: Clock
    notified: list[dict[str, Any]]
    rules_path: Path
    db: Path
    #: Each person's Authorization header (a named token, role admin).
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def post(self, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
        response = self.client.post("/alertmanager", json=webhook(*alerts), headers=AUTH)
        assert response.status_code == 200, response.text
        self.engine.idle()
        return response.json()["incidents"]

    def incident(self, number: int) -> dict[str, Any]:
        response = self.client.get(f"/incidents/{number}", headers=self.people["alice"])
        assert response.status_code == 200, response.text
        return response.json()

    def act(self, number: int, action: str, body: dict[str, Any] | None = None, who: str = "alice") -> Any:
        body = dict(body or {})
        if action == "approve" and "plan_identity" not in body:  # as a person approves: the plan they looked at
            seen = self.client.get(f"/incidents/{number}", headers=self.people[who]).json().get("plan_identity")
            body.update({"plan_identity": seen} if seen else {})
        response = self.client.post(f"/incidents/{number}/{action}", json=body, headers=self.people[who])
        self.engine.idle()
        return response


def alert(fingerprint: str = "f1", instance: str = "h1:9100", status: str = "firing",
          starts: str = "2026-11-29T10:00:00.5Z", name: str = "AppBroken") -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "instance": instance}, "annotations": {},
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}", "truncatedAlerts": 0, "receiver": "remediate",
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": list(alerts)}


def rules_text(book: Path, notify: str, **overrides: Any) -> str:
    rule = {"name": "app", "match": {"alertname": "AppBroken"}, "playbook": str(book), "approval": "required",
            "max_runs_per_hour": 5, "resolve_timeout": "5m", "on_unresolved": "rollback", **overrides}
    return json.dumps({"rules": [rule], "notify": [{"url": notify, "token_env": "NOTIFY_TOKEN"}]})


def make(tmp_path: Path, fakes: dict[str, FakeTransport], notify_url: str, *, db: Path | None = None,
         clock: Clock | None = None, **overrides: Any) -> Serve:
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(rules_text(book, notify_url, **overrides))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n    h2:\n      ansible_host: 127.0.0.22\n")
    clock = clock or Clock()
    db = db or tmp_path / "serve" / "incidents.db"
    store = Store(db, clock=clock)
    rules = rules_mod.load(rules_path)
    runs = LibraryRuns(inventory, lambda opts, emit: (lambda host: fakes[host.name]), tmp_path)
    engine = Engine(store, rules, inventory, runs, Notifier(rules.notify, store.log), clock=clock)
    registry, metrics, alerts = app_mod.metrics_for(engine)
    engine.metrics = metrics
    tokens = Tokens(db.parent)
    client = TestClient(app_mod.build(engine, TOKEN, max_body=4096, registry=registry, alerts=alerts, clock=clock,
                                      tokens=tokens, roles=roles_mod.load(rules)))
    return Serve(engine, client, fakes, clock, Receiver.got, rules_path, db,
                 {name: {"Authorization": f"Bearer {person_token(tokens, name)}"} for name in PEOPLE})


def named(serve: Serve, who: str = "dave") -> str:
    """`who`'s named token itself (what they log in with)."""
    return serve.people[who]["Authorization"].removeprefix("Bearer ")


def person_token(tokens: Tokens, name: str, roles: tuple[str, ...] = ("admin",)) -> str:
    """A new named token for `name` (their old one revoked: a restarted serve's test makes them again)."""
    tokens.revoke(name)
    return tokens.add(name, roles)


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.got = []
    server = http.server.HTTPServer(("127.0.0.19", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.19:{server.server_address[1]}/hook"
    server.shutdown()


def fake_host(name: str) -> FakeTransport:
    fake = FakeTransport(name=name)
    fake.put("/etc/app.conf", "broken\n")
    return fake


@pytest.fixture
def serve(tmp_path: Path, receiver: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    made = make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, receiver)
    yield made
    made.engine.stop()


def wait_notified(serve: Serve, count: int) -> list[dict[str, Any]]:
    serve.engine.notifier.wait()
    assert len(serve.notified) >= count, serve.notified
    return serve.notified


# --- the interface ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", "/"), ("POST", "/alertmanager"), ("GET", "/incidents"),
                                         ("GET", "/incidents/1"), ("POST", "/incidents/1/approve"),
                                         ("POST", "/incidents/1/deny"), ("POST", "/pause"), ("POST", "/resume"),
                                         ("GET", "/metrics")])
def test_every_endpoint_but_healthz_wants_the_token(serve: Serve, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = serve.client.request(method, path, headers=headers, follow_redirects=False)
        assert response.status_code in (401, 303), (path, headers, response.status_code)
        if response.status_code == 303:  # the page sends people to the login form instead
            assert path == "/" and response.headers["location"] == "/login"
    assert serve.client.get("/healthz").json() == {"ok": True, "paused": False}
    assert serve.engine.store.all() == [] and not serve.engine.paused


def test_a_payload_that_is_not_alertmanagers_is_answered_400_with_the_reason(serve: Serve) -> None:
    bad = webhook(alert())
    del bad["alerts"][0]["fingerprint"]
    response = serve.client.post("/alertmanager", json=bad, headers=AUTH)
    assert response.status_code == 400 and "alerts.0.fingerprint" in response.json()["error"]
    response = serve.client.post("/alertmanager", content=b"{not json", headers=AUTH)
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = serve.client.post("/alertmanager", content=b"[" * 2000 + b"]" * 2000, headers=AUTH)
    assert response.status_code == 400 and "nests" in response.json()["error"]  # was an HTTP 500 (RecursionError)
    response = serve.client.post("/alertmanager", json={**webhook(alert()), "version": "3"}, headers=AUTH)
    assert response.status_code == 400 and "version" in response.json()["error"]
    response = serve.client.post("/alertmanager", content=b"x" * 5000, headers=AUTH)
    assert response.status_code == 413
    assert serve.engine.store.all() == []


def test_a_grouped_payload_is_split_and_each_alert_is_routed_on_its_own(serve: Serve) -> None:
    results = serve.post(alert("a", "h1:9100"), alert("b", "127.0.0.22:9100"), alert("c", "h1:9200"),
                         alert("d", "nowhere:9100"), alert("e", "h1:9100", name="Other"))
    assert [r["new"] for r in results] == [True] * 5
    states = {i["fingerprint"]: i for i in serve.client.get("/incidents", headers=serve.people["alice"]).json()}
    assert states["a"]["state"] == "pending" and states["a"]["host"] == "h1"
    assert states["b"]["state"] == "pending" and states["b"]["host"] == "h2"  # found by its address
    assert states["c"]["state"] == "pending" and states["c"]["host"] == "h1"
    assert states["d"]["state"] == "ignored" and "'nowhere'" in states["d"]["reason"]
    assert states["e"]["state"] == "ignored" and "no rule" in states["e"]["reason"]
    for key in ("a", "b", "c"):
        assert "-broken\n+fixed" in states[key]["plan_diff"], states[key]
    assert set(states["a"]) >= {"id", "state", "fingerprint", "starts_at", "alertname", "host", "playbook",
                                "plan_diff", "run_id", "history"}
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"  # a plan changes nothing


def test_repeats_attach_to_the_incident_and_survive_a_restart(serve: Serve, tmp_path: Path, receiver: str) -> None:
    first = serve.post(alert())
    again = serve.post(alert(starts="2026-11-29T10:00:00.500+00:00"))  # the same instant, spelt otherwise
    assert first[0]["new"] and not again[0]["new"] and first[0]["id"] == again[0]["id"]
    serve.engine.stop()
    serve.engine.store.close()
    restarted = make(tmp_path, serve.fakes, receiver, db=serve.db)
    restarted.engine.recover()
    third = restarted.post(alert())
    assert not third[0]["new"] and third[0]["id"] == first[0]["id"]
    assert len(restarted.engine.store.all()) == 1
    history = [h["what"] for h in restarted.incident(first[0]["id"])["history"]]
    assert history.count("repeat") == 2 and history.count("planned") == 1
    refired = restarted.post(alert(starts="2026-11-29T11:00:00Z"))  # a new firing of the same alert
    assert refired[0]["new"] and refired[0]["id"] != first[0]["id"]
    restarted.engine.stop()


# --- approval, apply, resolved ---------------------------------------------------------------------------------------

def test_approve_applies_the_plan_and_resolved_closes_it(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    response = serve.act(number, "approve", {"by": "mallory"}, who="alice")  # a name in the body is ignored
    assert response.status_code == 200 and response.json()["approved_by"].startswith("alice")
    assert "mallory" not in json.dumps(response.json())
    incident = serve.incident(number)
    assert incident["state"] == "waiting_resolved" and incident["run_id"], incident
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    assert serve.act(number, "approve").status_code == 409  # nothing to approve twice
    serve.post(alert(status="resolved"))
    incident = serve.incident(number)
    assert incident["state"] == "resolved"
    whats = [h["what"] for h in incident["history"]]
    assert whats[:3] == ["received", "matched", "planned"] and "approved" in whats and "resolved" in whats
    sent = wait_notified(serve, 1)[-1]
    assert sent["auth"] == "Bearer notify-secret"
    assert sent["body"]["outcome"] == "resolved" and sent["body"]["run_id"] == incident["run_id"]
    metrics = serve.client.get("/metrics", headers=AUTH).text
    assert 'remediate_serve_incidents{state="resolved"} 1.0' in metrics
    assert 'remediate_serve_runs_total{mode="apply",outcome="applied",playbook="book"} 1.0' in metrics


def test_a_host_changed_after_the_plan_is_not_applied_and_gets_a_fresh_plan(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    serve.fakes["h1"].put("/etc/app.conf", "someone else's edit\n")
    serve.act(number, "approve")
    incident = serve.incident(number)
    assert incident["state"] == "pending" and "someone else's edit" in incident["plan_diff"]
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"someone else's edit\n"
    assert any(h["what"] == "changed underfoot" for h in incident["history"])
    assert incident["approved_by"] is None


def test_deny_needs_a_reason_and_runs_nothing(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    assert serve.act(number, "deny", who="bob").status_code == 400
    response = serve.act(number, "deny", {"reason": "maintenance window"}, who="bob")
    assert response.status_code == 200 and response.json()["state"] == "denied"
    assert "bob" in response.json()["reason"] and "maintenance window" in response.json()["reason"]
    assert serve.act(number, "approve").status_code == 409
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    assert serve.act(999, "approve").status_code == 404


def test_still_firing_at_the_deadline_is_rolled_back_and_failed(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    serve.act(number, "approve")
    serve.engine.tick()
    serve.engine.idle()
    assert serve.incident(number)["state"] == "waiting_resolved"  # not yet
    serve.clock.now += 301
    serve.engine.tick()
    serve.engine.idle()
    incident = serve.incident(number)
    assert incident["state"] == "failed" and "rolled back" in incident["reason"], incident
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    assert wait_notified(serve, 1)[-1]["body"]["outcome"] == "failed"


def test_on_unresolved_keep_leaves_the_fix_and_escalates(tmp_path: Path, receiver: str) -> None:
    serve = make(tmp_path, {"h1": fake_host("h1")}, receiver, on_unresolved="keep", resolve_timeout="30s")
    number = serve.post(alert())[0]["id"]
    serve.act(number, "approve")
    serve.clock.now += 31
    serve.engine.tick()
    serve.engine.idle()
    incident = serve.incident(number)
    assert incident["state"] == "failed" and "kept" in incident["reason"]
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    serve.engine.stop()


def test_auto_approval_runs_at_once_and_a_resolved_during_the_run_counts(tmp_path: Path, receiver: str) -> None:
    serve = make(tmp_path, {"h1": fake_host("h1")}, receiver, approval="auto")
    number = serve.post(alert())[0]["id"]
    incident = serve.incident(number)
    assert incident["state"] == "waiting_resolved" and incident["approved_by"] is None
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    serve.engine.stop()


def test_a_pending_alert_that_resolves_by_itself_is_ignored_and_nothing_runs(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    serve.post(alert(status="resolved"))
    incident = serve.incident(number)
    assert incident["state"] == "ignored" and "before approval" in incident["reason"]
    assert serve.act(number, "approve").status_code == 409


# --- safety ----------------------------------------------------------------------------------------------------------

def test_paused_serve_records_alerts_and_runs_nothing(serve: Serve) -> None:
    paused = serve.client.post("/pause", json={"reason": "mx maintenance"}, headers=serve.people["carol"]).json()
    assert paused["paused"] is True and re.fullmatch(r"carol \(token\) at \S+Z: mx maintenance", paused["paused_by"]), paused
    result = serve.post(alert())
    incident = serve.incident(result[0]["id"])
    assert incident["state"] == "ignored" and "paused" in incident["reason"] and "carol" in incident["reason"]
    assert serve.client.get("/healthz").json()["paused"] is True
    serve.client.post("/resume", headers=serve.people["carol"])
    assert serve.post(alert("f2"))[0]["id"] != result[0]["id"]
    assert serve.incident(2)["state"] == "pending"


def test_rate_limits_per_rule_and_host(tmp_path: Path, receiver: str) -> None:
    serve = make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, receiver, max_runs_per_hour=1)
    serve.post(alert("f1"))
    second = serve.post(alert("f2", starts="2026-11-29T10:05:00Z"))[0]
    assert serve.incident(second["id"])["state"] == "ignored"
    assert "rate-limited" in serve.incident(second["id"])["reason"]
    assert serve.incident(serve.post(alert("f3", "h2:1"))[0]["id"])["state"] == "pending"  # another host
    serve.clock.now += 3601
    assert serve.incident(serve.post(alert("f4", starts="2026-11-29T11:05:00Z"))[0]["id"])["state"] == "pending"
    serve.engine.stop()


def test_the_page_logs_in_with_a_cookie_and_its_forms_need_the_csrf_field(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    assert serve.client.post("/login", data={"token": "wrong"}).status_code == 401
    assert serve.client.post("/login", data={"token": TOKEN}).status_code == 401  # the shared token is no person
    named = serve.people["dave"]["Authorization"].removeprefix("Bearer ")
    response = serve.client.post("/login", data={"token": named}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.cookies[app_mod.COOKIE]
    assert named not in cookie
    serve.client.cookies.set(app_mod.COOKIE, cookie)
    page = serve.client.get("/")
    assert page.status_code == 200 and f'id="approve-{number}"' in page.text and "+fixed" in page.text
    forged = serve.client.post(f"/incidents/{number}/approve", data={"by": "mallory"},
                               follow_redirects=False)
    assert forged.status_code == 403 and serve.incident(number)["state"] == "pending"
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    done = serve.client.post(f"/incidents/{number}/approve", follow_redirects=False,
                             data={"by": "dave", "csrf": csrf, "plan_identity": serve.incident(number)["plan_identity"]})
    assert done.status_code == 303
    serve.engine.idle()
    assert serve.incident(number)["approved_by"].startswith("dave")  # the session's person, not the typed name


def test_recovery_resumes_a_run_that_never_began_and_adopts_one_that_finished(serve: Serve, tmp_path: Path,
                                                                            receiver: str) -> None:
    first = serve.post(alert("f1"))[0]["id"]
    second = serve.post(alert("f2", "h2:1"))[0]["id"]
    serve.act(first, "approve")  # h1 applied: its journal says so
    store = serve.engine.store
    store.transition(first, ["waiting_resolved"], "running", "test", "as if SIGKILLed before the state was written",
                     deadline=None)
    store.transition(second, ["pending"], "running", "approved", "by test")  # approved, never started
    serve.engine.stop()
    store.close()
    restarted = make(tmp_path, serve.fakes, receiver, db=serve.db)
    said = restarted.engine.recover()
    restarted.engine.idle()
    assert restarted.incident(first)["state"] == "waiting_resolved", said
    assert restarted.incident(second)["state"] == "waiting_resolved"
    assert serve.fakes["h2"].files["/etc/app.conf"].content == b"fixed\n"
    runs = [p for p in (tmp_path / "state" / "remediate" / "runs").glob("*.json")]
    assert len(runs) == 2  # one run per incident: nothing ran twice
    restarted.engine.stop()


# --- the rules file --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,words", [
    ("rules: []\n", "rules.yml:1: rules: must be a non-empty list"),
    ("rules:\n  - name: a\n    match: {alertname: X}\n    playbook: nope-nope\n", "rules.yml:4: rule 'a'"),
    ("rules:\n  - name: a\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\n    approval: maybe\n",
     "rules.yml:5: approval: is required or auto"),
    ("rules:\n  - name: a\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\n    resolve_timeout: soon\n",
     "rules.yml:5: 'soon' is not a duration"),
    ("rules:\n  - name: a\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\n    colour: red\n",
     "rules.yml:5: unknown rule key 'colour'"),
    ("rules:\n  - name: a\n    playbook: smtp-to-lmtp\n", "rule 'a' needs match:"),
    ("rules:\n  - name: a\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\n"
     "  - name: a\n    match: {alertname: Y}\n    playbook: smtp-to-lmtp\n", "rules.yml:5: rule name 'a' is used twice"),
    ("rules:\n  - name: a\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\nnotify: [ftp://x]\n",
     "rules.yml:5: notify url 'ftp://x/…'"),
])
def test_a_bad_rules_file_names_the_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        rules_mod.load(path)
    assert words in str(caught.value)


def test_host_label_ports_are_stripped() -> None:
    assert host_of("mx1:9154") == "mx1"
    assert host_of("10.0.0.5:9100") == "10.0.0.5"
    assert host_of("[2001:db8::1]:9100") == "2001:db8::1"
    assert host_of("2001:db8::1") == "2001:db8::1"
    assert host_of("mx1") == "mx1"


def test_a_second_alert_for_a_host_another_incident_fixed_waits_for_resolved_and_runs_nothing(serve: Serve) -> None:
    first = serve.post(alert("f1", "h1:9100"))[0]["id"]
    second = serve.post(alert("f2", "h1:9200"))[0]["id"]  # the same fault, seen by another exporter
    serve.act(first, "approve")
    run = serve.incident(first)["run_id"]
    serve.act(second, "approve")  # its plan is stale now: re-planned, and there is nothing left to do
    incident = serve.incident(second)
    assert incident["state"] == "waiting_resolved" and incident["run_id"] is None, incident
    assert any(h["what"] == "already fixed" and run in h["detail"] for h in incident["history"])
    serve.clock.now += 301
    serve.engine.tick()
    serve.engine.idle()
    assert serve.incident(second)["state"] == "failed" and "ran nothing" in serve.incident(second)["reason"]
    assert serve.incident(first)["state"] == "failed"  # its own deadline: rolled back
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"


def test_a_host_locked_by_a_cli_run_is_not_applied_and_the_incident_says_who_holds_it(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    holder = {"run_id": "20261129T100000Z-abcdef", "operator": "oncall@laptop", "pid": os.getpid(),
              "machine": socket.gethostname(), "started": "2026-11-29T10:00:00+00:00"}
    serve.fakes["h1"].put(f"{DEFAULT_STATE_DIR}/{LOCK_NAME}", json.dumps(holder))  # `remediate apply` is running
    serve.act(number, "approve")
    incident = serve.incident(number)
    assert incident["state"] == "failed" and "20261129T100000Z-abcdef" in incident["reason"], incident
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
