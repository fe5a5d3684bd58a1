"""What the run records say about a host: the run that last fixed it, whether that fix still stands, whether its
last change is already rolled back."""

from __future__ import annotations

from typing import Any

from remediate.engine import journal as journal_mod
from remediate.engine.context import HOST
from remediate.engine.outcome import RunEnd
from remediate.engine.runner import Bound


def last_applied(playbook: str | None) -> dict[str, dict[str, Any]]:
    """For each host, the record of the newest run of this playbook that applied (a resumed rollout names it); one
    read of the run records for all hosts."""
    found: dict[str, dict[str, Any]] = {}
    for record in journal_mod.history():  # newest first
        host = str(record.get("host"))
        if host not in found and record.get("outcome") == RunEnd.APPLIED and playbook in (None, record.get("playbook")):
            found[host] = record
    return found


def fixed_by(playbook: str | None) -> dict[str, str]:
    """For each host, "RUN_ID (started)" of the newest run of this playbook that applied."""
    return {host: f"{r['run_id']} ({r.get('started')})" for host, r in last_applied(playbook).items()}


def already_rolled_back(host: str) -> dict[str, Any] | None:
    """The host's last run that changed something, when it is rolled back whole: a second `rollback` has nothing
    left to do, which is exit 0 like every "nothing to do" (an older run is never reached for on its own)."""
    for record in journal_mod.history(host):  # newest first
        if record.get("outcome") in journal_mod.NOTHING_CHANGED:
            continue
        return record if journal_mod.live_outcome(record) == RunEnd.ROLLED_BACK else None
    return None


def still_as_left(b: Bound, record: dict[str, Any]) -> bool:
    """Whether every file the run wrote still has the content it left (as this plan read it, else read now)."""
    left: dict[tuple[str, str], str] = {}
    for step in record.get("steps") or []:
        for f in step.get("files") or []:
            if isinstance(f, dict) and f.get("after_sha256"):
                left[(str(f.get("target")), str(f.get("path")))] = str(f["after_sha256"])
    for (target, path), digest in left.items():
        if (target, path) in b.ctx.reads:
            found = b.ctx.reads[(target, path)]
            now = found.split()[0] if found else None
        else:
            now = b.ctx.transport(HOST if target == b.host.name else target).sha256(path)
        if now != digest:
            return False
    return True
