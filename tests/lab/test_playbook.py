"""smtp-to-lmtp against the real lab: the whole loop with the test kit (diagnose, plan, apply, idempotence, rollback,
automatic rollback), and the engine around it: SIGKILL, mode and owner, a saved plan."""

from __future__ import annotations

import difflib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from remediate.engine import runrecord
from remediate.testkit import Lab

from . import labctl
from .chaoswatch import container_starts

USER_DATA = labctl.LAB / "run" / "user_data.sh"
PRISTINE_USER_DATA = labctl.LAB / "iac" / "user_data.sh"


def assert_bounces() -> None:
    assert labctl.BOUNCE in labctl.status_of(labctl.send_mail())


def test_smtp_to_lmtp_through_the_whole_loop(remediate_lab: Lab) -> None:
    """diagnose finds it; the plan shows the diffs and changes nothing; apply fixes delivery; again does nothing;
    rollback gives back every byte (the compose file and the provisioning script), the running config and the bounce;
    a failure right after the restart rolls all of it back."""
    host = remediate_lab.host("ec2-mx")
    host.inject("smtp-to-lmtp")  # a mail bounces: "refused to talk to me: 500 5.5.1 Unknown command"
    run = remediate_lab.runbook("smtp-to-lmtp", host, vars={"iac_user_data": USER_DATA}, watch=[str(USER_DATA)])
    run.diagnose_finds_it("log-no-protocol-mismatch", "relayhost-unused", "relay-transport-lmtp")

    plan = run.plan_shows_change("backup", "relay-transport", "relay-domains", "restart", "iac")
    assert list(plan.planned()) == ["backup", "relay-transport", "relay-domains", "restart", "effective-config",
                                    "test-mail", "iac"]
    assert "-      - RELAYHOST=[127.0.0.11]:2525\n+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525\n" \
        in plan.diff("relay-transport")
    assert "+      - POSTFIX_relay_domains=kuma8088.com\n" in plan.diff("relay-domains")
    assert any(c.endswith(" down") for c in plan.planned()["restart"]["commands"])
    assert USER_DATA.read_bytes() == PRISTINE_USER_DATA.read_bytes()

    original = labctl.COMPOSE_FILE.read_text()
    done = run.apply_fixes()
    verified = {e["step"]: e["message"] for e in done.of("step_verified")}
    assert "Saved" in verified["test-mail"] and "saved mail to INBOX" in verified["test-mail"]
    changed = [line for line in difflib.unified_diff(original.splitlines(), labctl.COMPOSE_FILE.read_text().splitlines(),
                                                     lineterm="", n=0) if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert changed == ["-      - RELAYHOST=[127.0.0.11]:2525",
                       "-      - POSTFIX_relay_domains=kuma8088.com, m8088.com",
                       "+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525",
                       "+      - POSTFIX_relay_domains=kuma8088.com"]
    assert "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525" in USER_DATA.read_text()
    assert "Saved" in labctl.status_of(labctl.send_mail())

    run.rerun_is_noop()  # every step ok with its reason; no file rewritten, the container neither re-created nor restarted
    run.diagnose_is_clean()
    compared = run.rollback_is_byte_identical()
    assert {str(labctl.COMPOSE_FILE), str(USER_DATA)} <= set(compared), compared
    labctl.assert_original_running_config()
    assert_bounces()

    failed = run.forced_failure_rolls_back(step="restart")
    assert failed.steps("step_rolled_back")[-1] == "restart"
    labctl.assert_original_running_config()


def test_failed_test_mail_rolls_back_file_and_running_config(remediate_lab: Lab) -> None:
    """A real failure, not a forced one: LMTP on a port where nothing listens, so the test mail is deferred."""
    original = labctl.COMPOSE_FILE.read_bytes()
    run = remediate_lab.runbook("smtp-to-lmtp", remediate_lab.host("ec2-mx"), vars={"lmtp_port": 2526})
    done = run.cli("apply", "--yes").expect(1, "apply with LMTP on a closed port")
    failed = done.of("step_failed")
    assert failed[0]["step"] == "test-mail"
    assert "status=deferred" in failed[0]["error"] and "2526" in failed[0]["error"]
    assert done.steps("step_rolled_back") == ["test-mail", "relay-domains", "relay-transport", "backup", "restart"]
    assert labctl.COMPOSE_FILE.read_bytes() == original
    labctl.assert_original_running_config()
    assert run.record()["outcome"] == "rolled-back"


def test_sigkill_between_steps_then_rollback(broken_lab: None, tmp_path: Path) -> None:
    original = labctl.COMPOSE_FILE.read_bytes()
    proc = subprocess.Popen(["remediate", "apply", "--yes", "--host", "ec2-mx", "-i", str(labctl.INVENTORY)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        records = [runrecord.read(p) for p in runs.glob("*.json")] if runs.exists() else []
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


def test_a_rollback_cut_short_after_its_restart_is_finished_without_restarting_postfix_again(broken_lab: None) -> None:
    """serve's worker killed once the rollback's `up -d` has run, before its records reached the journal the retry
    goes by: that journal says every step applied, and the restart's record names the container its undo replaced
    (written before `down`). The retry undoes what is left (nothing): each file as before it or undone further, and
    Postfix, already re-created from the restored file, is not stopped again."""
    code, _, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    (path,) = [p for p in (Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs").glob("*.ec2-mx.json")
               if runrecord.read(p)["run_id"] == labctl.journals()[0]["run_id"]]
    as_applied, replaced = runrecord.read(path), labctl.container().id
    code, _, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    labctl.assert_original_running_config()
    assert labctl.container().id != replaced
    after_restart = time.time()
    for step in as_applied["steps"]:  # what the cut-short attempt's durable record left before its `down`
        if step["id"] == "restart":
            step["undo_replacing"] = replaced
    path.write_text(json.dumps(as_applied))
    code, events, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx", "--run", as_applied["run_id"])
    assert code == 0, out
    said = {e["step"]: e["message"] for e in events if e["event"] == "step_rolled_back"}
    assert said["restart"].startswith(f"mailserver-postfix runs with the restored {labctl.COMPOSE_FILE}'s environment "
                                      f"already, in another container than the {replaced[:12]} this rollback set out "
                                      "to replace (re-created by an attempt cut short): not stopped again"), said
    assert said["relay-domains"].startswith(f"{labctl.COMPOSE_FILE} already as before step relay-transport"), said
    assert container_starts(after_restart, time.time()) == 0
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    labctl.assert_original_running_config()
