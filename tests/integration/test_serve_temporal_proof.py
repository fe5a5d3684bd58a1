"""serve --backend temporal's proof, against a real Temporal (`temporal server start-dev`, the conftest's fixture) and a
real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.25: the alert silenced when the apply starts and the
silence expired when the fix fails, the failed end escalated to a loopback server, "resolved" from Alertmanager's API
with no webhook (the evidence says so), the pending plan posted to a loopback Slack, and a refused Slack click in the
audit log. The runs go through remediate's own plan/apply/rollback on a fake transport (the transport seam)."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediate.serve import app as app_mod
from remediate.serve import rules as rules_mod
from remediate.serve.alertmanager import LAPSE, Alertmanager, epoch
from remediate.serve.identity import Tokens
from remediate.serve.runs import LibraryRuns
from remediate.serve.slack_actions import Slack
from remediate.serve.temporal.backend import Connection, TemporalBackend
from remediate.serve.temporal.proof import Proofing
from tests.unit.test_serve import AUTH, TOKEN, webhook
from tests.unit.test_serve_alertmanager import RealAlertmanager, running_alertmanager, wait_for
from tests.unit.test_serve_slack import callback, sign

from .test_serve_temporal import BOOK, FAST, Host, Replica

ADDRESS = "127.0.0.25"
PUBLIC = "https://serve.example"
SLACK_SECRET = b"integration-slack-signing-secret-0123"
CHAT_ENV = "REMEDIATE_TEST_TEMPORAL_CHAT_HOOK"


class Hook(http.server.BaseHTTPRequestHandler):
    """The escalation's and chat's far end on loopback: keeps each POST's path and JSON body."""

    got: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        type(self).got.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealAlertmanager]:
    with running_alertmanager(tmp_path_factory.mktemp("alertmanager"), ADDRESS) as found:
        yield found


@pytest.fixture
def hook() -> Iterator[str]:
    server = http.server.HTTPServer((ADDRESS, 0), Hook)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    Hook.got = []
    yield f"http://{ADDRESS}:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def host() -> Host:
    fake = Host(name="h1")
    fake.put("/etc/app.conf", "broken\n")
    fake.put("/etc/app.extra", "broken\n")
    fake.gate = threading.Event()
    return fake


class Served:
    """One replica (a front end and a worker) with serve --alertmanager, and the alert it is about."""

    def __init__(self, tmp_path: Path, temporal: str, host: Host, alertmanager: RealAlertmanager,
                 asked: str | None = None, **rule: Any) -> None:
        (tmp_path / "book.yml").write_text(BOOK)
        (tmp_path / "rules.yml").write_text(json.dumps({"rules": [{
            "name": "app", "match": {"alertname": "AppBroken"}, "playbook": str(tmp_path / "book.yml"),
            "max_runs_per_hour": 5, "resolve_timeout": "5m", **rule}]}))
        inventory = tmp_path / "inventory.yml"
        inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
        self.rules = rules_mod.load(tmp_path / "rules.yml")
        tokens = Tokens(tmp_path / "people")
        people = {name: {"Authorization": f"Bearer {tokens.add(name, ['admin'])}"} for name in ("alice", "bob")}
        tokens.add("carol", ["admin"], chat={"slack": "UCAROL"})  # approves from Slack
        runs = LibraryRuns(inventory, lambda opts, emit: (lambda h: host), tmp_path)
        proofing = Proofing(asked or alertmanager.url, grace=0.0, public_url=PUBLIC, every=0.5, slack_secret=SLACK_SECRET)
        self.backend = TemporalBackend(Connection(temporal, task_queue=f"remediate-{uuid.uuid4().hex[:8]}"),
                                       self.rules, inventory, runs, timing=FAST, proofing=proofing)
        self.backend.start()
        app = app_mod.build(self.backend, TOKEN, tokens=tokens)
        app.state.slack = self.chat = Slack(SLACK_SECRET, self.rules, self.backend.note, self.backend.get, PUBLIC)
        self.replica = Replica(self.backend, TestClient(app), people)
        self.alertmanager = alertmanager
        self.labels = {"alertname": "AppBroken", "instance": "h1:9100", "case": uuid.uuid4().hex}

    def fire(self) -> int:
        """The alert fired in Alertmanager, and sent to serve as its webhook would: the incident's number."""
        fingerprint = self.alertmanager.fire(self.labels)
        alert = {"status": "firing", "labels": self.labels, "annotations": {}, "startsAt": "2026-12-06T05:00:00Z",
                 "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}
        response = self.replica.client.post("/alertmanager", json=webhook(alert), headers=AUTH)
        assert response.status_code == 200, response.text
        return int(response.json()["incidents"][0]["id"])

    def wait(self, number: int, what: str, done: Any, within: float = 60) -> dict[str, Any]:
        return self.replica.wait(number, what, done, within)


@pytest.fixture
def serving(tmp_path: Path, temporal: str, host: Host, alertmanager: RealAlertmanager) -> Iterator[Any]:
    made: list[Served] = []

    def make(asked: str | None = None, **rule: Any) -> Served:
        made.append(Served(tmp_path, temporal, host, alertmanager, asked, **rule))
        return made[-1]
    yield make
    host.gate.set()
    for served in made:
        served.chat.wait()
        served.backend.stop()


def whats(incident: dict[str, Any]) -> list[str]:
    return [h["what"] for h in incident["history"]]


def said(incident: dict[str, Any], what: str) -> str:
    return str(next(h["detail"] for h in incident["history"] if h["what"] == what))


def test_a_fix_that_fails_has_its_silence_made_at_the_apply_expired_at_once_and_is_escalated_with_the_evidence(
        serving: Any, host: Host, hook: str) -> None:
    served = serving(approval="auto", resolve_timeout="3s", escalate=[{"url": f"{hook}/page"}])
    number = served.fire()
    applying = served.wait(number, "silenced", lambda i: i["silence_id"] is not None)
    silence = Alertmanager(served.alertmanager.url).silence_of(applying["silence_id"])
    assert silence["status"]["state"] == "active" and silence["createdBy"] == "remediate serve"
    assert f"incident {number}, {PUBLIC}/incidents/{number} (rule app, host h1)" in silence["comment"]
    assert {m["name"]: m["value"] for m in silence["matchers"]} == served.labels
    failed = served.wait(number, "failed, its silence expired", lambda i: i["state"] == "failed"
                         and "silence expired" in whats(i) and "escalated" in whats(i))
    history = whats(failed)
    assert history.index("applying") < history.index("silenced") < history.index("failed")
    assert "rolled back" in failed["reason"] and "Alertmanager's API: listed by Alertmanager" in failed["reason"]
    assert failed["evidence"]["api"].startswith("listed by Alertmanager")
    assert host.files["/etc/app.conf"].content == b"broken\n"
    expired = Alertmanager(served.alertmanager.url).silence_of(failed["silence_id"])
    assert expired["status"]["state"] == "expired"
    assert said(failed, "silence expired").startswith(f"the page goes out: silence {failed['silence_id']} expired")
    (path, body), = [(p, b) for p, b in Hook.got if p == "/page"]
    assert body["kind"] == "escalation" and body["incident"] == number and body["state"] == "failed"
    assert body["evidence"]["api"].startswith("listed by Alertmanager") and body["details"]["history"]
    assert said(failed, "escalated").startswith(f"to http://{ADDRESS}:") and said(failed, "escalated").endswith(
        ": HTTP 200")


def test_an_alert_gone_from_alertmanagers_api_resolves_the_incident_with_no_webhook_and_its_silence_lapses(
        serving: Any, host: Host) -> None:
    served = serving(approval="auto")
    number = served.fire()
    waiting = served.wait(number, "applied, its silence until the deadline",
                          lambda i: i["state"] == "waiting_resolved" and "silence until the deadline" in whats(i))
    assert host.files["/etc/app.conf"].content == b"fixed\n" and waiting["evidence"] is None
    assert whats(waiting).count("not counted") == 0  # listed (firing): nothing to say every half second
    served.alertmanager.fire(served.labels, ends=time.time() - 1)  # resolved in Alertmanager; no webhook comes
    resolved = served.wait(number, "resolved from the API", lambda i: i["state"] == "resolved"
                           and "silence left to lapse" in whats(i))
    assert resolved["evidence"]["webhook"] is None
    assert resolved["evidence"]["api"].startswith("absent from Alertmanager (up ")
    assert said(resolved, "resolved").startswith("webhook: no resolved came; Alertmanager's API: absent from")
    lapsing = Alertmanager(served.alertmanager.url).silence_of(str(resolved["silence_id"]))
    assert lapsing["status"]["state"] == "active"  # not expired early: a relapse after it pages as usual
    assert epoch(lapsing["endsAt"]) <= time.time() + LAPSE + 5


def test_a_pending_plan_is_posted_to_chat_and_a_refused_click_is_in_the_audit_log(
        serving: Any, hook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHAT_ENV, f"{hook}/services/T1/B1/secret-hook")
    served = serving(chat={"webhook_env": CHAT_ENV})
    number = served.fire()
    posted = served.wait(number, "posted to chat", lambda i: "posted to chat" in whats(i))
    assert posted["state"] == "pending" and "silenced" not in whats(posted)  # nothing applies: nothing silenced
    assert said(posted, "posted to chat").endswith("HTTP 200") and "secret-hook" not in said(posted, "posted to chat")
    (_, message), = [(p, b) for p, b in Hook.got if p.startswith("/services/")]
    assert f"Incident {number}: AppBroken on h1" in message["text"] and "+fixed" in message["text"]
    buttons = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
    assert {b["action_id"] for b in buttons} == {"approve", "deny"}
    assert buttons[0]["value"] == f"{number}:{posted['plan_identity']}"
    assert f"{PUBLIC}/incidents/{number}" in json.dumps(message["blocks"])
    body = callback("UNOBODY", "approve", buttons[0]["value"], f"{hook}/respond/1")
    stamp = str(int(time.time()))
    answer = served.replica.client.post("/slack/actions", content=body, headers={
        "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(SLACK_SECRET, stamp, body),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    refused = served.wait(number, "the click refused", lambda i: "Slack approval refused" in whats(i))
    assert "UNOBODY is not mapped to anyone" in said(refused, "Slack approval refused")
    assert refused["state"] == "pending" and refused["approved_by"] is None
    body = callback("UCAROL", "approve", buttons[0]["value"], f"{hook}/respond/2")
    answer = served.replica.client.post("/slack/actions", content=body, headers={
        "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(SLACK_SECRET, stamp, body),
        "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    approved = served.wait(number, "approved from Slack", lambda i: i["state"] != "pending")
    assert approved["approved_by"] == "carol" and approved["approvals"][0]["via"] == "slack"
    served.chat.wait()
    replaced = [b for p, b in Hook.got if p == "/respond/2"]
    assert replaced and replaced[0]["replace_original"] and "Approved by carol" in replaced[0]["text"]


def test_the_webhooks_resolved_while_the_api_lists_the_alert_is_a_disagreement_and_waits_for_both_and_the_verify(
        serving: Any, host: Host) -> None:
    served = serving(approval="auto", verify_again=True)
    number = served.fire()
    fired = {"status": "firing", "labels": served.labels, "annotations": {}, "startsAt": "2026-12-06T05:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": ""}
    waiting = served.wait(number, "applied", lambda i: i["state"] == "waiting_resolved")
    fired["fingerprint"] = waiting["fingerprint"]
    response = served.replica.client.post("/alertmanager", json=webhook({**fired, "status": "resolved"}),
                                          headers=AUTH)
    assert response.status_code == 200, response.text
    disputed = served.wait(number, "disputed", lambda i: "sources disagree" in whats(i))
    assert disputed["state"] == "waiting_resolved"  # Alertmanager's API still lists it: the webhook alone is not proof
    assert "Alertmanager's API: listed by Alertmanager" in said(disputed, "sources disagree")
    served.alertmanager.fire(served.labels, ends=time.time() - 1)
    resolved = served.wait(number, "resolved once both agree", lambda i: i["state"] == "resolved")
    evidence = resolved["evidence"]
    assert evidence["webhook"].startswith("resolved at 20") and evidence["api"].startswith("absent from Alertmanager")
    assert evidence["verify"].startswith("verified at ") and "plan on h1 is a no-op" in evidence["verify"]
    assert host.files["/etc/app.conf"].content == b"fixed\n"


def test_the_command_line_takes_alertmanager_escalate_verify_again_and_chat_on_temporal_and_wires_them(
        ssh_lab: Any, temporal: str, tmp_path: Path, alertmanager: RealAlertmanager, hook: str) -> None:
    from .test_serve_temporal_cli import PERSON, setup, start
    rules, conf = setup(tmp_path)
    rule = json.loads(rules.read_text())["rules"][0]
    rule.update(escalate=[{"url": f"{hook}/page"}], verify_again=True, chat={"webhook_env": CHAT_ENV})
    rules.write_text(json.dumps({"rules": [rule]}))
    (tmp_path / "slack-secret").write_bytes(SLACK_SECRET)
    os.environ[CHAT_ENV] = f"{hook}/services/T1/B1/cli-hook"
    try:
        serve = start(ADDRESS, tmp_path / "a", rules, ssh_lab.inventory(tmp_path), "--temporal-address",
                      temporal, "--temporal-task-queue", f"proof-{uuid.uuid4().hex[:8]}", "--alertmanager",
                      alertmanager.url, "--alertmanager-grace", "1s", "--public-url", PUBLIC,
                      "--slack-signing-secret-file", str(tmp_path / "slack-secret"))
    finally:
        del os.environ[CHAT_ENV]
    try:
        assert serve.call("GET", "/healthz") == (200, {"ok": True, "paused": False}), serve.log.read_text()
        labels = {"alertname": "AppBrokenCli", "instance": "nopw:9100", "case": uuid.uuid4().hex}
        fingerprint = alertmanager.fire(labels)
        status, said = serve.call("POST", "/alertmanager", {"version": "4", "status": "firing", "receiver": "r",
                                                            "alerts": [{"status": "firing", "labels": labels,
                                                                        "startsAt": "2026-12-06T05:00:00Z",
                                                                        "fingerprint": fingerprint}]})
        assert status == 200, said
        number = said["incidents"][0]["id"]
        pending = serve.wait(number, "posted to chat", lambda i: "posted to chat" in whats(i) and i["plan_identity"])
        assert any(p == "/services/T1/B1/cli-hook" for p, _ in Hook.got)
        status, answer = serve.call("POST", f"/incidents/{number}/approve", {"plan_identity": pending["plan_identity"]})
        assert status == 200, answer
        waiting = serve.wait(number, "applied", lambda i: i["state"] == "waiting_resolved" and i["silence_id"])
        assert conf.read_text() == "fixed\n"
        comment = Alertmanager(alertmanager.url).silence_of(waiting["silence_id"])["comment"]
        assert f"{PUBLIC}/incidents/{number}" in comment and PERSON["token"] not in comment
        alertmanager.fire(labels, ends=time.time() - 1)
        resolved = serve.wait(number, "resolved from the API", lambda i: i["state"] == "resolved")
        assert resolved["evidence"]["api"].startswith("absent from Alertmanager")
        assert resolved["evidence"]["verify"].startswith("verified at ")
    finally:
        serve.stop()


def test_a_silence_made_again_by_a_retried_activity_is_the_one_made_before(alertmanager: RealAlertmanager,
                                                                           tmp_path: Path) -> None:
    from remediate.serve.temporal.proof import ProofActivities
    from remediate.serve.temporal.shared import Hush
    (tmp_path / "rules.yml").write_text(json.dumps({"rules": [{"name": "app", "match": {"alertname": "AppBroken"},
                                                               "playbook": "toy"}]}))
    rules = rules_mod.load(tmp_path / "rules.yml")
    proof = ProofActivities(LibraryRuns(tmp_path / "inventory.yml", lambda opts, emit: (lambda h: Host(name="h1")), tmp_path), rules,
                            Proofing(alertmanager.url, public_url=PUBLIC))
    labels = {"alertname": "AppBroken", "instance": "h1:9100", "case": uuid.uuid4().hex}
    number = int(uuid.uuid4().int % 10**12)
    first = proof.silence(Hush(number, "make", labels, "app", "h1", "running"))
    again = proof.silence(Hush(number, "make", labels, "app", "h1", "running"))  # the worker died after the call
    other = proof.silence(Hush(number + 1, "make", labels, "app", "h1", "running"))
    assert first.silence_id is not None and again.silence_id == first.silence_id != other.silence_id
    mine = [s for s in Alertmanager(alertmanager.url).silences() if f"incident {number}, " in s["comment"]]
    assert len(mine) == 1 and again.log[0][0] == "silenced"
    expired = proof.silence(Hush(number, "expire", labels, "app", "h1", "pending", first.silence_id))
    assert expired.silence_id is None and "nothing is fixing it while it waits for a person" in expired.log[0][1]
    assert Alertmanager(alertmanager.url).silence_of(str(first.silence_id))["status"]["state"] == "expired"


def test_alertmanager_unreachable_is_said_once_the_fix_goes_on_and_the_webhook_alone_resolves(
        serving: Any, host: Host) -> None:
    with __import__("socket").socket() as s:
        s.bind((ADDRESS, 0))
        nowhere = f"http://{ADDRESS}:{s.getsockname()[1]}"  # nothing listens there
    served = serving(nowhere, approval="auto")
    number = served.fire()
    waiting = served.wait(number, "applied, the API not counted", lambda i: i["state"] == "waiting_resolved"
                          and "not counted" in whats(i))
    assert "did not answer" in said(waiting, "silence failed") and waiting["silence_id"] is None
    assert host.files["/etc/app.conf"].content == b"fixed\n"  # a silence is a courtesy, never a gate

    def looks() -> int:
        async def read() -> int:
            client = await served.backend._connect()
            history = await client.get_workflow_handle(f"remediate-incident-{number}").fetch_history()
            return sum(1 for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
                       and e.activity_task_scheduled_event_attributes.activity_type.name == "remediate_look")
        return int(served.backend._call(read()))
    wait_for(lambda: looks() >= 3, 60, "three looks at the API")
    assert whats(served.replica.incident(number)).count("not counted") == 1  # said once, not at every look
    fired = {"status": "resolved", "labels": served.labels, "annotations": {}, "startsAt": "2026-12-06T05:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": waiting["fingerprint"]}
    assert served.replica.client.post("/alertmanager", json=webhook(fired), headers=AUTH).status_code == 200
    resolved = served.wait(number, "resolved on the webhook", lambda i: i["state"] == "resolved")
    assert resolved["evidence"]["webhook"].startswith("resolved at ") and "did not answer" in resolved["evidence"]["api"]
