"""What happens to an incident, from the alert that opens it to the `resolved` that closes it.

    firing alert ─ no rule / unknown host / paused / rate-limited ─> ignored
        │ rule matched
        ├─ approval: required ─> pending (plan made, diff stored) ─ deny ─> denied
        │                           │ approved by `approvals` distinct people (not the requester), each within
        │                           │ `approval_expires`, all of the plan held now (four eyes: approvals.py)
        └─ approval: auto ──────> running: apply exactly the plan ─ host changed since ─> pending, fresh plan
                                    │ applied and verified              ─ a step failed ─> rolled_back
                                    v
                              waiting_resolved ─ Alertmanager sends resolved ─> resolved
                                    │ still firing at resolve_timeout
                                    └─> rolled back (on_unresolved: rollback) or kept (keep) ─> failed

Every decision is committed to the store before it is acted on; jobs for one host run one at a time.
A person may also ask for a run of a rule on a host, a fresh plan, or the rollback of an applied run (manual.py).

The pause stops every change serve would make, whenever the decision to make it was taken: an apply (approved,
automatic, or resumed after a restart) asks once more just before its first change and, paused, goes back to
pending with its plan; a rollback at the deadline waits for the resume (see docs/serve.md)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediate.errors import RemediateError
from remediate.serve import approvals, recovery
from remediate.serve.deadlines import Deadlines
from remediate.serve.execution import Execution
from remediate.serve.identity import FILE, Person, Tokens
from remediate.serve.intake import Intake, host_of
from remediate.serve.jobs import APPLYING, Jobs
from remediate.serve.manual import Manual
from remediate.serve.models import State, Webhook
from remediate.serve.notify import Notifier
from remediate.serve.refusals import NotFound, Refused
from remediate.serve.rules import Rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.store import Incident, Store

__all__ = ["Engine", "Metrics", "NotFound", "Refused", "host_of", "stands"]

LOG = logging.getLogger(__name__)


@dataclass
class Metrics:
    """Hooks for /metrics; the app fills them in (prometheus-client), tests may leave them."""

    run: Callable[[str, str, str, float], None] = lambda playbook, mode, outcome, seconds: None


def stands(directory: Path | None, name: str, via: str) -> bool:
    """Engine.live for the tokens of the state `directory` (either backend's)."""
    if via in ("proxy", "") or directory is None:
        return True
    path = Path(directory) / FILE
    if not (path.exists() or path.is_symlink()):  # a dangling symlink is read, and refused (identity.py)
        return True
    try:
        entries = Tokens(Path(directory)).entries()
    except RemediateError as e:
        LOG.warning("serve: the tokens file cannot be read (%s): approvals by token count for nothing", e.message)
        return False
    chat = via not in ("token", "session")
    return any(e.name == name and e.revoked is None and (not chat or bool(e.chat.get(via))) for e in entries)


class Engine:
    """serve's incidents: alerts in (intake), plans and applies (execution) on workers (jobs), the deadlines, the
    pause, and what people decide (approve, deny)."""

    def __init__(self, store: Store, rules: Rules, inventory: Path, runs: LibraryRuns, notifier: Notifier, *,
                 clock: Callable[[], float] = time.time, host_runs_per_hour: int = 6, workers: int = 4,
                 tick: float = 1.0, metrics: Metrics | None = None) -> None:
        self.store = store
        self.rules = rules
        self.inventory = inventory
        self.runs = runs
        self.notifier = notifier
        self.clock = clock
        self.host_runs_per_hour = host_runs_per_hour
        self.metrics = metrics or Metrics()
        self.tick_seconds = tick
        self.execution = Execution(self)
        self.jobs = Jobs(workers, lambda incident_id, reason: self.execution.finish(incident_id, State.FAILED, reason))
        self.intake = Intake(self)
        self.deadlines = Deadlines(self)
        #: what a person asks besides approve and deny: a run by hand, a plan again, a rollback
        self.manual = Manual(self)
        self._stopping = threading.Event()
        #: approvals, re-plans and the check before an apply, one at a time (re-entrant: a re-plan asked while an
        #: approval is being decided, in the same thread, must not deadlock; it is re-checked after)
        self._deciding = threading.RLock()
        self._ticker: threading.Thread | None = None
        #: serve's own lines that concern no one incident (pause, resume): logged at info; serve prints them to stderr.
        self.announce: Callable[[str], None] = lambda line: LOG.info("%s", line)

    # --- life ----------------------------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Take up what a previous serve left in flight, then watch the deadlines. Returns what recovery did."""
        done = self.recover()
        self._ticker = threading.Thread(target=self.deadlines.loop, args=(self._stopping, self.tick_seconds),
                                        name="deadlines", daemon=True)
        self._ticker.start()
        return done

    def stop(self) -> None:
        """No more deadline checks; every job already handed to the workers runs to its end (an apply is never
        abandoned half-way)."""
        self._stopping.set()
        self.jobs.stop()

    def in_flight(self) -> list[str]:
        """The jobs not finished yet, one line each: the incident, what the job does, its state and host."""
        lines = []
        for job in self.jobs.in_flight():
            try:
                incident = self.get(job.incident_id)
            except NotFound:
                lines.append(f"incident {job.incident_id}: {job.what}")
                continue
            run = f", run {incident.run_id}" if incident.run_id else ""
            lines.append(f"incident {job.incident_id}: {job.what} on {incident.host} "
                         f"({'started' if job.started else 'queued'}; {incident.state}{run})")
        return lines

    def idle(self, timeout: float = 300.0) -> None:
        """Wait until every queued job has finished (tests and shutdown)."""
        self.jobs.idle(timeout)

    def recover(self) -> list[str]:
        """After a restart: nothing runs twice (recovery.py). Returns what was done, one line per incident."""
        return recovery.recover(self)

    def receive(self, payload: Webhook) -> list[dict[str, Any]]:
        """Each alert of a (grouped) payload on its own; what became of each."""
        return self.intake.receive(payload)

    def tick(self) -> None:
        """Incidents still firing at their deadline: rolled back (or kept), and failed."""
        self.deadlines.tick()

    # --- the pause -----------------------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.store.setting("paused") == "1"

    def pause(self, by: str, reason: str = "") -> str:
        """The kill switch on; returns who paused it, when and why, as incidents ignored meanwhile name it."""
        when = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.clock()))
        self.store.set_setting("paused", "1")
        self.store.set_setting("paused_by", f"{by} at {when}{': ' + reason if reason else ''}")
        self.announce(f"serve: paused by {by}{': ' + reason if reason else ''}; no host is changed until resumed")
        return str(self.store.setting("paused_by"))

    def resume(self, by: str) -> None:
        self.store.set_setting("paused", "0")
        self.store.set_setting("paused_by", "")
        self.execution.held.clear()
        self.announce(f"serve: resumed by {by}")

    def running(self) -> bool:
        """What every apply and rollback asks last, just before its first change."""
        return not self.paused

    # --- people --------------------------------------------------------------------------------------------------

    def get(self, incident_id: int) -> Incident:
        try:
            return self.store.get(incident_id)
        except KeyError:
            raise NotFound(f"no incident {incident_id}") from None

    def live(self, name: str, via: str) -> bool:
        """Whether an approval by `name`, proven `via`, still stands: a token's or a session's while `name` has a live
        token, a chat click's while a live token of `name` maps that chat service; a proxy's always (the proxy is the
        authority). Without a tokens file in the state directory serve has no token people to check (unit tests)."""
        return stands(getattr(self.runs, "work_dir", None), name, via)  # the state directory: `serve tokens`' too

    def approve(self, incident_id: int, person: Person, identity: str | None = None) -> Incident:
        """One approval, by a verified person, of the plan the incident holds (`identity`, when given, is the plan's
        the approver saw). The incident runs once its rule's `approvals` distinct people have approved that plan
        within `approval_expires` (approvals.py); a refusal is in its history too, with the reason."""
        with self._deciding:  # one approval at a time: each counts the ones before it
            incident = self._approvable(incident_id, person, identity)
            rule = self.rules.named(str(incident.rule))
            if rule is None:
                raise Refused(f"incident {incident_id}: rule {incident.rule!r} is no longer in {self.rules.path}")
            standing, gone = approvals.alive(incident.approvals, self.live)
            held = approvals.identity_of(incident.plan, incident.host)
            decision = approvals.decide(standing, person.name, person.via, held, self.clock(),
                                        needed=rule.approvals, expires=rule.approval_expires,
                                        requested_by=incident.requested_by)
            if approvals.identity_of(self.get(incident_id).plan, incident.host) != held:  # re-planned meanwhile
                self._refuse(incident_id, person, "the plan was made again while your approval was decided; look "
                                                  "again")
            for line in (*gone, *decision.dropped):
                self.store.log(incident_id, "approval dropped", line)
            if decision.refused is not None:
                if decision.dropped or gone:
                    self.store.update(incident_id, "approvals", "kept: " + (approvals.said(decision.approvals) or
                                                                            "none"), approvals=decision.approvals)
                self._refuse(incident_id, person, decision.refused)
            counted = f" ({len(decision.approvals)} of {rule.approvals})" if rule.approvals > 1 else ""
            if decision.enough:
                done = self.store.transition(incident_id, [State.PENDING], State.RUNNING, "approved",
                                             f"by {person.said}{counted}", approvals=decision.approvals, reason=None,
                                             approved_by=", ".join(str(a["by"]) for a in decision.approvals))
            else:
                done = self.store.transition(incident_id, [State.PENDING], State.PENDING, "approved",
                                             f"by {person.said}{counted}: the plan waits for "
                                             f"{rule.approvals - len(decision.approvals)} more",
                                             approvals=decision.approvals)
            if done is None:
                raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        if done.state == State.RUNNING:
            self.jobs.submit(str(done.host), incident_id, APPLYING, self.execution.run)
        return done

    def _approvable(self, incident_id: int, person: Person, identity: str | None) -> Incident:
        """The pending incident, its plan made and the one the approver saw, serve running; else Refused."""
        incident = self.get(incident_id)
        if incident.state != State.PENDING:
            raise Refused(f"incident {incident_id} is {incident.state}, not pending: nothing to approve")
        if incident.plan is None:
            raise Refused(f"incident {incident_id}: its plan is not ready yet; approve once it shows a diff")
        if self.paused:
            raise Refused(f"serve is paused ({self.store.setting('paused_by')}): resume it before approving")
        held = approvals.identity_of(incident.plan, incident.host)
        if identity is not None and identity != held:
            self._refuse(incident_id, person, f"the plan is not the one you approved (its identity is now {held}); "
                                              "look again")
        return incident

    def _refuse(self, incident_id: int, person: Person, why: str) -> None:
        """An approval refused: said in the incident's history (who, and why), then raised."""
        self.store.log(incident_id, "approval refused", f"{person.said}: {why}")
        raise Refused(f"incident {incident_id}: {why}")

    def deny(self, incident_id: int, person: Person, reason: str) -> Incident:
        incident = self.get(incident_id)
        if incident.state != State.PENDING:
            raise Refused(f"incident {incident_id} is {incident.state}, not pending: nothing to deny")
        done = self.store.transition(incident_id, [State.PENDING], State.DENIED, "denied",
                                     f"by {person.said}: {reason}", reason=f"denied by {person.said}: {reason}")
        if done is None:
            raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        self.execution.notify(done)
        return done
