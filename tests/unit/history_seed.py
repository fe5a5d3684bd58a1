"""Seed a state home with many past run journals, quickly, in the format the engine writes (Journal.start, then
the steps' records as apply and rollback leave them): for the run index's tests and bench/history.py."""

from __future__ import annotations

import hashlib
import json
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: What past runs ended as, and how often (most applied; some rolled back, failed or refused).
OUTCOMES = (["applied"] * 14 + ["rolled-back"] * 3 + ["failed"] * 2 + ["refused"] + ["rollback-incomplete"])
PLAYBOOKS = ("smtp-to-lmtp", "relay-access", "toy")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _step(run_id: str, host: str, n: int, state: str, when: str) -> dict[str, Any]:
    path = f"/opt/mailserver/conf{n}.cf"
    return {
        "id": f"step{n}", "kind": "file", "target": "host", "params": {"path": path, "content": f"relay {n}\n"},
        "state": state, "reason": f"rewrite {path}",
        "diffs": [f"--- a/{host}:{path}\n+++ b/{host}:{path}\n@@ -1 +1 @@\n-broken {n}\n+relay {n}\n"],
        "commands_planned": [], "started": when,
        "files": [{"path": path, "target": host, "existed": True, "before_sha256": _sha(f"broken {n}"),
                   "after_sha256": _sha(f"relay {n}"), "backup": f"/opt/mailserver/.remediate/{run_id}/conf{n}.cf",
                   "mode": "644", "owner": "0:0"}],
        "commands": [{"command": f"write /opt/mailserver/.remediate/{run_id}/journal.json", "exit_code": 0,
                      "output_tail": []}, {"command": f"write {path}", "exit_code": 0, "output_tail": []}],
        "verified": "file content verified by sha256", "finished": when}


def journal(run_id: str, host: str, playbook: str, outcome: str, started: datetime,
            attribution: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run's journal as the engine leaves it once the run ended with `outcome`."""
    when = started.isoformat(timespec="seconds")
    state = {"applied": "verified", "rolled-back": "rolled-back", "failed": "rolled-back", "refused": "planned",
             "rollback-incomplete": "rollback-failed"}[outcome]
    record: dict[str, Any] = {
        "version": 1, "run_id": run_id, "operator": "ops@laptop", "machine": "laptop", "pid": 4242, "host": host,
        "address": "127.0.0.10", "playbook": playbook, "playbook_path": f"/usr/share/remediate/{playbook}.yml",
        "vars": {"ansible_host": "127.0.0.10", "inventory_hostname": host}, "started": when, "finished": when,
        "outcome": outcome, "remote_journal": f"{host}:/opt/mailserver/.remediate/{run_id}/journal.json",
        "steps": [_step(run_id, host, n, state, when) for n in range(3)]}
    if attribution is not None:
        record["for"] = attribution
    return record


def seed(state: Path, count: int, *, hosts: int = 20, until: datetime | None = None, seed_value: int = 28,
         host_names: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """count journals in state/remediate/runs (0700; each 0600, stamped with its run's time), one every 37 minutes
    up to `until` (default a day ago), over `hosts` hosts (h0...) and host_names; every tenth for a serve incident.
    Returns the records written."""
    runs = state / "remediate" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for folder in (state, state / "remediate", runs):
        folder.chmod(0o700)
    rng = random.Random(seed_value)
    names = [f"h{n}" for n in range(hosts)] + list(host_names)
    last = until or datetime.now(UTC) - timedelta(days=1)
    written = []
    for n in range(count):
        started = last - timedelta(minutes=37 * (count - n))
        run_id = started.strftime("%Y%m%dT%H%M%SZ") + "-" + f"{rng.getrandbits(24):06x}"
        host = names[n % len(names)]
        served = {"incident": n, "approvers": [{"by": "alice", "via": "token", "at": started.isoformat()}],
                  "requested_by": None, "url": None} if n % 10 == 0 else None
        record = journal(run_id, host, rng.choice(PLAYBOOKS), rng.choice(OUTCOMES), started, served)
        path = runs / f"{run_id}.{host}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(record).encode() + b"\n")
        os.utime(path, (started.timestamp(), started.timestamp()))
        written.append(record)
    return written
