"""A rollout over ten hosts behind a real sshd: hosts in parallel, canary batches, the failure budget, the fleet
rolled back on abort, and a rerun that resumes. Each host has its own folder and lock; one may be poisoned so that
its verification fails."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from remediate.engine import runrecord

from .conftest import ADDRESS, NOPASSWD_USER, PORT, SshLab

BOOK = Path(__file__).with_name("fleet.yml")
HOSTS = [f"h{n:02d}" for n in range(1, 11)]


def fleet(ssh_lab: SshLab, tmp_path: Path, poisoned: tuple[str, ...] = ()) -> tuple[Path, Path]:
    root = tmp_path / "fleet"
    for host in HOSTS:
        (root / host).mkdir(parents=True)
        (root / host / "relay.conf").write_text("relayhost=[127.0.0.11]:2525\n")
    for host in poisoned:
        (root / host / "poison").write_text("this host fails its verification\n")
    known = tmp_path / "known_hosts"
    known.write_text(ssh_lab.server.known_hosts_line())
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  vars:\n"
        f"    ansible_host: {ADDRESS}\n    ansible_port: {PORT}\n    ansible_user: {NOPASSWD_USER}\n"
        f"    ansible_ssh_private_key_file: {ssh_lab.server.client_key}\n    ssh_known_hosts_file: {known}\n"
        f"    ansible_become: true\n    fleet_dir: {root}\n  hosts:\n"
        + "".join(f"    {h}:\n      remediate_state_dir: {root}/{h}/.state\n" for h in HOSTS))
    return inventory, root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of every host, except remediate's own records (journals, backups of the edit, the lock)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".remediate" not in p.parts and ".state" not in p.parts}


def apply(inventory: Path, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(["remediate", "apply", "--yes", "--json", "-i", str(inventory), "-p", str(BOOK),
                           "--host", "all", *args], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events, done.stdout + done.stderr


def summaries(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["host"]: e for e in events if e["event"] == "summary"}


def ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["ts"])


def test_forks_run_hosts_at_once_and_every_event_names_its_host(ssh_lab: SshLab, tmp_path: Path) -> None:
    inventory, root = fleet(ssh_lab, tmp_path)
    logins = ssh_lab.accepted_logins()
    code, events, out = apply(inventory, "--forks", "10")
    assert code == 0, out
    assert all(e.get("host") for e in events if not e["event"].startswith(("rollout_", "plan_group"))), out
    started = {e["host"]: ts(e) for e in events if e["event"] == "step_started" and e["step"] == "relay"}
    finished = {e["host"]: ts(e) for e in events if e["event"] == "run_finished"}
    assert set(started) == set(HOSTS)
    assert max(started.values()) < min(finished.values()), "the hosts' runs do not overlap"
    runs = [runrecord.read(p) for p in (Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs").glob("*.json")]
    assert len(runs) == 10 and max(r["started"] for r in runs) <= min(r["finished"] for r in runs)
    for host in HOSTS:
        assert (root / host / "relay.conf").read_text() == "relay_transport=lmtp:[127.0.0.11]:2525\n"
        assert (root / host / "settled").exists()
    assert ssh_lab.accepted_logins() - logins == 10  # one connection per host for plan and apply together
    # One diff to read, for ten hosts.
    groups = [e for e in events if e["event"] == "plan_group"]
    assert len(groups) == 1 and groups[0]["hosts"] == HOSTS and groups[0]["changed"] == 2


def test_serial_stops_after_a_failing_canary(ssh_lab: SshLab, tmp_path: Path) -> None:
    inventory, root = fleet(ssh_lab, tmp_path, poisoned=("h01",))
    before = snapshot(root)
    code, events, out = apply(inventory, "--serial", "1,3")
    assert code == 5, out
    result = summaries(events)
    assert result["h01"]["status"] == "rolled-back"
    assert [h for h in HOSTS if result[h]["status"] == "skipped"] == HOSTS[1:]
    assert not [e for e in events if e["event"] == "step_started" and e["host"] != "h01"]
    assert snapshot(root) == before


def test_the_failure_budget_stops_new_hosts_and_the_fleet_can_be_rolled_back(ssh_lab: SshLab, tmp_path: Path) -> None:
    inventory, root = fleet(ssh_lab, tmp_path, poisoned=("h04",))
    before = snapshot(root)
    code, events, out = apply(inventory, "--forks", "2", "--max-fail-percent", "10", "--rollback-fleet-on-abort")
    assert code == 6, out
    result = summaries(events)
    skipped = [h for h in HOSTS if result[h]["status"] == "skipped"]
    assert skipped and skipped == HOSTS[len(HOSTS) - len(skipped):], result  # the tail, never started
    assert {result[h]["status"] for h in HOSTS if h not in skipped and h != "h04"} == {"rolled-back"}
    aborted = next(e for e in events if e["event"] == "rollout_aborted")
    assert aborted["skipped"] == skipped and "reaching --max-fail-percent 10" in aborted["reason"]
    assert snapshot(root) == before  # byte-identical to its start, every host


def test_an_aborted_rollout_resumes(ssh_lab: SshLab, tmp_path: Path) -> None:
    inventory, root = fleet(ssh_lab, tmp_path, poisoned=("h04",))
    code, events, out = apply(inventory, "--forks", "2", "--max-fail-percent", "10")
    assert code == 5, out
    fixed = [h for h, s in summaries(events).items() if s["status"] == "changed"]
    assert fixed and "h04" not in fixed
    (root / "h04" / "poison").unlink()
    code, events, out = apply(inventory, "--forks", "5")
    assert code == 0, out
    result = summaries(events)
    for host in fixed:
        assert result[host]["status"] == "ok" and "already fixed by run" in result[host]["message"], result[host]
    assert {result[h]["status"] for h in HOSTS if h not in fixed} == {"changed"}
    assert all((root / h / "settled").exists() for h in HOSTS)
