"""What happens to an incident, from the alert that opens it to the `resolved` that closes it.

    firing alert ─ no rule / unknown host / paused / rate-limited ─> ignored
        │ rule matched
        ├─ approval: required ─> pending (plan made, diff stored) ─ deny ─> denied
        │                           │ approve
        └─ approval: auto ──────> running: apply exactly the plan ─ host changed since ─> pending, fresh plan
                                    │ applied and verified              ─ a step failed ─> rolled_back
                                    v
                              waiting_resolved ─ Alertmanager sends resolved ─> resolved
                                    │ still firing at resolve_timeout
                                    └─> rolled back (on_unresolved: rollback) or kept (keep) ─> failed

Every decision is committed to the store before it is acted on; jobs for one host run one at a time.

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

from remediate.serve import recovery
from remediate.serve.deadlines import Deadlines
from remediate.serve.execution import Execution
from remediate.serve.intake import Intake, host_of
from remediate.serve.jobs import APPLYING, Jobs
from remediate.serve.models import State, Webhook
from remediate.serve.notify import Notifier
from remediate.serve.rules import Rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.store import Incident, Store

__all__ = ["Engine", "Metrics", "NotFound", "Refused", "host_of"]

LOG = logging.getLogger(__name__)


class NotFound(Exception):
    """No such incident."""


class Refused(Exception):
    """The action does not apply to the incident in its state."""


@dataclass
class Metrics:
    """Hooks for /metrics; the app fills them in (prometheus-client), tests may leave them."""

    run: Callable[[str, str, str, float], None] = lambda playbook, mode, outcome, seconds: None


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
        self._stopping = threading.Event()
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

    def approve(self, incident_id: int, by: str) -> Incident:
        incident = self.get(incident_id)
        if incident.state != State.PENDING:
            raise Refused(f"incident {incident_id} is {incident.state}, not pending: nothing to approve")
        if incident.plan is None:
            raise Refused(f"incident {incident_id}: its plan is not ready yet; approve once it shows a diff")
        if self.paused:
            raise Refused(f"serve is paused ({self.store.setting('paused_by')}): resume it before approving")
        done = self.store.transition(incident_id, [State.PENDING], State.RUNNING, "approved", f"by {by}", approved_by=by,
                                     reason=None)
        if done is None:
            raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        self.jobs.submit(str(done.host), incident_id, APPLYING, self.execution.run)
        return done

    def deny(self, incident_id: int, by: str, reason: str) -> Incident:
        incident = self.get(incident_id)
        if incident.state != State.PENDING:
            raise Refused(f"incident {incident_id} is {incident.state}, not pending: nothing to deny")
        done = self.store.transition(incident_id, [State.PENDING], State.DENIED, "denied", f"by {by}: {reason}",
                                     reason=f"denied by {by}: {reason}")
        if done is None:
            raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        self.execution.notify(done)
        return done
