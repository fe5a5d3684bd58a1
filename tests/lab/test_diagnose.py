"""remediate diagnose against the real lab: finds the mismatch, calls a fixed lab healthy, blames the right thing."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from . import labctl

USER_DATA = labctl.LAB / "run" / "user_data.sh"


def diagnose(*args: str) -> tuple[int, dict[str, dict[str, Any]], list[dict[str, Any]], str]:
    done = subprocess.run(["remediate", "diagnose", "--host", "ec2-mx", "--json", "-i", str(labctl.INVENTORY), *args],
                          capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    checks = {e["check"]: e for e in events if e["event"] == "check"}
    return done.returncode, checks, events, done.stdout + done.stderr


def fix() -> None:
    done = subprocess.run(["remediate", "apply", "--yes", "--host", "ec2-mx", "-i", str(labctl.INVENTORY)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def state() -> tuple[str, str, str]:
    return labctl.sha256(labctl.COMPOSE_FILE), labctl.container().started_at, labctl.container(labctl.DOVECOT).started_at


def test_broken_lab_mismatch_found_three_ways_and_nothing_changed(broken_lab: None) -> None:
    labctl.status_of(labctl.send_mail())  # one real bounce in the log
    before = state()
    code, checks, events, out = diagnose()
    assert code == 3, out
    assert state() == before
    assert checks["log-no-protocol-mismatch"]["ok"] is False
    assert "1 message(s) bounced" in checks["log-no-protocol-mismatch"]["evidence"]
    assert "kuma8088.com" in checks["log-no-protocol-mismatch"]["evidence"]
    assert checks["relayhost-unused"]["ok"] is False and "[127.0.0.11]:2525" in checks["relayhost-unused"]["evidence"]
    probe = checks["relay-target-protocol"]
    assert probe["ok"] is False and "protocol mismatch proven (SMTP client, LMTP server)" in probe["evidence"]
    assert "Dovecot" in probe["evidence"]
    assert checks["relay-domains-clean"]["ok"] is False
    verdict = events[-1]
    assert verdict["event"] == "diagnosis" and verdict["fixes"] == ["smtp-to-lmtp"]
    signature = next(e for e in events if e["event"] == "signature")
    assert signature["signature"] == "protocol-mismatch" and signature["messages_bounced"] == 1


def test_fixed_lab_is_healthy(broken_lab: None) -> None:
    fix()
    code, checks, events, out = diagnose()
    assert code == 0, out
    assert all(c["ok"] is not False for c in checks.values()), checks
    assert checks["relay-target-protocol"]["ok"] is True
    assert events[-1]["healthy"] is True


def test_dovecot_down_is_reported_as_the_service_not_the_config(broken_lab: None) -> None:
    fix()
    subprocess.run(["docker", "stop", labctl.DOVECOT], check=True, capture_output=True)
    code, checks, events, out = diagnose()
    assert code == 3, out
    probe = checks["relay-target-protocol"]
    assert probe["ok"] is False and "the LMTP service is down" in probe["evidence"]
    assert "connection refused" in probe["evidence"].lower()
    assert probe["fix"] is None
    assert checks["relay-transport-lmtp"]["ok"] is True and checks["relayhost-unused"]["ok"] is True
    assert events[-1]["fixes"] == []


def test_user_data_drift_reports_both_values(broken_lab: None) -> None:
    fix()
    code, checks, _, out = diagnose("-e", f"iac_user_data={USER_DATA}")
    assert code == 3, out
    drift = checks["iac-agrees"]
    assert drift["ok"] is False
    assert "RELAYHOST: compose (unset), user_data [127.0.0.11]:2525" in drift["evidence"]
    assert "POSTFIX_relay_transport: compose lmtp:[127.0.0.11]:2525, user_data (unset)" in drift["evidence"]
