"""Proof from Alertmanager itself, with the lab's real chain (Postfix -> exporter -> Prometheus -> Alertmanager ->
serve --alertmanager): the alert silenced while its fix runs, approved by two people, proven resolved by
Alertmanager's API and its silence left to lapse; a fix that does not work rolled back, its silence expired, and
the page reaching a person's receiver; Alertmanager restarted mid-incident, and the incident still resolved.

The grace is well over Prometheus' resend interval (2 s in the lab's chain; 1m by default): a restarted Alertmanager
lists nothing until Prometheus sends its alerts again. It is longer than serve's 5-second look, so the first look at the
restarted Alertmanager is inside it."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import servectl
from .test_serve_chain import chain, rules  # noqa: F401  (chain: a fixture)

ALERT = "PostfixMailNotDelivered"
GRACE = "10s"
PROOF = ("--alertmanager", servectl.ALERTMANAGER, "--alertmanager-grace", GRACE)
PAGE = ("127.0.0.16", 9097)  # beside serve's 127.0.0.16:9095


def whats(incident: dict[str, Any]) -> list[str]:
    return [h["what"] for h in incident["history"]]


def said(incident: dict[str, Any], what: str) -> dict[str, Any]:
    return next(h for h in incident["history"] if h["what"] == what)


def epoch(iso: str) -> float:
    return time.mktime(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


class Page(http.server.BaseHTTPRequestHandler):
    """A person's pager: Alertmanager's second receiver. Keeps when each notification came and what it said."""

    got: list[tuple[float, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).got.append((time.time(), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def page() -> Iterator[list[tuple[float, dict[str, Any]]]]:
    Page.got = []
    server = http.server.HTTPServer(PAGE, Page)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    servectl.add_receiver("page", f"http://{PAGE[0]}:{PAGE[1]}/page")
    yield Page.got
    server.shutdown()
    server.server_close()


def first(serve: servectl.Serve, state: str | None = None) -> dict[str, Any]:
    return serve.wait(lambda: [i for i in serve.incidents() if i["alertname"] == ALERT and i["state"] != "ignored"
                               and (state is None or i["state"] == state) and i["plan_diff"]], 120,
                      f"an incident{' ' + state if state else ''} with a plan")[0]


def silence(silence_id: str) -> dict[str, Any]:
    found = servectl.alertmanager_api("GET", f"silence/{silence_id}")
    assert isinstance(found, dict)
    return found


def test_silenced_approved_by_two_people_fixed_resolved_and_the_silence_left_to_lapse(
        chain: None, tmp_path: Path) -> None:  # noqa: F811
    serve = servectl.Serve(rules("smtp-to-lmtp", approval="required", approvals="2", resolve_timeout="4m"),
                           tmp_path / "serve", args=PROOF)
    alice, bob = serve.person("alice"), serve.person("bob")
    serve.start()
    try:
        pending = first(serve, "pending")
        seen = {"plan_identity": pending["plan_identity"]}  # the plan both of them reviewed
        status, once = serve.call("POST", f"/incidents/{pending['id']}/approve", seen, bearer=alice)
        assert status == 200 and once["state"] == "pending", once  # one of two
        status, twice = serve.call("POST", f"/incidents/{pending['id']}/approve", seen, bearer=bob)
        assert status == 200 and twice["state"] in ("running", "waiting_resolved", "resolved"), twice
        assert sorted(a["by"] for a in twice["approvals"]) == ["alice", "bob"]
        silenced = serve.wait(lambda: (lambda i: i if i["silence_id"] else None)(serve.incident(pending["id"])), 60,
                              "the silence")
        held = silence(silenced["silence_id"])
        assert held["status"]["state"] == "active" and held["createdBy"] == "remediate serve"
        assert f"{servectl.URL}/incidents/{pending['id']}" in held["comment"]
        assert {(m["name"], m["value"]) for m in held["matchers"]} == set(silenced["labels"].items())
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 300)
        assert done["state"] == "resolved", done
        assert done["evidence"]["api"].startswith("absent from Alertmanager (up "), done["evidence"]
        # the silence loop acts on its own thread, after the move to resolved: its word is waited for, then checked
        dealt = serve.wait(lambda: (lambda i: i if {"silence expired", "silence left to lapse"} & set(whats(i))
                                    else None)(serve.incident(pending["id"])), 30, "the silence dealt with")
        assert "silence expired" not in whats(dealt) and "silence left to lapse" in whats(dealt), dealt["history"]
        assert silence(silenced["silence_id"])["status"]["state"] == "active"  # not expired early: it lapses
        assert not [a for a in servectl.alertmanager_alerts() if a["labels"]["alertname"] == ALERT]
    finally:
        serve.stop()


def test_a_fix_that_does_not_work_is_rolled_back_its_silence_expired_and_the_page_goes_out(
        chain: None, page: list[tuple[float, dict[str, Any]]], tmp_path: Path) -> None:  # noqa: F811
    playbook = servectl.DATA / "ineffective.yml"
    serve = servectl.Serve(rules(str(playbook), approval="auto", resolve_timeout="25s", on_unresolved="rollback"),
                           tmp_path / "serve", args=PROOF)
    serve.person("alice")
    serve.start()
    try:
        number = first(serve)["id"]
        done = serve.wait_state(number, {"failed", "resolved", "rolled_back"}, 240)
        assert done["state"] == "failed" and "rolled back" in done["reason"], done
        assert done["silence_id"] and "Alertmanager's API: listed by Alertmanager" in done["reason"]
        expired = serve.wait(lambda: (lambda i: i if "silence expired" in whats(i) else None)(
            serve.incident(number)), 30, "the silence expired")
        assert silence(done["silence_id"])["status"]["state"] == "expired"
        silenced_at, expired_at = epoch(said(expired, "silenced")["at"]), epoch(said(expired, "silence expired")["at"])
        # while it was silenced (past the repeat interval, 15 s in the lab), the pager heard nothing of it...
        assert expired_at - silenced_at > 15, expired["history"]
        muted = [body for at, body in page if silenced_at + 3 < at < expired_at]
        assert not muted, muted
        # ...and once expired, the page goes out: the alert reaches its normal receiver again
        servectl.wait_until(lambda: [body for at, body in page if at >= expired_at and body["status"] == "firing"
                                     and any(a["labels"]["alertname"] == ALERT for a in body["alerts"])], 60,
                            "the page after the silence expired")
    finally:
        serve.stop()


def test_alertmanager_restarted_mid_incident_and_the_incident_still_resolved_from_its_api(
        chain: None, tmp_path: Path) -> None:  # noqa: F811
    serve = servectl.Serve(rules("smtp-to-lmtp", approval="auto", resolve_timeout="4m"), tmp_path / "serve",
                           args=PROOF)
    serve.person("alice")
    serve.start()
    try:
        number = first(serve)["id"]
        applying = serve.wait(lambda: (lambda i: i if i["silence_id"] else None)(serve.incident(number)), 60,
                              "the fix under way, silenced")
        assert applying["state"] in ("running", "waiting_resolved"), applying
        servectl.restart_alertmanager(lose_notification_log=True)  # its alerts and notification log gone
        assert silence(applying["silence_id"])["status"]["state"] == "active"  # kept across the restart
        done = serve.wait_state(number, {"resolved", "failed", "rolled_back"}, 300)
        assert done["state"] == "resolved", done
        assert done["evidence"]["webhook"] is None, done["evidence"]  # no resolved came: it ended on the API's word
        assert done["evidence"]["api"].startswith("absent from Alertmanager (up "), done["evidence"]
        # the restarted Alertmanager's empty list was taken for resolved only once it had been up past the grace
        up = re.search(r"\(up (?:(\d+)m)?(\d+)s", done["evidence"]["api"])
        assert up and int(up[1] or 0) * 60 + int(up[2]) >= 10, done["evidence"]
        assert all("grace 10s" in h["detail"] for h in done["history"] if h["what"] == "not counted"), done["history"]
    finally:
        serve.stop()
