"""What serve asks of remediate: a plan (kept whole, with its diff), an apply of exactly that plan, a rollback. The
same library calls as the CLI's plan, apply PLANFILE and rollback: the same host lock, journal and "changed
underfoot" refusal.

The plan is the PlanSet's document, as `remediate plan --out` saves it, kept in serve's store (no file): the
playbook's text and the variables travel with it, and the apply runs that text (planfile.playbook_path), never the
playbook file as it reads at approval time. Every apply and rollback asks `proceed` last, once the host is checked
and just before the first change: serve's pause."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from remediate import api, redact
from remediate.engine import events, planfile
from remediate.engine.events import Emit, Event
from remediate.engine.outcome import Mode, Status
from remediate.errors import EXIT_ERROR, EXIT_OK, RemediateError
from remediate.inputs.inventory import Host
from remediate.serve.rules import Rule
from remediate.transport import Transport

Factory = Callable[[api.Options, Emit], Callable[[Host], Transport]]
#: What serve's engine listens with: each event in its JSON form (it logs the steps of an incident's run).
Listener = Emit  # the library's typed events, as they happen


class PlanStatus(StrEnum):
    CHANGES = "changes"
    NOTHING = "nothing"
    ERROR = "error"


class ApplyStatus(StrEnum):
    """How serve's apply ended (serve's words: underscores, not the CLI's hyphens)."""

    APPLIED = "applied"
    STALE = "stale"  # the host changed since the plan: nothing was changed
    ROLLED_BACK = "rolled_back"  # a step failed and every applied step was undone
    FAILED = "failed"  # nothing was changed
    INCOMPLETE = "incomplete"  # a step failed and the rollback did not finish
    ERROR = "error"  # could not start: connection, lock held, bad input
    HELD = "held"  # `proceed` said no: nothing was changed


class RollbackStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    HELD = "held"  # `proceed` said no: nothing was changed


@dataclass(frozen=True)
class Planned:
    status: PlanStatus
    diff: str
    #: The saved plan document (planfile.py), exactly what `apply` is given back.
    plan: dict[str, Any] | None
    message: str
    #: Nothing to do because a run of this playbook already fixed the host: "RUN_ID (started)".
    fixed_by: str | None = None


@dataclass(frozen=True)
class Applied:
    status: ApplyStatus
    run_id: str | None
    message: str


@dataclass(frozen=True)
class RolledBack:
    status: RollbackStatus
    message: str


#: A host's outcome (the library's status) as serve's apply status; anything else is an error.
STATUSES: Final[Mapping[Status, ApplyStatus]] = MappingProxyType({
    Status.CHANGED: ApplyStatus.APPLIED, Status.STALE: ApplyStatus.STALE, Status.ROLLED_BACK: ApplyStatus.ROLLED_BACK,
    Status.FAILED: ApplyStatus.FAILED, Status.ROLLBACK_INCOMPLETE: ApplyStatus.INCOMPLETE, Status.OK: ApplyStatus.STALE,
    Status.SKIPPED: ApplyStatus.ERROR, Status.ERROR: ApplyStatus.ERROR})


def audit_line(event: Event) -> tuple[str, str] | None:
    """What an incident's history keeps of one of the library's events, (what, detail), or None: a step's ending and
    a rollback's start. One wording for either backend."""
    if isinstance(event, events.RunStarted) and event.mode == Mode.ROLLBACK:
        return "rollback started", f"run {event.run_id}"
    if isinstance(event, events.StepApplied):
        return "step applied", event.step
    if isinstance(event, (events.StepVerified, events.StepRolledBack)):
        why = event.message
    elif isinstance(event, events.StepFailed):
        why = event.error
    else:
        return None
    return event.name.replace("_", " "), f"{event.step}{': ' + why if why else ''}"


class LibraryRuns:
    """serve's plans, applies and rollbacks, each one call into remediate.api (the library the CLI calls)."""
    def __init__(self, inventory: Path, factory: Factory, work_dir: Path) -> None:
        self.inventory = inventory
        self.factory = factory
        self.work_dir = work_dir

    def _options(self, rule: Rule | None, host: str) -> api.Options:
        return api.Options(inventory=self.inventory, hosts=(host,), playbook=rule.playbook if rule else None,
                           extra=rule.extra() if rule else ())

    def plan(self, rule: Rule, host: str, listener: Listener) -> Planned:
        """The host's plan, with the diff a reviewer reads (from the typed plans) and the document to apply."""
        opts = self._options(rule, host)
        emit = listener
        try:
            planset = api.plan(opts, emit, self.factory(opts, emit))
        except RemediateError as e:
            return Planned(PlanStatus.ERROR, "", None, str(e))
        found = next(iter(planset.hosts.values()))
        outcome = found.outcome
        assert outcome is not None  # planned here
        if outcome.exit_code == EXIT_ERROR:
            return Planned(PlanStatus.ERROR, "", None, outcome.message)
        doc = planset.document()
        if outcome.status == Status.PENDING:
            return Planned(PlanStatus.CHANGES, found.review(), doc, outcome.message)
        fixed = api.fixed_by(planset.playbook_name, [host]).get(host) if planset.playbook_name else None
        return Planned(PlanStatus.NOTHING, "", doc, outcome.message, fixed)

    def apply(self, rule: Rule, doc: dict[str, Any], listener: Listener, proceed: Callable[[], bool], *,
              attribution: Mapping[str, Any] | None = None) -> Applied:
        """Exactly the saved plan `doc`: its playbook text, its variables (the masked secrets given again from the
        rule), its host; refused as stale when the host would now get another plan. attribution (attribution()):
        whom the run is for, recorded in its journal."""
        confirm = _Asked(proceed)
        emit = listener
        try:
            planset = api.PlanSet.saved(doc, self.inventory, secrets_again(doc, rule))
            outcome = api.apply(planset, emit, self.factory(planset.options, emit), confirm,
                                attribution=attribution)[0]
        except RemediateError as e:
            if confirm.refused:
                return Applied(ApplyStatus.HELD, None, "held back just before the first change; nothing was changed")
            return Applied(ApplyStatus.ERROR, None, str(e))
        return Applied(STATUSES.get(outcome.status, ApplyStatus.ERROR), outcome.run_id, outcome.message)

    def playbook(self, doc: dict[str, Any]) -> str:
        """The file an apply of `doc` reads: the playbook itself while its text is unchanged, else the saved copy."""
        return planfile.playbook_path(doc)

    def rollback(self, host: str, run_id: str, listener: Listener, proceed: Callable[[], bool], *,
                 attribution: Mapping[str, Any] | None = None) -> RolledBack:
        """Undo run_id on host; attribution (attribution()): whom the rollback is for, recorded in the run's journal."""
        opts = self._options(None, host)
        confirm = _Asked(proceed)
        emit = listener
        try:
            outcome = api.rollback(opts, run_id, emit, self.factory(opts, emit), confirm=confirm,
                                   attribution=attribution)[0]
        except RemediateError as e:
            if confirm.refused:
                return RolledBack(RollbackStatus.HELD, "held back before the first undo; nothing was changed")
            return RolledBack(RollbackStatus.FAILED, str(e))
        status = RollbackStatus.DONE if outcome.exit_code == EXIT_OK else RollbackStatus.FAILED
        return RolledBack(status, outcome.message)


def attribution(incident: int, *, approvals: Iterable[Mapping[str, Any]] = (), requested_by: str | None = None,
                approved_by: str | None = None, url: str | None = None) -> dict[str, Any]:
    """Whom a run serve starts is for, as the run's journal keeps it (`for`, shown by `remediate runs`): the
    incident, its approvers (verified identities: by, via, at), who asked for the run (None: an alert), the
    incident's page; approved_by: a name an older serve's shared token took, kept only when no approval is."""
    approvers = [{"by": str(a.get("by")), "via": a.get("via"), "at": _when(a.get("at"))} for a in approvals]
    found: dict[str, Any] = {"incident": incident, "approvers": approvers, "requested_by": requested_by, "url": url}
    if approved_by and not approvers:
        found["approved_by"] = approved_by
    return found


def _when(at: Any) -> Any:
    """An approval's time as the journal writes times (ISO 8601, UTC); the store keeps epoch seconds."""
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return at


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
