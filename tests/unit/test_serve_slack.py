"""Approving from Slack, in process: serve's app (Starlette's test client) over the embedded engine and SQLite store,
runs on fake transports, and a loopback HTTP server standing in for Slack's incoming webhook and response_url.

Every callback is signed here as Slack's docs specify it (v0=hex HMAC-SHA256 of "v0:{timestamp}:{body}" under the
signing secret), computed in this file, never by serve's own verify."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from remediate.errors import InputError
from remediate.serve import app as app_mod
from remediate.serve import roles as roles_mod
from remediate.serve import rules as rules_mod
from remediate.serve import slack, slack_actions
from remediate.serve.backend import plan_identity
from remediate.serve.engine import Engine
from remediate.serve.identity import Tokens
from remediate.serve.notify import Notifier
from remediate.serve.runs import LibraryRuns
from remediate.serve.store import Store

from .fakes import FakeTransport
from .test_serve import BOOK, TOKEN, Clock, alert, fake_host, webhook

SECRET = b"8f742231b10e8888abcd99yyyzzz85a5-unit"
HOOK_ENV = "REMEDIATE_TEST_SLACK_HOOK"


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """Slack's request signature, as https://api.slack.com/authentication/verifying-requests-from-slack builds it."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()


class Slack(http.server.BaseHTTPRequestHandler):
    """Slack's side on loopback: the incoming webhook (/services/...) and each click's response_url (/respond/...)."""

    got: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Chat:
    engine: Engine
    client: TestClient
    slack: slack_actions.Slack
    fakes: dict[str, FakeTransport]
    clock: Clock
    base: str

    def alert(self) -> dict[str, Any]:
        response = self.client.post("/alertmanager", json=webhook(alert()), headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        self.engine.idle()
        self.slack.wait()
        return self.incident(1)

    def incident(self, number: int) -> dict[str, Any]:
        return self.engine.store.get(number).public()

    def posted(self, prefix: str) -> list[dict[str, Any]]:
        return [doc for path, doc in Slack.got if path.startswith(prefix)]

    def value(self) -> str:
        """The Approve button's value in the message serve posted."""
        message = self.posted("/services/")[-1]
        actions = next(b for b in message["blocks"] if b["type"] == "actions")
        return str(actions["elements"][0]["value"])

    def click(self, user: str, action: str, value: str, *, respond: str = "/respond/1", secret: bytes = SECRET,
              age: float = 0, body: bytes | None = None, timestamp: int | None = None) -> Any:
        body = body or callback(user, action, value, f"{self.base}{respond}")
        stamp = timestamp if timestamp is not None else int(self.clock.now - age)
        headers = {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": sign(secret, stamp, body),
                   "Content-Type": "application/x-www-form-urlencoded"}
        response = self.client.post("/slack/actions", content=body, headers=headers)
        self.slack.wait()
        self.engine.idle()
        return response


def callback(user: str, action: str, value: str, response_url: str) -> bytes:
    """A block_actions callback as Slack sends it: form-urlencoded, its payload= JSON."""
    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T1"},
               "api_app_id": "A1", "token": "legacy-verification-token", "trigger_id": "1.2.3",
               "team": {"id": "T1", "domain": "example"}, "channel": {"id": "C1", "name": "ops"},
               "container": {"type": "message", "message_ts": "1.1", "channel_id": "C1"},
               "message": {"type": "message", "ts": "1.1", "text": "..."}, "response_url": response_url,
               "actions": [{"action_id": action, "block_id": "remediate-1", "value": value, "type": "button",
                            "action_ts": "1.2", "text": {"type": "plain_text", "text": action.title()}}]}
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.fixture
def slack_server() -> Iterator[str]:
    Slack.got = []
    server = http.server.HTTPServer(("127.0.0.19", 0), Slack)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.19:{server.server_address[1]}"
    server.shutdown()


def make_chat(tmp_path: Path, base: str, approvals: int = 1) -> Chat:
    (tmp_path / "book.yml").write_text(BOOK)
    rule = {"name": "app", "match": {"alertname": "AppBroken"}, "playbook": str(tmp_path / "book.yml"),
            "approvals": approvals, "chat": {"webhook_env": HOOK_ENV}}
    roles = {"oncall": {"allow": [{"actions": ["approve", "deny"], "rules": ["app"]}]},
             "watchers": {"allow": [{"actions": ["pause"]}]}}
    (tmp_path / "rules.yml").write_text(json.dumps({"rules": [rule], "roles": roles}))
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    (tmp_path / "slack-secret").write_bytes(SECRET + b"\n")
    clock = Clock()
    store = Store(tmp_path / "serve" / "incidents.db", clock=clock)
    rules = rules_mod.load(tmp_path / "rules.yml")
    fakes = {"h1": fake_host("h1")}
    runs = LibraryRuns(tmp_path / "inventory.yml", lambda opts, emit: (lambda host: fakes[host.name]), tmp_path)
    engine = Engine(store, rules, tmp_path / "inventory.yml", runs, Notifier((), store.log), clock=clock)
    tokens = Tokens(tmp_path / "serve")
    tokens.add("alice", ["oncall"], chat={"slack": "UALICE"})
    tokens.add("carol", ["oncall"], chat={"slack": "UCAROL"})
    tokens.add("bob", ["watchers"], chat={"slack": "UBOB"})
    chat = slack_actions.wire(tmp_path / "slack-secret", "https://remediate.example/", rules, store)
    assert chat is not None
    chat.clock = clock
    app = app_mod.build(engine, TOKEN, tokens=tokens, roles=roles_mod.load(rules), clock=clock)
    app.state.slack = chat
    return Chat(engine, TestClient(app), chat, fakes, clock, base)


@pytest.fixture
def chat(tmp_path: Path, slack_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Chat]:
    monkeypatch.setenv(HOOK_ENV, f"{slack_server}/services/T1/B1/hook-secret-part")
    made = make_chat(tmp_path, slack_server)
    yield made
    made.engine.stop()


def history(incident: dict[str, Any], what: str) -> list[str]:
    return [h["detail"] for h in incident["history"] if h["what"] == what]


# --- Slack's signing ---------------------------------------------------------------------------------------------

def test_slacks_own_documented_example_verifies() -> None:
    """The example of Slack's "Verifying requests from Slack" page, its secret, timestamp, body and signature."""
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&"
            b"channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&"
            b"response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(b"8f742231b10e8888abcd99yyyzzz85a5", 1531420618, body) == expected
    assert slack.verify(b"8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body, expected, 1531420618 + 299) is None
    assert "old" in str(slack.verify(b"8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body, expected,
                                     1531420618 + 301))
    assert "ahead" in str(slack.verify(b"8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body, expected,
                                       1531420618 - 301))
    for wrong in (expected[:-1] + "4", expected.upper(), "", "v1=" + expected[3:], "v0=é"):
        assert "signature does not match" in str(slack.verify(b"8f742231b10e8888abcd99yyyzzz85a5", "1531420618",
                                                              body, wrong, 1531420618))
    assert slack.verify(b"8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body + b"x", expected, 1531420618)
    assert slack.verify(b"8f742231b10e8888abcd99yyyzzz85a5", " 1531420618", body, expected, 1531420618)


def test_the_replay_guard_refuses_a_signature_twice_and_stays_bounded() -> None:
    guard = slack.Replays(window=300, most=4)
    assert guard.first("v0=a", 1000, 1000) is None
    assert "replayed" in str(guard.first("v0=a", 1000, 1100))
    for name in ("b", "c", "d"):
        assert guard.first(f"v0={name}", 1000, 1000) is None
    assert "more than 4" in str(guard.first("v0=e", 1000, 1000))  # full: refused, nothing forgotten early
    assert "replayed" in str(guard.first("v0=a", 1000, 1300))
    assert guard.first("v0=e", 1200, 1301) is None  # the first four expired and were let go
    assert len(guard._seen) <= 4


def test_a_callback_that_is_not_a_button_of_serves_is_refused_with_the_reason() -> None:
    assert slack.parse(callback("U1", "approve", "3:abc", "https://hooks.slack.com/actions/x")).incident_id == 3
    for body, words in ((b"payload=%7Bnot", "not a Slack interactive callback"),
                        (urlencode({"payload": json.dumps({"type": "view_submission"})}).encode(), "view_submission"),
                        (callback("U1", "delete", "3:abc", "https://x"), "not one of serve's buttons"),
                        (callback("U1", "approve", "three:abc", "https://x"), "INCIDENT:PLAN-IDENTITY"),
                        (callback("", "approve", "3:abc", "https://x"), "no user.id")):
        with pytest.raises(ValueError, match=words):
            slack.parse(body)
    assert slack.parse(callback("U1", "deny", "3:abc", "file:///etc/passwd")).response_url is None


# --- the message ---------------------------------------------------------------------------------------------------

def test_a_pending_incident_is_posted_with_its_diff_approvals_link_and_buttons(chat: Chat) -> None:
    incident = chat.alert()
    assert incident["state"] == "pending"
    [message] = chat.posted("/services/")
    text = json.dumps(message)
    assert "-broken" in text and "+fixed" in text and "approvals 0 of 1" in text
    assert "https://remediate.example/incidents/1" in text
    buttons = next(b for b in message["blocks"] if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == ["approve", "deny"]
    identity = plan_identity(chat.engine.store.get(1))
    assert identity and buttons[0]["value"] == buttons[1]["value"] == f"1:{identity}"
    assert "```" in message["text"] and "-broken" in message["text"]  # Mattermost shows the text
    [posted] = history(chat.incident(1), "posted to chat")
    assert posted.startswith("http://127.0.0.19:") and "hook-secret-part" not in json.dumps(chat.incident(1))


def test_a_long_diff_is_cut_to_slacks_limit_saying_so_and_markup_in_it_stays_text(chat: Chat) -> None:
    chat.alert()
    stored = chat.engine.store.get(1)
    stored.plan_diff = "\n".join(f"+line {i} <!channel> & <http://evil|click>" for i in range(400))
    message = slack.message(stored, chat.slack.view(stored))
    diff = message["blocks"][2]["text"]["text"]
    assert len(diff) <= slack.SECTION and "cut to Slack's 3000 characters" in diff
    assert "<!channel>" not in json.dumps(message) and "&lt;!channel&gt;" in diff


def test_serve_refuses_to_start_when_a_chat_webhook_is_unset_or_the_secret_is_empty(
        tmp_path: Path, slack_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOOK_ENV, raising=False)
    with pytest.raises(InputError, match=f"webhook_env {HOOK_ENV} is not set"):
        make_chat(tmp_path, slack_server)
    monkeypatch.setenv(HOOK_ENV, "ftp://hooks.example/secret-part")
    with pytest.raises(InputError, match="not an http") as caught:
        slack_actions.check(None, rules_mod.load(tmp_path / "rules.yml"))
    assert "secret-part" not in str(caught.value)
    monkeypatch.setenv(HOOK_ENV, f"{slack_server}/services/T1/B1/hook")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InputError, match="is empty"):
        slack_actions.check(tmp_path / "empty", rules_mod.load(tmp_path / "rules.yml"))
    with pytest.raises(InputError, match="cannot be read"):
        slack_actions.check(tmp_path / "missing", rules_mod.load(tmp_path / "rules.yml"))


# --- clicks --------------------------------------------------------------------------------------------------------

def test_a_signed_approve_from_a_mapped_person_with_the_role_approves_and_the_message_says_so(chat: Chat) -> None:
    chat.alert()
    response = chat.click("UALICE", "approve", chat.value())
    assert response.status_code == 200, response.text
    incident = chat.incident(1)
    assert incident["state"] in ("running", "waiting_resolved", "resolved"), incident
    assert chat.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    assert [a["by"] for a in incident["approvals"]] == ["alice"] and incident["approvals"][0]["via"] == "slack"
    [update] = chat.posted("/respond/1")
    assert update["replace_original"] is True and "Approved by alice (slack)" in json.dumps(update)
    assert not any(b["type"] == "actions" for b in update["blocks"])  # no buttons once it is not pending


def test_a_signed_deny_denies(chat: Chat) -> None:
    chat.alert()
    assert chat.click("UALICE", "deny", chat.value()).status_code == 200
    assert chat.incident(1)["state"] == "denied" and "denied in Slack" in chat.incident(1)["reason"]
    assert chat.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"


def refused_nothing_ran(chat: Chat, words: str, *, updated: bool = True) -> None:
    incident = chat.incident(1)
    assert incident["state"] == "pending" and incident["approvals"] == [], incident
    assert chat.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    lines = history(incident, "Slack approval refused")
    assert any(words in line for line in lines), incident["history"]
    updates = chat.posted("/respond/")
    assert updates and words in json.dumps(updates[-1]) and "Nothing changed" in json.dumps(updates[-1])
    assert any(b["type"] == "actions" for b in updates[-1]["blocks"])  # still pending: others can still decide


def test_a_forged_signature_is_401_and_nothing_else_is_read(chat: Chat) -> None:
    chat.alert()
    before = chat.incident(1)["history"]
    response = chat.click("UALICE", "approve", chat.value(), secret=b"not-the-secret")
    assert response.status_code == 401 and "signature does not match" in response.json()["error"]
    for headers in ({}, {"X-Slack-Request-Timestamp": str(int(chat.clock.now))}):
        assert chat.client.post("/slack/actions", content=b"payload={}", headers=headers).status_code == 401
    assert chat.incident(1)["history"] == before and chat.incident(1)["state"] == "pending"
    assert chat.posted("/respond/") == []  # an unverified response_url is never called (it could point anywhere)
    assert chat.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"


def test_a_callback_signed_six_minutes_ago_is_refused(chat: Chat) -> None:
    chat.alert()
    response = chat.click("UALICE", "approve", chat.value(), age=360)
    assert response.status_code == 401 and "360 s old" in response.json()["error"]
    refused_nothing_ran(chat, "360 s old")


def test_the_same_signed_callback_twice_changes_nothing_the_second_time(tmp_path: Path, slack_server: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOOK_ENV, f"{slack_server}/services/T1/B1/hook")
    chat = make_chat(tmp_path, slack_server, approvals=2)
    try:
        chat.alert()
        stamp = int(chat.clock.now)
        body = callback("UALICE", "approve", chat.value(), f"{slack_server}/respond/1")
        first = chat.click("UALICE", "approve", "", body=body, timestamp=stamp)
        assert first.status_code == 200 and [a["by"] for a in chat.incident(1)["approvals"]] == ["alice"]
        assert "approvals 1 of 2 (alice)" in json.dumps(chat.posted("/respond/1")[-1])
        chat.clock.now += 60  # within Slack's five minutes
        again = chat.click("UALICE", "approve", "", body=body, timestamp=stamp)
        assert again.status_code == 409 and "replayed" in again.json()["error"]
        incident = chat.incident(1)
        assert incident["state"] == "pending" and len(incident["approvals"]) == 1
        assert any("replayed" in line for line in history(incident, "Slack approval refused"))
        assert "replayed" in json.dumps(chat.posted("/respond/1")[-1])
        assert chat.click("UCAROL", "approve", chat.value()).status_code == 200  # a second person: four eyes met
        assert chat.incident(1)["state"] != "pending"
    finally:
        chat.engine.stop()


def test_a_click_on_the_message_of_an_older_plan_is_refused_as_stale(chat: Chat) -> None:
    chat.alert()
    value = chat.value()
    response = chat.click("UALICE", "approve", f"1:{'0' * 64}")
    assert response.status_code == 200
    refused_nothing_ran(chat, "stale plan")
    assert value.split(":")[1][:12] in json.dumps(chat.incident(1))


def test_an_unmapped_slack_user_is_refused(chat: Chat) -> None:
    chat.alert()
    assert chat.click("UNOBODY", "approve", chat.value()).status_code == 200
    refused_nothing_ran(chat, "UNOBODY is not mapped to anyone")


def test_a_mapped_person_without_the_role_is_refused(chat: Chat) -> None:
    chat.alert()
    assert chat.click("UBOB", "approve", chat.value()).status_code == 200
    refused_nothing_ran(chat, "bob (slack) may not approve")


def test_without_a_signing_secret_the_callback_is_404_and_the_message_has_no_buttons(chat: Chat) -> None:
    chat.slack.secret = None
    chat.alert()
    assert not any(b["type"] == "actions" for b in chat.posted("/services/")[-1]["blocks"])
    body = callback("UALICE", "approve", "1:x", "http://127.0.0.19:9/")
    assert chat.client.post("/slack/actions", content=body,
                            headers={"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=1"}).status_code == 404
