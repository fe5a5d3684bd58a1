"""smtp-to-lmtp on ec2-mx-hardened: sshd refuses port forwarding, sudo asks for a password for sh, and Postfix
listens on 127.0.0.12 only. The inventory sets neither smtp_address nor lmtp_host: everything is inferred."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from remediate.errors import ConnectError
from remediate.inputs import inventory
from remediate.transport import ForwardingRefused
from remediate.transport.ssh import connect

from . import labctl

HOST = "ec2-mx-hardened"
CONTAINER = "mailserver-postfix-hardened"
COMPOSE = Path("/opt/mailserver-hardened/docker-compose.yml")
PRISTINE = labctl.LAB / "hosts" / HOST / "docker-compose.yml"
PASSWORD = labctl.KEYS / "ops-hard.password"


@pytest.fixture
def become() -> dict[str, str]:
    return {"REMEDIATE_BECOME_PASSWORD": PASSWORD.read_text().strip()}


def run(*args: str, env: dict[str, str]) -> tuple[int, list[dict[str, Any]], str]:
    return labctl.remediate(*args, "--host", HOST, env=env)


def planned(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["step"]: e for e in events if e["event"] == "step_planned"}


def bounces() -> bool:
    return labctl.BOUNCE in labctl.status_of(labctl.send_mail(container=CONTAINER), container=CONTAINER)


def test_the_host_really_is_hardened(lab_up: None, become: dict[str, str]) -> None:
    host = inventory.load(labctl.INVENTORY).hosts[HOST]
    assert "smtp_address" not in host.vars and "lmtp_host" not in host.vars
    t = connect(host)  # no password source
    try:
        with pytest.raises(ForwardingRefused, match="refuses port forwarding"):
            t.open_tcp("127.0.0.12", 25, 5)
        with pytest.raises(ConnectError, match="sudo asks for a password"):
            t.run(["sh", "-c", "true"])
        assert t.run(["docker", "version", "--format", "{{.Server.Version}}"]).ok  # NOPASSWD: docker
    finally:
        t.close()


def test_plan_names_the_address_apply_delivers_rerun_is_a_noop(broken_lab: None, become: dict[str, str]) -> None:
    original = COMPOSE.read_bytes()
    code, events, out = run("plan", env=become)
    assert code == 2, out
    restart = planned(events)["restart"]["reason"]
    assert "then wait for SMTP on 127.0.0.12:25 (network_mode: host and POSTFIX_inet_interfaces=127.0.0.12)" in restart
    assert COMPOSE.read_bytes() == original

    code, events, out = run("apply", "--yes", env=become)
    assert code == 0, out
    verified = {e["step"]: e["message"] for e in events if e["event"] == "step_verified"}
    assert "127.0.0.12:25 says 220" in verified["restart"]
    assert f"from {HOST} itself with bash, because sshd on {HOST} refuses port forwarding" in verified["restart"]
    assert "Saved" in verified["test-mail"] and "saved mail to INBOX" in verified["test-mail"]
    assert "Saved" in labctl.status_of(labctl.send_mail(container=CONTAINER), container=CONTAINER)

    code, events, out = run("apply", "--yes", env=become)
    assert code == 0, out
    assert all(s["status"] == "ok" for s in planned(events).values()), out
    assert not [e for e in events if e["event"] in ("step_applied", "step_verified")]


def test_rollback_restores_the_bytes_and_the_bounce(broken_lab: None, become: dict[str, str]) -> None:
    code, _, out = run("apply", "--yes", env=become)
    assert code == 0, out
    code, _, out = run("rollback", "--yes", env=become)
    assert code == 0, out
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    labctl.wait_for(CONTAINER, "Starting: postfix start-fg")
    assert bounces()


def test_a_failed_test_mail_rolls_back_by_itself(broken_lab: None, become: dict[str, str]) -> None:
    code, events, out = run("apply", "--yes", "-e", "lmtp_port=2526", env=become)
    assert code == 1, out
    assert next(e for e in events if e["event"] == "step_failed")["step"] == "test-mail"
    rolled = [e["step"] for e in events if e["event"] == "step_rolled_back"]
    assert rolled == ["test-mail", "relay-domains", "relay-transport", "backup", "restart"]
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    labctl.wait_for(CONTAINER, "Starting: postfix start-fg")
    assert labctl.postconf("relayhost", container=CONTAINER)["relayhost"] == "[127.0.0.11]:2525"


def test_diagnose_gives_the_same_verdict_without_forwarding(broken_lab: None, become: dict[str, str]) -> None:
    assert bounces()
    verdicts = {}
    for host in ("ec2-mx", HOST):
        code, events, out = labctl.remediate("diagnose", "--host", host, env=become)
        assert code == 3, out
        probe = next(e for e in events if e["event"] == "probe")
        verdicts[host] = probe["verdict"]
        check = next(e for e in events if e["event"] == "check" and e["check"] == "relay-target-protocol")
        assert "protocol mismatch proven (SMTP client, LMTP server)" in check["evidence"]
    assert verdicts == {"ec2-mx": "lmtp", HOST: "lmtp"}
    assert "itself with bash" in probe["evidence"]
    code, _, out = run("apply", "--yes", env=become)
    assert code == 0, out
    code, events, out = run("diagnose", env=become)
    assert code == 0, out
