"""relay-access, the YAML-only runbook, against the real lab: an application host at 127.0.0.25 is refused relaying
("454 4.7.1 ... Relay access denied") by a real Postfix until it is in POSTFIX_mynetworks. Shown as smtp-to-lmtp is:
diagnose, plan, apply, rerun as a no-op, rollback, and an automatic rollback."""

from __future__ import annotations

import smtplib
import subprocess
from pathlib import Path

import pytest

from . import labctl

DIR = Path("/opt/mailserver-relay")
COMPOSE = DIR / "docker-compose.yml"
PRISTINE = labctl.LAB / "hosts" / "ec2-mx-relay" / "docker-compose.yml"
CONTAINER = "mailserver-postfix-relay"
CLIENT = "127.0.0.25"
ORIGINAL = "127.0.0.13/32, 127.0.0.16/30"
HOST = ("--host", "ec2-mx-relay", "-p", "relay-access")
GIVEN = ("-e", f"client_address={CLIENT}", "-e", f"client_network={CLIENT}/32")


def rcpt(source: str = CLIENT) -> tuple[int, str]:
    """What the gateway answers an application host's RCPT to an outside address (no mail is sent)."""
    with smtplib.SMTP(source_address=(source, 0), timeout=10) as smtp:
        smtp.connect("127.0.0.13", 25)
        smtp.ehlo("app.lab")
        smtp.mail("test@kuma8088.com")
        code, reply = smtp.rcpt("someone@example.com")
        smtp.rset()
    return code, reply.decode()


def mynetworks() -> str:
    return labctl.postconf("mynetworks", container=CONTAINER)["mynetworks"]


@pytest.fixture
def relay_lab(broken_lab: None) -> None:
    """The relay gateway up, with one real reject of the application host in its log."""
    done = subprocess.run(["docker-compose", "-p", "mailserver-relay", "up", "-d"], cwd=DIR, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    labctl.wait_for(CONTAINER, "Starting: postfix start-fg")
    for _ in range(100):
        try:
            code, reply = rcpt()
            break
        except OSError:
            subprocess.run(["sleep", "0.1"])
    assert (code, reply) == (454, "4.7.1 <someone@example.com>: Relay access denied")


def test_diagnose_counts_the_rejects_and_proposes_the_client(relay_lab: None) -> None:
    code, events, out = labctl.remediate("diagnose", *HOST)
    assert code == 3, out
    checks = {e["check"]: e for e in events if e["event"] == "check"}
    assert checks["log-no-relay-denied"]["ok"] is False
    assert f"clients {CLIENT} (1)" in checks["log-no-relay-denied"]["evidence"]
    assert f"does not cover {CLIENT} (seen in the rejects)" in checks["mynetworks-covers-clients"]["evidence"]
    verdict = events[-1]
    assert verdict["fixes"] == ["relay-access"]
    assert verdict["suggest"] == {"relay-access": {"client_address": CLIENT, "client_network": f"{CLIENT}/32"}}
    signature = next(e for e in events if e["event"] == "signature")
    assert signature["count"] == 1 and signature["clients"] == {CLIENT: 1}
    # Without -p, every shipped playbook's checks run: only relay-access matches this host.
    code, events, out = labctl.remediate("diagnose", "--host", "ec2-mx-relay")
    assert code == 3, out
    assert events[-1]["fixes"] == ["relay-access"] and events[-1]["playbooks"] == ["relay-access", "smtp-to-lmtp"]
    # The human form ends with the command to run, the client filled in.
    done = subprocess.run(["remediate", "diagnose", *HOST, "-i", str(labctl.INVENTORY)], capture_output=True, text=True)
    assert f"-p relay-access -i {labctl.INVENTORY} -e client_address={CLIENT} -e client_network={CLIENT}/32" in \
        " ".join(done.stdout.split())


def test_plan_apply_rerun_rollback(relay_lab: None) -> None:
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    started = labctl.container(CONTAINER).started_at
    code, events, out = labctl.remediate("plan", *HOST)
    assert code == 1 and "client_network" in out and "which has no value" in out, out  # the operator must say who
    code, events, out = labctl.remediate("plan", *HOST, *GIVEN)
    assert code == 2, out
    planned = {e["step"]: e for e in events if e["event"] == "step_planned"}
    assert "454 4.7.1" in planned["relay-allowed"]["reason"]  # the plan shows today's answer
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes() and labctl.container(CONTAINER).started_at == started

    code, events, out = labctl.remediate("apply", "--yes", *HOST, *GIVEN)
    assert code == 0, out
    verified = {e["step"]: e["message"] for e in events if e["event"] == "step_verified"}
    assert f"from {CLIENT}" in verified["relay-allowed"] and ": 250 2.1.5" in verified["relay-allowed"]
    assert COMPOSE.read_text() == PRISTINE.read_text().replace(
        f"POSTFIX_mynetworks={ORIGINAL}\n", f"POSTFIX_mynetworks={ORIGINAL}, {CLIENT}/32\n")
    assert mynetworks() == f"{ORIGINAL}, {CLIENT}/32"
    assert rcpt()[0] == 250  # the application host relays again, as its own client sees it

    code, events, out = labctl.remediate("apply", "--yes", *HOST, *GIVEN)
    assert code == 0, out
    assert not [e for e in events if e["event"] == "step_applied"], out
    code, events, out = labctl.remediate("diagnose", *HOST, *GIVEN)
    assert code == 0 and events[-1]["healthy"], out
    assert rcpt("127.0.0.26")[0] == 454  # nobody else was let in

    code, events, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx-relay")
    assert code == 0, out
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    labctl.wait_for(CONTAINER, "Starting: postfix start-fg")
    assert mynetworks() == ORIGINAL
    assert rcpt()[0] == 454


def test_a_network_that_does_not_let_the_client_in_is_rolled_back(relay_lab: None) -> None:
    """The operator types the wrong network: the RCPT test from the client still gets 454, so nothing stays."""
    code, events, out = labctl.remediate("apply", "--yes", *HOST, "-e", f"client_address={CLIENT}",
                                         "-e", "client_network=127.0.0.26/32")
    assert code == 1, out
    failed = [e for e in events if e["event"] == "step_failed"]
    assert failed[0]["step"] == "relay-allowed" and "454 4.7.1" in failed[0]["error"], out
    rolled = [e["step"] for e in events if e["event"] == "step_rolled_back"]
    assert rolled == ["relay-allowed", "mynetworks", "backup", "restart"], rolled
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    labctl.wait_for(CONTAINER, "Starting: postfix start-fg")
    assert mynetworks() == ORIGINAL
