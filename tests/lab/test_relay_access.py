"""relay-access, the YAML-only runbook, against the real lab: an application host at 127.0.0.25 is refused relaying
("454 4.7.1 ... Relay access denied") by a real Postfix until it is in POSTFIX_mynetworks. Shown as smtp-to-lmtp is:
diagnose, plan, apply, rerun as a no-op, rollback, and an automatic rollback, with the test kit."""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
from pathlib import Path

from remediate.testkit import Lab

from . import labctl

DIR = Path("/opt/mailserver-relay")
COMPOSE = DIR / "docker-compose.yml"
PRISTINE = labctl.LAB / "hosts" / "ec2-mx-relay" / "docker-compose.yml"
CONTAINER = "mailserver-postfix-relay"
CLIENT = "127.0.0.25"
ORIGINAL = "127.0.0.13/32, 127.0.0.16/30"
HOST = ("--host", "ec2-mx-relay", "-p", "relay-access")
GIVEN = {"client_address": CLIENT, "client_network": f"{CLIENT}/32"}


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


def test_relay_access_through_the_whole_loop(remediate_lab: Lab) -> None:
    """diagnose counts the rejects and proposes the client; the plan needs the operator to say who, then shows
    today's answer; apply lets the client in (and nobody else); again does nothing; rollback gives back the bytes and
    the 454; a failure right after the restart rolls all of it back."""
    host = remediate_lab.host("ec2-mx-relay")  # its compose project up (lab/reset leaves it stopped)
    host.inject("relay-access-denied")  # one real "454 4.7.1 ... Relay access denied" for 127.0.0.25
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    started = host.containers()[CONTAINER].started_at

    found = remediate_lab.runbook("relay-access", host).diagnose_finds_it("log-no-relay-denied",
                                                                          "mynetworks-covers-clients")
    checks = {e["check"]: e for e in found.of("check")}
    assert f"clients {CLIENT} (1)" in checks["log-no-relay-denied"]["evidence"]
    assert f"does not cover {CLIENT} (seen in the rejects)" in checks["mynetworks-covers-clients"]["evidence"]
    assert found.events[-1]["suggest"] == {"relay-access": {"client_address": CLIENT, "client_network": f"{CLIENT}/32"}}
    signature = found.of("signature")[0]
    assert signature["count"] == 1 and signature["clients"] == {CLIENT: 1}
    # Without -p, every playbook's checks run: only relay-access matches this host.
    every = remediate_lab.remediate("diagnose", "--host", "ec2-mx-relay").expect(3, "diagnose without -p")
    assert every.events[-1]["fixes"] == ["relay-access"]
    assert {"relay-access", "smtp-to-lmtp"} <= set(every.events[-1]["playbooks"])
    # The human form ends with the command to run, the client filled in.
    done = subprocess.run(["remediate", "diagnose", *HOST, "-i", str(remediate_lab.inventory)], capture_output=True,
                          text=True, env={**os.environ, **remediate_lab.env})
    assert f"-p relay-access -i {remediate_lab.inventory} -e client_address={CLIENT} -e client_network={CLIENT}/32" \
        in " ".join(done.stdout.split())

    bare = remediate_lab.runbook("relay-access", host).cli("plan").expect(1, "plan without the client")
    assert "client_network" in bare.output and "which has no value" in bare.output  # the operator must say who
    run = remediate_lab.runbook("relay-access", host, vars=GIVEN)
    plan = run.plan_shows_change("backup", "mynetworks", "restart")
    assert "454 4.7.1" in plan.planned()["relay-allowed"]["reason"]  # the plan shows today's answer
    assert host.containers()[CONTAINER].started_at == started

    done = run.apply_fixes()
    verified = {e["step"]: e["message"] for e in done.of("step_verified")}
    assert f"from {CLIENT}" in verified["relay-allowed"] and ": 250 2.1.5" in verified["relay-allowed"]
    assert COMPOSE.read_text() == PRISTINE.read_text().replace(
        f"POSTFIX_mynetworks={ORIGINAL}\n", f"POSTFIX_mynetworks={ORIGINAL}, {CLIENT}/32\n")
    assert mynetworks() == f"{ORIGINAL}, {CLIENT}/32"
    assert rcpt()[0] == 250  # the application host relays again, as its own client sees it

    run.rerun_is_noop()
    run.diagnose_is_clean()
    assert rcpt("127.0.0.26")[0] == 454  # nobody else was let in

    assert str(COMPOSE) in run.rollback_is_byte_identical()
    host.wait_for_log(CONTAINER, "Starting: postfix start-fg")
    assert mynetworks() == ORIGINAL
    assert rcpt()[0] == 454

    failed = run.forced_failure_rolls_back(step="restart")
    assert failed.steps("step_rolled_back")[-1] == "restart"
    host.wait_for_log(CONTAINER, "Starting: postfix start-fg")
    assert mynetworks() == ORIGINAL


def test_a_network_that_does_not_let_the_client_in_is_rolled_back(remediate_lab: Lab, tmp_path: Path) -> None:
    """The operator types the wrong network: the RCPT test from the client still gets 454, so nothing stays. The
    gateway here is brought as an author's own compose project would be: a folder the kit copies and starts."""
    project = tmp_path / "acme-relay"
    project.mkdir()
    shutil.copy(PRISTINE, project / "docker-compose.yml")
    host = remediate_lab.host("ec2-mx", compose=project, vars={"postfix_container": CONTAINER})
    assert host.name == "acme-relay" and host.compose_dir == "/opt/remediate-testkit/acme-relay"
    host.inject("relay-access-denied")
    copy = Path(host.compose_dir) / "docker-compose.yml"

    run = remediate_lab.runbook("relay-access", host, vars={"client_address": CLIENT, "client_network": "127.0.0.26/32"})
    done = run.cli("apply", "--yes").expect(1, "apply with a network that leaves the client out")
    failed = done.of("step_failed")
    assert failed[0]["step"] == "relay-allowed" and "454 4.7.1" in failed[0]["error"], done.output
    assert done.steps("step_rolled_back") == ["relay-allowed", "mynetworks", "backup", "restart"]
    assert copy.read_bytes() == PRISTINE.read_bytes()
    host.wait_for_log(CONTAINER, "Starting: postfix start-fg")
    assert mynetworks() == ORIGINAL
    assert host.containers()[CONTAINER].running
