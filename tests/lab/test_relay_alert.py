"""relay-access through the whole alert chain, real parts only: an application host (127.0.0.25) keeps trying to relay
through ec2-mx-relay and gets "454 4.7.1 ... Relay access denied"; the relay gateway's log, shipped to a file, is
counted by prometheus-postfix-exporter, Prometheus' rule PostfixRelayAccessDenied fires, Alertmanager sends it to
`remediate serve`, a person approves the plan (the client added to POSTFIX_mynetworks), the client relays, and once
no reject has been seen for the rule's 20 s window Alertmanager's own `resolved` closes the incident."""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediate.testkit.lab import Lab

from . import servectl

ALERT = "PostfixRelayAccessDenied"
CLIENT = "127.0.0.25"
ORIGINAL = "127.0.0.13/32, 127.0.0.16/30"


@pytest.fixture
def lab_chain(remediate_lab: Lab) -> Iterator[Lab]:
    """The lab reset by the test kit (once: test_serve_chain's `chain` would reset it a second time), then a fresh
    chain (new Prometheus and Alertmanager state, so alerts fire anew)."""
    servectl.chain("up")
    try:
        yield remediate_lab
    finally:
        servectl.chain("down")


def firing(alert: str) -> list[dict[str, object]]:
    return [a for a in servectl.alertmanager_alerts() if a["labels"]["alertname"] == alert]


class Client(threading.Thread):
    """The application host retrying, as its mail queue would: RCPT through the gateway from 127.0.0.25 every second
    (no mail is sent), each answer's code kept, until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.codes: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with smtplib.SMTP(source_address=(CLIENT, 0), timeout=5) as smtp:
                    smtp.connect("127.0.0.13", 25)
                    smtp.ehlo("app.lab")
                    smtp.mail("test@kuma8088.com")
                    self.codes.append(smtp.rcpt("someone@example.com")[0])
                    smtp.rset()
            except (OSError, smtplib.SMTPException):
                self.codes.append(0)  # the gateway is being re-created by the fix
            self.done.wait(1)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)


def approved_run(serve: servectl.Serve, number: int) -> dict[str, Any]:
    """The incident once the approved plan's run has started (or ended), failing at once when serve refused it as
    changed underfoot: the plan a person approves must be the one that runs, not wait for yet another approval."""
    def moved() -> dict[str, Any] | None:
        now: dict[str, Any] = serve.incident(number)
        refused = [h for h in now["history"] if h["what"] == "changed underfoot"]
        assert not refused, f"serve did not run the approved plan: {refused[0]['detail']}"
        return now if now["run_id"] or now["state"] not in ("pending", "running") else None
    found: dict[str, Any] = serve.wait(moved, 60, f"incident {number}'s approved run to start")
    return found


def rules() -> str:
    return "\n".join(["rules:", "  - name: relay-access-denied", f"    match: {{alertname: {ALERT}}}",
                      "    playbook: relay-access", "    host_label: instance",
                      f"    vars: {{client_address: {CLIENT}, client_network: {CLIENT}/32}}",
                      "    approval: required", "    resolve_timeout: 3m"]) + "\n"


def test_relay_alert_to_approval_to_fix_to_resolved(lab_chain: Lab, tmp_path: Path) -> None:
    host = lab_chain.host("ec2-mx-relay")  # its compose project up (lab/reset leaves it stopped)
    host.inject("relay-access-denied")  # one real 454 for 127.0.0.25, checked
    client = Client()
    client.start()
    serve = servectl.Serve(rules(), tmp_path / "serve").start()
    serve.person("oncall")
    try:
        pending = serve.wait(lambda: [i for i in serve.incidents() if i["state"] == "pending"
                                      and i["plan_identity"]], 120, "a pending relay-access incident")[0]
        assert pending["alertname"] == ALERT and pending["host"] == "ec2-mx-relay", pending
        assert f"+      - POSTFIX_mynetworks={ORIGINAL}, {CLIENT}/32" in pending["plan_diff"], pending["plan_diff"]
        assert firing(ALERT), "the alert fires in Alertmanager"
        assert set(client.codes) <= {454}, client.codes  # nothing changed yet: the client is still refused
        status, approved = serve.call("POST", f"/incidents/{pending['id']}/approve",
                                      {"plan_identity": pending["plan_identity"]})
        assert status == 200 and approved["approved_by"] == "oncall", approved
        approved_run(serve, pending["id"])
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 240)
        assert done["state"] == "resolved", done  # no reject for 20 s: Alertmanager resolved it
        servectl.fixed_and_resolved(done, "received", "planned", "approved", "run started")
        assert not firing(ALERT)
        assert client.codes[-1] == 250, client.codes  # the application host relays again
        assert 454 in client.codes  # and was refused, as it kept trying, until the fix
        lab_chain.runbook("relay-access", host).diagnose_is_clean()  # and diagnose agrees: exit 0
    finally:
        client.stop()
        serve.stop()
