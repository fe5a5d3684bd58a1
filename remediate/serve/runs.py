"""What serve asks of remediate: a plan (saved, with its diff), an apply of exactly that plan, a rollback. The same
library calls as the CLI's plan, apply PLANFILE and rollback: the same host lock, journal and "changed underfoot"
refusal."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import session
from ..errors import EXIT_ERROR, EXIT_OK, RemediateError
from ..inventory import Host
from ..runner import Emit
from ..transport import Transport
from .rules import Rule

Factory = Callable[[session.Options, Emit], Callable[[Host], Transport]]


@dataclass(frozen=True)
class Planned:
    status: str  # changes, nothing, error
    diff: str
    plans: dict[str, Any] | None
    message: str
    #: Nothing to do because a run of this playbook already fixed the host: "RUN_ID (started)".
    fixed_by: str | None = None


@dataclass(frozen=True)
class Applied:
    #: applied; stale (the host changed since the plan: nothing was changed); rolled_back (a step failed and every
    #: applied step was undone); failed (nothing was changed); incomplete (a step failed and the rollback did not
    #: finish); error (could not start: connection, lock held, bad input).
    status: str
    run_id: str | None
    message: str


STATUSES = {"changed": "applied", "stale": "stale", "rolled-back": "rolled_back", "failed": "failed",
            "rollback-incomplete": "incomplete", "ok": "stale", "skipped": "error", "error": "error"}


class SessionRuns:
    def __init__(self, inventory: Path, factory: Factory, work_dir: Path) -> None:
        self.inventory = inventory
        self.factory = factory
        self.work_dir = work_dir

    def _options(self, rule: Rule | None, host: str) -> session.Options:
        return session.Options(inventory=self.inventory, hosts=(host,), playbook=rule.playbook if rule else None,
                               extra=rule.extra() if rule else ())

    def plan(self, rule: Rule, host: str, emit: Emit) -> Planned:
        seen: list[dict[str, Any]] = []

        def collect(event: dict[str, Any]) -> None:
            seen.append(event)
            emit(event)

        opts = self._options(rule, host)
        fd, name = tempfile.mkstemp(dir=self.work_dir, prefix=".plan-", suffix=".json")
        out = Path(name)
        try:
            os.close(fd)
            try:
                outcome = session.plan(opts, collect, self.factory(opts, collect), out=out)[0]
            except RemediateError as e:
                return Planned("error", "", None, str(e))
            if outcome.exit_code == EXIT_ERROR:
                return Planned("error", "", None, outcome.message)
            plans = json.loads(out.read_text())["plans"]
        finally:
            out.unlink(missing_ok=True)
        if outcome.status == "pending":
            return Planned("changes", diff_text(seen), plans, outcome.message)
        name = next((e.get("playbook") for e in seen if e.get("event") == "run_started"), None)
        return Planned("nothing", "", plans, outcome.message, session.fixed_by(name).get(host) if name else None)

    def apply(self, rule: Rule, host: str, plans: dict[str, Any], emit: Emit) -> Applied:
        opts = self._options(rule, host)
        try:
            outcome = session.apply(opts, emit, self.factory(opts, emit), confirm=lambda bound: True,
                                    saved={"plans": plans})[0]
        except RemediateError as e:
            return Applied("error", None, str(e))
        return Applied(STATUSES.get(outcome.status, "error"), outcome.run_id, outcome.message)

    def rollback(self, host: str, run_id: str, emit: Emit) -> tuple[bool, str]:
        opts = self._options(None, host)
        try:
            outcome = session.rollback(opts, run_id, emit, self.factory(opts, emit), confirm=lambda record: True)[0]
        except RemediateError as e:
            return False, str(e)
        return outcome.exit_code == EXIT_OK, outcome.message


def diff_text(seen: list[dict[str, Any]]) -> str:
    """The plan as a reviewer reads it: each changing step, its reason, its diffs and its commands."""
    parts = []
    for event in seen:
        if event.get("event") != "step_planned" or event.get("status") not in ("change", "check"):
            continue
        parts.append(f"# {event.get('step')} ({event.get('kind')}): {event.get('reason')}")
        for d in event.get("diffs") or []:
            parts.append(str(d.get("diff", "")).rstrip("\n"))
        for command in event.get("commands") or []:
            parts.append(f"$ {command}")
        for check in event.get("checks") or []:
            parts.append(f"? {check}")
    return "\n".join(parts) + ("\n" if parts else "")
