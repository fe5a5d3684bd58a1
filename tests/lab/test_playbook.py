"""smtp-to-lmtp against the real lab: plan, apply, idempotence, automatic and manual rollback, SIGKILL."""

from __future__ import annotations

import difflib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from . import labctl

USER_DATA = labctl.LAB / "run" / "user_data.sh"
PRISTINE_USER_DATA = labctl.LAB / "iac" / "user_data.sh"


def planned(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["step"]: e for e in events if e["event"] == "step_planned"}


def host_state() -> tuple[str, str, str, list[str]]:
    facts = labctl.container()
    return labctl.sha256(labctl.COMPOSE_FILE), facts.id, facts.started_at, sorted(os.listdir("/opt/mailserver"))


def assert_bounces() -> None:
    assert labctl.BOUNCE in labctl.status_of(labctl.send_mail())


def test_plan_shows_the_diffs_and_changes_nothing(broken_lab: None) -> None:
    before = host_state()
    code, events, out = labctl.remediate("plan", "--host", "ec2-mx", "-e", f"iac_user_data={USER_DATA}")
    assert code == 2, out
    steps = planned(events)
    assert list(steps) == ["backup", "relay-transport", "relay-domains", "restart", "effective-config", "test-mail", "iac"]
    assert "-      - RELAYHOST=[127.0.0.11]:2525\n+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525\n" \
        in steps["relay-transport"]["diffs"][0]["diff"]
    assert "+      - POSTFIX_relay_domains=kuma8088.com\n" in steps["relay-domains"]["diffs"][0]["diff"]
    assert any(c.endswith(" down") for c in steps["restart"]["commands"])
    assert steps["iac"]["status"] == "change"
    assert host_state() == before
    assert USER_DATA.read_bytes() == PRISTINE_USER_DATA.read_bytes()


def test_apply_fixes_delivery_then_again_does_nothing(broken_lab: None) -> None:
    original = labctl.COMPOSE_FILE.read_text()
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-e", f"iac_user_data={USER_DATA}")
    assert code == 0, out
    verified = {e["step"]: e["message"] for e in events if e["event"] == "step_verified"}
    assert "Saved" in verified["test-mail"] and "saved mail to INBOX" in verified["test-mail"]
    changed = [line for line in difflib.unified_diff(original.splitlines(), labctl.COMPOSE_FILE.read_text().splitlines(),
                                                     lineterm="", n=0) if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert changed == ["-      - RELAYHOST=[127.0.0.11]:2525",
                       "-      - POSTFIX_relay_domains=kuma8088.com, m8088.com",
                       "+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525",
                       "+      - POSTFIX_relay_domains=kuma8088.com"]
    assert "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525" in USER_DATA.read_text()
    assert "Saved" in labctl.status_of(labctl.send_mail())

    before = host_state()
    mtime = labctl.COMPOSE_FILE.stat().st_mtime_ns
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-e", f"iac_user_data={USER_DATA}")
    assert code == 0, out
    steps = planned(events)
    assert all(s["status"] == "ok" and s["reason"] for s in steps.values()), steps
    assert not [e for e in events if e["event"] in ("step_applied", "step_verified")]
    assert host_state() == before and labctl.COMPOSE_FILE.stat().st_mtime_ns == mtime


def test_failed_test_mail_rolls_back_file_and_running_config(broken_lab: None) -> None:
    original = labctl.COMPOSE_FILE.read_bytes()
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-e", "lmtp_port=2526")
    assert code == 1, out
    failed = [e for e in events if e["event"] == "step_failed"]
    assert failed[0]["step"] == "test-mail"
    assert "status=deferred" in failed[0]["error"] and "2526" in failed[0]["error"]
    rolled = [e["step"] for e in events if e["event"] == "step_rolled_back"]
    assert rolled == ["test-mail", "relay-domains", "relay-transport", "backup", "restart"]
    assert labctl.COMPOSE_FILE.read_bytes() == original
    labctl.assert_original_running_config()


def test_rollback_restores_bytes_and_the_bounce(broken_lab: None) -> None:
    original = labctl.COMPOSE_FILE.read_bytes()
    code, _, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    code, events, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    assert labctl.COMPOSE_FILE.read_bytes() == original
    labctl.assert_original_running_config()
    assert_bounces()
    code, events, _ = labctl.remediate("runs", "--host", "ec2-mx", inventory=False)
    assert events[0]["outcome"] == "rolled-back"


def test_sigkill_between_steps_then_rollback(broken_lab: None, tmp_path: Path) -> None:
    original = labctl.COMPOSE_FILE.read_bytes()
    proc = subprocess.Popen(["remediate", "apply", "--yes", "--host", "ec2-mx", "-i", str(labctl.INVENTORY)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        records = [json.loads(p.read_text()) for p in runs.glob("*.json")] if runs.exists() else []
        states = {s["id"]: s["state"] for s in records[0]["steps"]} if records else {}
        if states.get("relay-domains") == "verified":
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert states.get("relay-domains") == "verified", states
    assert labctl.COMPOSE_FILE.read_bytes() != original
    code, _, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    assert labctl.COMPOSE_FILE.read_bytes() == original
    labctl.assert_original_running_config()


def test_mode_and_owner_survive_the_edit_the_backup_and_the_rollback(broken_lab: None) -> None:
    os.chown(labctl.COMPOSE_FILE, 1234, 4321)
    labctl.COMPOSE_FILE.chmod(0o640)

    def looks(path: Path) -> tuple[int, int, int]:
        st = path.stat()
        return st.st_mode & 0o7777, st.st_uid, st.st_gid

    code, _, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    backups = list(Path("/opt/mailserver").glob("docker-compose.yml.backup-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == labctl.pristine_compose()
    assert looks(labctl.COMPOSE_FILE) == looks(backups[0]) == (0o640, 1234, 4321)
    code, _, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    assert looks(labctl.COMPOSE_FILE) == (0o640, 1234, 4321)
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()


def test_a_saved_plan_is_applied_later_and_refused_once_the_host_changed(broken_lab: None, tmp_path: Path) -> None:
    planfile = tmp_path / "fix.plan"
    code, _, out = labctl.remediate("plan", "--host", "ec2-mx", "--out", str(planfile))
    assert code == 2 and planfile.exists(), out
    labctl.COMPOSE_FILE.write_text(labctl.COMPOSE_FILE.read_text() + "# a hand edit after the review\n")
    edited = labctl.COMPOSE_FILE.read_bytes()
    code, events, out = labctl.remediate("apply", str(planfile))
    assert code == 1 and "not as the saved plan saw it" in out, out
    assert labctl.COMPOSE_FILE.read_bytes() == edited
    labctl.reset()
    code, _, out = labctl.remediate("plan", "--host", "ec2-mx", "--out", str(planfile))
    assert code == 2, out
    code, events, out = labctl.remediate("apply", str(planfile))
    assert code == 0, out
    assert "Saved" in {e["step"]: e["message"] for e in events if e["event"] == "step_verified"}["test-mail"]
