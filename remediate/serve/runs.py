"""What serve asks of remediate: a plan (saved, with its diff), an apply of exactly that plan, a rollback. The same
library calls as the CLI's plan, apply PLANFILE and rollback: the same host lock, journal and "changed underfoot"
refusal.

The plan is kept whole, as `remediate plan --out` saves it: the playbook's text and the variables travel with it,
and the apply runs that text (planfile.playbook_path), never the playbook file as it reads at approval time. Every
apply and rollback asks `proceed` last, once the host is checked and just before the first change: serve's pause."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediate import api as session
from remediate import redact
from remediate.engine import planfile
from remediate.engine.runner import Emit
from remediate.errors import EXIT_ERROR, EXIT_OK, RemediateError
from remediate.inputs.inventory import Host
from remediate.serve.rules import Rule
from remediate.transport import Transport

Factory = Callable[[session.Options, Emit], Callable[[Host], Transport]]


@dataclass(frozen=True)
class Planned:
    status: str  # changes, nothing, error
    diff: str
    #: The saved plan document (planfile.py), exactly what `apply` is given back.
    plan: dict[str, Any] | None
    message: str
    #: Nothing to do because a run of this playbook already fixed the host: "RUN_ID (started)".
    fixed_by: str | None = None


@dataclass(frozen=True)
class Applied:
    #: applied; stale (the host changed since the plan: nothing was changed); rolled_back (a step failed and every
    #: applied step was undone); failed (nothing was changed); incomplete (a step failed and the rollback did not
    #: finish); error (could not start: connection, lock held, bad input); held (`proceed` said no: nothing was
    #: changed).
    status: str
    run_id: str | None
    message: str


@dataclass(frozen=True)
class RolledBack:
    status: str  # done, failed, held (`proceed` said no: nothing was changed)
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
            doc = json.loads(out.read_text())
        finally:
            out.unlink(missing_ok=True)
        if outcome.status == "pending":
            return Planned("changes", diff_text(seen), doc, outcome.message)
        book = next((e.get("playbook") for e in seen if e.get("event") == "run_started"), None)
        return Planned("nothing", "", doc, outcome.message, session.fixed_by(book).get(host) if book else None)

    def apply(self, rule: Rule, doc: dict[str, Any], emit: Emit, proceed: Callable[[], bool]) -> Applied:
        """Exactly the saved plan `doc`: its playbook text, its variables (the masked secrets given again from the
        rule), its host; refused as stale when the host would now get another plan."""
        confirm = _Asked(proceed)
        try:
            opts = session.saved_options(doc, self.inventory, secrets_again(doc, rule))
            outcome = session.apply(opts, emit, self.factory(opts, emit), confirm=confirm, saved=doc)[0]
        except RemediateError as e:
            if confirm.refused:
                return Applied("held", None, "held back just before the first change; nothing was changed")
            return Applied("error", None, str(e))
        return Applied(STATUSES.get(outcome.status, "error"), outcome.run_id, outcome.message)

    def playbook(self, doc: dict[str, Any]) -> str:
        """The file an apply of `doc` reads: the playbook itself while its text is unchanged, else the saved copy."""
        return planfile.playbook_path(doc)

    def rollback(self, host: str, run_id: str, emit: Emit, proceed: Callable[[], bool]) -> RolledBack:
        opts = self._options(None, host)
        confirm = _Asked(proceed)
        try:
            outcome = session.rollback(opts, run_id, emit, self.factory(opts, emit), confirm=confirm)[0]
        except RemediateError as e:
            if confirm.refused:
                return RolledBack("held", "held back before the first undo; nothing was changed")
            return RolledBack("failed", str(e))
        return RolledBack("done" if outcome.exit_code == EXIT_OK else "failed", outcome.message)


class _Asked:
    """`proceed` as the library's confirm callback (asked once the host is checked, before the first change),
    remembering a no: the library then raises "cancelled", which is serve's pause, not an error."""

    def __init__(self, proceed: Callable[[], bool]) -> None:
        self.proceed = proceed
        self.refused = False

    def __call__(self, _: Any) -> bool:
        self.refused = not self.proceed()
        return not self.refused


def secrets_again(doc: dict[str, Any], rule: Rule) -> tuple[str, ...]:
    """The rule's values of the variables the saved plan masks (secrets), as one -e document: planfile.extra
    takes those and nothing else; every other variable is the plan's own."""
    masked = [k for k, v in (doc.get("extra") or {}).items() if v == redact.MASK]
    given = {k: rule.vars[k] for k in masked if k in rule.vars}
    return (json.dumps(given),) if given else ()


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
