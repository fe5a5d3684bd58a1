"""serve and Alertmanager's API v2, against a real Alertmanager (Debian's prometheus-alertmanager) on loopback: the
client's silences and looks, the silence loop around a fix, "resolved" from the API (with its grace and
verify_again), and the escalation of a failed incident. The runs are remediate's own on fake transports."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from remediate.cli import main as cli
from remediate.serve import rules as rules_mod
from remediate.serve.alertmanager import CREATED_BY, LAPSE, Alertmanager, Silences, epoch, stamp
from remediate.serve.engine import Engine
from remediate.serve.identity import Person
from remediate.serve.models import State, Webhook
from remediate.serve.notify import Escalation, Notifier, idempotency_key, moved_to
from remediate.serve.runs import LibraryRuns
from remediate.serve.store import Store

from .fakes import FakeTransport

ADDRESS = "127.0.0.21"
BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
BOOK = """\
name: unit-silence
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "fixed\\n"}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


def wait_for(ready: Callable[[], Any], seconds: float, what: str) -> Any:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = ready()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {seconds} s for {what}")


@dataclass
class RealAlertmanager:
    url: str
    proc: subprocess.Popen[bytes]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(f"{self.url}/api/v2/{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
        return json.loads(raw) if raw.strip() else None

    def fire(self, labels: dict[str, str], ends: float | None = None) -> str:
        """An alert as Prometheus sends it (resolved when `ends` is past); its fingerprint once Alertmanager lists
        it (a resolved one is never listed: the fingerprint of its firing is given back)."""
        alert: dict[str, Any] = {"labels": labels, "startsAt": stamp(time.time() - 60)}
        if ends is not None:
            alert["endsAt"] = stamp(ends)
        self.call("POST", "alerts", [alert])
        if ends is not None and ends <= time.time():
            return ""
        return str(wait_for(lambda: next((a["fingerprint"] for a in self.call("GET", "alerts")
                                          if a["labels"] == labels), None), 10, f"alert {labels} listed"))


@contextmanager
def running_alertmanager(folder: Path, address: str) -> Iterator[RealAlertmanager]:
    """A real prometheus-alertmanager on address (a free port), its config and data in folder, stopped after."""
    assert BINARY, "prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"
    (folder / "alertmanager.yml").write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    with socket.socket() as s:
        s.bind((address, 0))
        port = int(s.getsockname()[1])
    log = open(folder / "log", "wb")
    proc = subprocess.Popen([BINARY, f"--config.file={folder / 'alertmanager.yml'}", f"--storage.path={folder}",
                             f"--web.listen-address={address}:{port}", "--cluster.listen-address="],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    found = RealAlertmanager(f"http://{address}:{port}", proc)

    def ready() -> bool:
        assert proc.poll() is None, (folder / "log").read_text()
        try:
            return found.call("GET", "status") is not None
        except OSError:
            return False
    try:
        wait_for(ready, 30, "Alertmanager answering")
        yield found
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealAlertmanager]:
    with running_alertmanager(tmp_path_factory.mktemp("alertmanager"), ADDRESS) as found:
        yield found


def labels(name: str) -> dict[str, str]:
    return {"alertname": name, "instance": "h1:9100", "severity": "page"}


# --- the client -------------------------------------------------------------------------------------------------


def test_a_silence_is_made_of_exactly_the_alerts_labels_and_expired(alertmanager: RealAlertmanager) -> None:
    client = Alertmanager(alertmanager.url + "/")
    until = time.time() + 900
    silence_id = client.silence(labels("Silenced"), until, "incident 7: http://serve.example/incidents/7")
    found = client.silence_of(silence_id)
    assert found["status"]["state"] == "active"
    assert found["createdBy"] == CREATED_BY and "http://serve.example/incidents/7" in found["comment"]
    assert sorted((m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in found["matchers"]) == \
        sorted((k, v, False, True) for k, v in labels("Silenced").items())
    assert abs(epoch(found["endsAt"]) - until) < 1
    client.expire(silence_id)
    assert client.silence_of(silence_id)["status"]["state"] == "expired"


def test_the_look_at_an_alert_firing_absent_or_inside_the_grace(alertmanager: RealAlertmanager) -> None:
    client = Alertmanager(alertmanager.url)
    fingerprint = alertmanager.fire(labels("Looked"))
    assert client.look(fingerprint, labels("Looked"), grace=0).state == "firing"
    assert client.alert(fingerprint, {"alertname": 'quote"and\\slash'}) is None  # the filter's value is quoted
    alertmanager.fire(labels("Looked"), ends=time.time() - 1)  # resolved: Alertmanager's API leaves it out
    gone = client.look(fingerprint, labels("Looked"), grace=0)
    assert gone.state == "absent" and gone.said.startswith("absent from Alertmanager (up ")
    young = client.look(fingerprint, labels("Looked"), grace=3600)  # Alertmanager was just started
    assert young.state == "unknown" and "grace 1h00m" in young.said
    silent = Alertmanager(f"http://{ADDRESS}:{free_port()}", timeout=2).look(fingerprint, labels("Looked"), 0)
    assert silent.state == "unknown" and "did not answer" in silent.said


def test_a_redirect_is_not_followed_and_an_error_is_said(tmp_path: Path) -> None:
    class Moved(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.19:9/elsewhere")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass
    server = http.server.HTTPServer((ADDRESS, 0), Moved)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        client = Alertmanager(f"http://{ADDRESS}:{server.server_address[1]}")
        with pytest.raises(Exception, match="HTTP 307 \\(a redirect: not followed\\)"):
            client.silence(labels("Moved"), time.time() + 60, "x")
    finally:
        server.shutdown()


# --- serve around it --------------------------------------------------------------------------------------------


class Hook(http.server.BaseHTTPRequestHandler):
    """An escalation's far end: keeps what it was sent; /moved answers a redirect."""

    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.19:9/stolen")
        else:
            type(self).got.append({"auth": self.headers.get("Authorization"), "body": body,
                                   "key": self.headers.get("Idempotency-Key")})
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Served:
    engine: Engine
    store: Store
    fake: FakeTransport
    silences: Silences
    escalation: Escalation
    hook: str

    def fire(self, alertmanager: RealAlertmanager, name: str) -> tuple[int, str]:
        """The alert fired in Alertmanager and sent to serve as its webhook would; the incident, the fingerprint."""
        fingerprint = alertmanager.fire(labels(name))
        payload = Webhook.model_validate({
            "version": "4", "groupKey": "{}", "receiver": "remediate", "status": "firing", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "labels": labels(name), "annotations": {}, "fingerprint": fingerprint,
                        "startsAt": "2026-12-06T05:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]})
        incident = int(self.engine.receive(payload)[0]["id"])
        self.settle()
        return incident, fingerprint

    def settle(self) -> None:
        self.engine.idle()
        self.silences.idle()

    def whats(self, incident: int) -> list[str]:
        return [h["what"] for h in self.store.get(incident).history]


@pytest.fixture
def served(tmp_path: Path, alertmanager: RealAlertmanager, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("ESCALATE_TOKEN", "escalate-secret-value")
    server = http.server.HTTPServer((ADDRESS, 0), Hook)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    hook = f"http://{ADDRESS}:{server.server_address[1]}"
    Hook.got = []
    (tmp_path / "book.yml").write_text(BOOK)
    rule = {"name": "app", "match": {"severity": "page"}, "playbook": str(tmp_path / "book.yml"), "approval": "auto",
            "max_runs_per_hour": 50, "resolve_timeout": "5m", "verify_again": True,
            "escalate": [{"url": f"{hook}/moved"}, {"url": f"{hook}/page/secret-path", "token_env": "ESCALATE_TOKEN"}]}
    (tmp_path / "rules.yml").write_text(json.dumps({"rules": [rule]}))
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    fake = FakeTransport(name="h1")
    fake.put("/etc/app.conf", "broken\n")
    store = Store(tmp_path / "serve" / "incidents.db")
    rules = rules_mod.load(tmp_path / "rules.yml")
    runs = LibraryRuns(tmp_path / "inventory.yml", lambda opts, emit: (lambda host: fake), tmp_path)
    engine = Engine(store, rules, tmp_path / "inventory.yml", runs, Notifier((), store.log), tick=3600)
    client = Alertmanager(alertmanager.url)
    engine.deadlines.alertmanager, engine.deadlines.grace, engine.deadlines.every = client, 0.0, 0.0
    silences = Silences(store, engine.rules.named, client, lambda n: f"https://serve.example/incidents/{n}",
                        engine.deadlines.webhook_resolved).watch()
    escalation = Escalation(store, engine.rules.named).watch()
    yield Served(engine, store, fake, silences, escalation, hook)
    engine.stop()
    silences.stop()
    server.shutdown()


def test_a_fix_is_silenced_and_a_proven_one_lets_its_silence_lapse(served: Served,
                                                                    alertmanager: RealAlertmanager) -> None:
    incident, fingerprint = served.fire(alertmanager, "Proven")
    waiting = served.store.get(incident)
    assert waiting.state == State.WAITING_RESOLVED and waiting.silence_id, served.whats(incident)
    silence = Alertmanager(alertmanager.url).silence_of(waiting.silence_id)
    assert silence["status"]["state"] == "active"
    assert f"https://serve.example/incidents/{incident}" in silence["comment"]
    assert abs(epoch(silence["endsAt"]) - (waiting.deadline + LAPSE)) < 1  # the deadline, and a margin
    served.engine.tick()  # still firing: nothing
    served.settle()
    assert served.store.get(incident).state == State.WAITING_RESOLVED
    alertmanager.fire(labels("Proven"), ends=time.time() - 1)
    served.engine.tick()
    served.settle()
    done = served.store.get(incident)
    assert done.state == State.RESOLVED, served.whats(incident)
    assert done.evidence is not None and done.evidence["webhook"] is None
    assert done.evidence["api"].startswith("absent from Alertmanager (up ")
    assert done.evidence["verify"].startswith("verified at ")  # verify_again: the plan made again is a no-op
    assert "silence left to lapse" in served.whats(incident) and "silence expired" not in served.whats(incident)
    assert done.silence_id == waiting.silence_id  # its end set in place: one silence all along
    lapsing = Alertmanager(alertmanager.url).silence_of(str(done.silence_id))
    assert lapsing["status"]["state"] == "active"
    assert time.time() < epoch(lapsing["endsAt"]) <= time.time() + LAPSE  # shortened: a relapse later pages
    served.escalation.wait()
    assert not Hook.got  # resolved: no escalation


def test_a_failed_fix_expires_its_silence_at_once_and_escalates_with_the_evidence(
        served: Served, alertmanager: RealAlertmanager) -> None:
    served.fake.fail_write = lambda path: path == "/etc/app.conf"
    incident, _ = served.fire(alertmanager, "Broken")
    done = served.store.get(incident)
    assert done.state in (State.FAILED, State.ROLLED_BACK) and done.silence_id, served.whats(incident)
    assert "silence expired" in served.whats(incident)
    assert Alertmanager(alertmanager.url).silence_of(done.silence_id)["status"]["state"] == "expired"
    served.escalation.wait()
    assert len(Hook.got) == 1, Hook.got  # the redirect was not followed: nothing reached where it pointed
    sent = Hook.got[0]
    assert sent["auth"] == "Bearer escalate-secret-value"
    body = sent["body"]
    assert body["kind"] == "escalation" and body["incident"] == incident and body["state"] == done.state
    assert body["reason"] == done.reason and "No space left on device" in body["reason"]
    assert [h["what"] for h in body["details"]["history"]][:2] == ["received", "matched"]
    # the key a repeat of this escalation carries too (a Temporal worker that died after posting): the same outcome
    # of the same incident, whatever its history has grown to since; another outcome has another
    assert sent["key"] == idempotency_key(body) and sent["key"].startswith("remediate-")
    grown = {**body, "details": {**body["details"], "history": [*body["details"]["history"], {"what": "x"}]}}
    assert idempotency_key(grown) == sent["key"]
    assert idempotency_key({**body, "state": "failed" if body["state"] != "failed" else "rolled_back"}) != sent["key"]
    whats = {(h["what"], h["detail"]) for h in served.store.get(incident).history}
    assert ("escalated", f"to http://{ADDRESS}:{served.hook.rsplit(':', 1)[1]}/…: HTTP 200") in whats
    assert any(w == "escalation failed" and "HTTP 302 (a redirect: not followed)" in d for w, d in whats)
    assert "secret-path" not in json.dumps(served.store.get(incident).public())


def test_absent_inside_the_grace_is_not_resolved_and_the_deadline_says_what_the_api_said(
        served: Served, alertmanager: RealAlertmanager) -> None:
    served.engine.deadlines.grace = 3600.0  # as if Alertmanager had just restarted
    incident, _ = served.fire(alertmanager, "Restarted")
    alertmanager.fire(labels("Restarted"), ends=time.time() - 1)
    served.engine.tick()
    served.engine.tick()
    served.settle()
    waiting = served.store.get(incident)
    assert waiting.state == State.WAITING_RESOLVED
    assert served.whats(incident).count("not counted") == 1  # said once, not at every tick
    served.engine.clock = lambda: time.time() + 3600  # past the deadline
    served.engine.tick()
    served.settle()
    done = served.store.get(incident)
    assert done.state == State.FAILED and "Alertmanager's API: absent from Alertmanager, but" in str(done.reason)
    assert done.evidence is not None and "grace 1h00m" in done.evidence["api"]


def test_the_webhooks_resolved_keeps_the_apis_word_and_says_when_they_disagree(
        served: Served, alertmanager: RealAlertmanager) -> None:
    incident, fingerprint = served.fire(alertmanager, "Disputed")
    resolved = Webhook.model_validate({
        "version": "4", "groupKey": "{}", "receiver": "remediate", "status": "resolved", "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0,
        "alerts": [{"status": "resolved", "labels": labels("Disputed"), "annotations": {},
                    "fingerprint": fingerprint, "startsAt": "2026-12-06T05:00:00Z",
                    "endsAt": "2026-12-06T05:10:00Z"}]})
    served.engine.receive(resolved)  # while Alertmanager's API still lists it firing
    served.settle()
    waiting = served.store.get(incident)
    assert waiting.state == State.WAITING_RESOLVED, served.whats(incident)  # the webhook alone does not end it
    assert "sources disagree" in served.whats(incident)
    alertmanager.fire(labels("Disputed"), ends=time.time() - 1)  # now Alertmanager has it resolved too
    served.engine.receive(resolved)
    served.settle()
    done = served.store.get(incident)
    assert done.state == State.RESOLVED and done.evidence is not None, served.whats(incident)
    assert done.evidence["webhook"].startswith("resolved at ") and done.evidence["api"].startswith("absent")


def test_unreachable_alertmanager_is_said_and_the_fix_goes_on(served: Served, alertmanager: RealAlertmanager) -> None:
    served.silences.client = Alertmanager(f"http://{ADDRESS}:{free_port()}", timeout=2)
    incident, _ = served.fire(alertmanager, "Unreachable")
    found = served.store.get(incident)
    assert found.state == State.WAITING_RESOLVED and found.silence_id is None
    assert "silence failed" in served.whats(incident) and "applied" in served.whats(incident)


def test_a_fix_sent_back_to_pending_has_its_silence_expired_and_the_next_apply_its_own(
        served: Served, alertmanager: RealAlertmanager) -> None:
    def pause_once_applying(incident_id: int, what: str, detail: str) -> None:
        if what == "applying" and not served.engine.paused and "paused" not in served.whats(incident_id):
            served.store.set_setting("paused", "1")  # the pause, between the decision to apply and its first change
    served.store.watchers.append(pause_once_applying)
    incident, _ = served.fire(alertmanager, "Held")
    held = served.store.get(incident)
    assert held.state == State.PENDING and held.silence_id is None, served.whats(incident)
    first = next(h["detail"] for h in held.history if h["what"] == "silenced").rsplit(": ", 1)[1]
    assert "silence expired" in served.whats(incident)
    assert Alertmanager(alertmanager.url).silence_of(first)["status"]["state"] == "expired"
    served.engine.resume("test")
    served.engine.approve(incident, Person("alice", frozenset({"admin"}), "token"))
    served.settle()
    again = served.store.get(incident)
    assert again.state == State.WAITING_RESOLVED and again.silence_id not in (None, first), served.whats(incident)
    assert Alertmanager(alertmanager.url).silence_of(str(again.silence_id))["status"]["state"] == "active"


def test_a_restarted_serve_expires_the_silence_it_still_owed(served: Served, alertmanager: RealAlertmanager) -> None:
    client = Alertmanager(alertmanager.url)
    owed = client.silence(labels("Owed"), time.time() + 900, "a serve that stopped before expiring it")
    found, _ = served.store.create(fingerprint="owed", starts_at="2026-12-06T05:00:00Z", alertname="Owed",
                                   labels=labels("Owed"), host="h1", rule="app", playbook=None, state=State.RUNNING,
                                   reason=None, what="received", detail="firing")
    served.silences.stop()  # the serve that stopped: it hears the failure, and never acts on it
    served.store.transition(found.id, [State.RUNNING], State.FAILED, "failed", "the apply failed", silence_id=owed)
    assert client.silence_of(owed)["status"]["state"] == "active"
    restarted = Silences(served.store, served.engine.rules.named, client, lambda n: f"x/{n}").watch().catch_up()
    restarted.idle()
    assert client.silence_of(owed)["status"]["state"] == "expired"
    assert "silence expired" in served.whats(found.id)
    restarted.stop()


def test_the_webhooks_resolved_confirmed_counts_only_when_the_api_does_not_contradict_it(
        served: Served, alertmanager: RealAlertmanager) -> None:
    """deadlines.confirm: what intake.py is to ask before the webhook's resolved ends an incident."""
    incident, _ = served.fire(alertmanager, "Confirmed")
    deadlines = served.engine.deadlines
    assert deadlines.confirm(served.store.get(incident), time.time()) is False  # not at once: the API is asked
    served.settle()
    waiting = served.store.get(incident)
    assert waiting.state == State.WAITING_RESOLVED, served.whats(incident)  # the API still lists it firing
    assert "sources disagree" in served.whats(incident)
    alertmanager.fire(labels("Confirmed"), ends=time.time() - 1)
    served.engine.tick()
    served.settle()
    done = served.store.get(incident)
    assert done.state == State.RESOLVED and done.evidence is not None, served.whats(incident)
    assert done.evidence["webhook"].startswith("resolved at ") and done.evidence["api"].startswith("absent from")
    assert done.evidence["verify"].startswith("verified at ")
    assert served.whats(incident).count("silence until the deadline") == 1  # "webhook resolved" moved nothing
    deadlines.alertmanager = None
    rule = served.engine.rules.named("app")
    assert rule is not None and rule.verify_again  # verify_again alone still asks for the verify first
    assert deadlines.confirm(served.store.get(incident), time.time()) is False


def test_gone_from_the_api_but_not_verified_again_waits_and_says_why(served: Served,
                                                                     alertmanager: RealAlertmanager) -> None:
    incident, _ = served.fire(alertmanager, "Unverified")
    served.fake.put("/etc/app.conf", "broken again\n")  # someone undid the fix: the plan has changes once more
    alertmanager.fire(labels("Unverified"), ends=time.time() - 1)
    served.engine.tick()
    served.settle()
    waiting = served.store.get(incident)
    assert waiting.state == State.WAITING_RESOLVED, served.whats(incident)
    disagree = next(h["detail"] for h in waiting.history if h["what"] == "sources disagree")
    assert disagree.startswith("absent from Alertmanager") and "has changes" in disagree


@pytest.mark.parametrize(("what", "state"), [
    ("failed", State.FAILED), ("rolled back", State.ROLLED_BACK), ("applied -> waiting_resolved",
                                                                   State.WAITING_RESOLVED),
    ("notify failed", None), ("escalation failed", None), ("webhook resolved", None), ("x -> nowhere", None)])
def test_the_watchers_read_a_move_from_the_decision_not_from_its_last_word(what: str, state: State | None) -> None:
    assert moved_to(what) == state


def test_alertmanager_silent_costs_a_tick_one_timeout_not_one_per_incident(served: Served,
                                                                          alertmanager: RealAlertmanager) -> None:
    first, _ = served.fire(alertmanager, "QuietOne")
    second, _ = served.fire(alertmanager, "QuietTwo")
    deadlines = served.engine.deadlines
    deadlines.alertmanager, deadlines.every = Alertmanager(f"http://{ADDRESS}:{free_port()}", timeout=2), 5.0
    served.engine.tick()
    looked = [n for n in (first, second) if "not counted" in served.whats(n)]
    assert len(looked) == 1, [served.whats(n) for n in (first, second)]
    assert "did not answer" in served.store.get(looked[0]).history[-1]["detail"]


@pytest.mark.parametrize(("args", "said"), [
    (["--alertmanager-grace", "1m"], "--alertmanager-grace applies only with --alertmanager URL"),
    (["--alertmanager", f"http://{ADDRESS}:9", "--alertmanager-grace", "soon"], "'soon' is not a duration")])
def test_serve_refuses_alertmanager_options_it_would_not_use(tmp_path: Path, args: list[str], said: str) -> None:
    result = CliRunner().invoke(cli.cli, ["serve", "--rules", str(tmp_path / "rules.yml"), *args])
    assert result.exit_code != 0 and said in result.output, result.output
    assert not (tmp_path / "serve").exists()
