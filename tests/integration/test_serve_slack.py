"""Approving from Slack with a real `remediate serve` process: the plan made and applied over the integration sshd, a
loopback HTTP server standing in for Slack's incoming webhook and each click's response_url, and callbacks signed here
as Slack's docs specify them (v0=hex HMAC-SHA256 of "v0:{timestamp}:{body}" under the signing secret)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediate.serve.identity import Tokens
from tests.unit.test_serve_slack import Slack, callback
from tests.unit.test_serve_slack import sign as slack_sign

from .conftest import SshLab

TOKEN = "slack-test-token-0123456789abcdef0123"
ADDRESS = "127.0.0.26"
SECRET = b"slack-signing-secret-for-the-integration-test"
HOOK_PATH = "/services/T1/B1/the-hooks-secret-part"


def sign(timestamp: int, body: bytes, secret: bytes = SECRET) -> str:
    return slack_sign(secret, timestamp, body)


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def until(what: str, check: Callable[[], Any], within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not {what} within {within} s"
        time.sleep(0.1)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    slack: str
    reader: str  # a person's token, to read incidents

    def incident(self, number: int) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/incidents/{number}",
                                         headers={"Authorization": f"Bearer {self.reader}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read()))

    def click(self, body: bytes, timestamp: int, secret: bytes = SECRET) -> int:
        request = urllib.request.Request(f"{self.url}/slack/actions", data=body, method="POST", headers={
            "X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": sign(timestamp, body, secret),
            "Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)


@pytest.fixture
def slack_server() -> Iterator[str]:
    Slack.got = []
    server = http.server.ThreadingHTTPServer(("127.0.0.19", 0), Slack)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.19:{server.server_address[1]}"
    server.shutdown()


def files(tmp_path: Path) -> tuple[Path, Path]:
    """The rules (one rule posting to chat, a role that may approve it) and the broken file the playbook fixes."""
    toy = tmp_path / "toy"
    toy.mkdir()
    (toy / "app.conf").write_text("broken\n")
    book = tmp_path / "book.yml"
    book.write_text(f"name: slack-it\nsteps:\n  - id: conf\n    kind: file\n"
                    f"    params: {{path: {toy / 'app.conf'}, content: \"fixed\\n\"}}\n")
    rules = tmp_path / "rules.yml"
    rules.write_text(json.dumps({
        "rules": [{"name": "app", "match": {"alertname": "AppBrokenSlack"}, "playbook": str(book),
                   "resolve_timeout": "5m", "chat": {"webhook_env": "SLACK_HOOK_URL"}}],
        "roles": {"oncall": {"allow": [{"actions": ["approve", "deny"], "rules": ["app"]}]}}}))
    return rules, toy / "app.conf"


@pytest.fixture
def running(ssh_lab: SshLab, tmp_path: Path, slack_server: str) -> Iterator[tuple[Running, Path]]:
    rules, conf = files(tmp_path)
    state = tmp_path / "serve"
    tokens = Tokens(state)
    reader = tokens.add("reader", ["admin"])
    tokens.add("alice", ["oncall"], chat={"slack": "UALICE"})
    (tmp_path / "slack-secret").write_bytes(SECRET)
    port = free_port(ADDRESS)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["remediate", "serve", "--rules", str(rules), "-i", str(ssh_lab.inventory(tmp_path)), "--listen",
             f"{ADDRESS}:{port}", "--state-dir", str(state), "--slack-signing-secret-file",
             str(tmp_path / "slack-secret"), "--public-url", "https://remediate.example"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "REMEDIATE_SERVE_TOKEN": TOKEN, "SLACK_HOOK_URL": f"{slack_server}{HOOK_PATH}"})
    url = f"http://{ADDRESS}:{port}"
    try:
        until("serve up", lambda: _up(url, proc, log))
        yield Running(proc, url, log, slack_server, reader), conf
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def _up(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, log.read_text()
    try:
        urllib.request.urlopen(f"{url}/healthz", timeout=5).close()
        return True
    except OSError:
        return False


def alert(serve: Running) -> None:
    body = json.dumps({"version": "4", "status": "firing", "receiver": "remediate", "alerts": [{
        "status": "firing", "labels": {"alertname": "AppBrokenSlack", "instance": "nopw:9100"},
        "startsAt": "2026-12-06T10:00:00Z", "fingerprint": "slack-1"}]}).encode()
    request = urllib.request.Request(f"{serve.url}/alertmanager", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    urllib.request.urlopen(request, timeout=30).close()


def posted(prefix: str) -> list[dict[str, Any]]:
    return [doc for path, doc in Slack.got if path.startswith(prefix)]


def refusals(serve: Running) -> list[str]:
    return [h["detail"] for h in serve.incident(1)["history"] if h["what"] == "Slack approval refused"]


def test_a_real_serve_posts_the_plan_refuses_bad_clicks_and_applies_a_good_one(running: tuple[Running, Path]) -> None:
    serve, conf = running
    alert(serve)
    [message] = until("posted to Slack", lambda: posted("/services/"))
    assert HOOK_PATH == "/services/T1/B1/the-hooks-secret-part" and "https://remediate.example/incidents/1" in \
        json.dumps(message)
    value = next(b for b in message["blocks"] if b["type"] == "actions")["elements"][0]["value"]
    respond = f"{serve.slack}/respond/"
    now = int(time.time())

    forged = callback("UALICE", "approve", value, respond + "forged")
    assert serve.click(forged, now, secret=b"guessed") == 401
    assert serve.click(callback("UALICE", "approve", value, respond + "late"), now - 360) == 401
    until("the late click refused", lambda: any("360 s old" in r or "361 s old" in r for r in refusals(serve)))
    assert serve.click(callback("UNOBODY", "approve", value, respond + "unmapped"), now) == 200
    until("the unmapped click refused", lambda: any("UNOBODY is not mapped" in r for r in refusals(serve)))
    stale = callback("UALICE", "approve", value.split(":")[0] + ":" + "0" * 64, respond + "stale")
    assert serve.click(stale, now) == 200
    until("the stale click refused", lambda: any("stale plan" in r for r in refusals(serve)))
    for name in ("late", "unmapped", "stale"):
        [update] = until(f"the {name} message replaced", lambda name=name: posted(f"/respond/{name}"))
        assert update["replace_original"] is True and "Nothing changed" in json.dumps(update)
    assert posted("/respond/forged") == []  # an unverified callback's response_url is never called
    incident = serve.incident(1)
    assert incident["state"] == "pending" and incident["approvals"] == [] and conf.read_text() == "broken\n"

    good = callback("UALICE", "approve", value, respond + "good")
    assert serve.click(good, now) == 200
    done = until("applied", lambda: (i := serve.incident(1))["state"] == "waiting_resolved" and i)
    assert [a["by"] for a in done["approvals"]] == ["alice"] and conf.read_text() == "fixed\n"
    assert serve.click(good, now) == 409  # the same request again: replayed
    until("the replay refused", lambda: any("replayed" in r for r in refusals(serve)))
    said = serve.log.read_text()
    assert SECRET.decode() not in said and "the-hooks-secret-part" not in said
    assert "the-hooks-secret-part" not in json.dumps(serve.incident(1))


def test_serve_refuses_to_start_when_a_rules_chat_webhook_is_unset(tmp_path: Path) -> None:
    rules, _ = files(tmp_path)
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    done = subprocess.run(["remediate", "serve", "--rules", str(rules), "-i", str(tmp_path / "inventory.yml"),
                           "--listen", f"{ADDRESS}:{free_port(ADDRESS)}", "--state-dir", str(tmp_path / "serve")],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**{k: v for k, v in os.environ.items() if k != "SLACK_HOOK_URL"},
                               "REMEDIATE_SERVE_TOKEN": TOKEN})
    assert done.returncode == 1 and "webhook_env SLACK_HOOK_URL is not set" in done.stderr, done.stderr
    assert not (tmp_path / "serve" / "incidents.db").exists()
    (tmp_path / "empty").write_text("")
    empty = subprocess.run(["remediate", "serve", "--rules", str(rules), "-i", str(tmp_path / "inventory.yml"),
                            "--listen", f"{ADDRESS}:{free_port(ADDRESS)}", "--state-dir", str(tmp_path / "serve"),
                            "--slack-signing-secret-file", str(tmp_path / "empty")],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                           env={**os.environ, "REMEDIATE_SERVE_TOKEN": TOKEN, "SLACK_HOOK_URL": "https://h.example/x"})
    assert empty.returncode == 1 and "signing secret file is empty" in empty.stderr, empty.stderr
