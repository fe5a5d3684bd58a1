"""The deadlines: an incident still firing `resolve_timeout` after its fix is rolled back (or kept, on_unresolved:
keep) and failed. One incident's failure is logged with its id and noted on it; the others are checked all the same."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from remediate import redact
from remediate.serve.jobs import PAST_DEADLINE
from remediate.serve.models import State
from remediate.serve.store import Incident

if TYPE_CHECKING:
    from remediate.serve.engine import Engine

LOG = logging.getLogger(__name__)

WAITED = "the alert was still firing at the deadline"


class Deadlines:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self._noted: set[int] = set()  # incidents whose failed deadline check is in their history already

    def loop(self, stopping: threading.Event, every: float) -> None:
        """tick() every `every` seconds until `stopping` is set; a failure is logged and the next tick comes."""
        while not stopping.wait(every):
            try:
                self.tick()
            except Exception:
                LOG.exception("checking the deadlines failed; trying again in %s s", every)

    def tick(self) -> None:
        """Incidents still firing at their deadline: rolled back (or kept), and failed."""
        now = self.engine.clock()
        for incident in self.store.all([State.WAITING_RESOLVED]):
            try:
                self._due(incident, now)
            except Exception as e:
                LOG.exception("incident %d: checking its deadline failed; the other incidents are checked",
                              incident.id, extra={"incident": incident.id})
                self._note(incident.id, e)

    def _due(self, incident: Incident, now: float) -> None:
        if incident.deadline is None or incident.deadline > now:
            return
        if self.engine.paused and self._rolls_back(incident):
            self.engine.execution.hold_rollback(incident)
            return
        self.engine.jobs.submit(str(incident.host), incident.id, PAST_DEADLINE, self.unresolved)

    def _note(self, incident_id: int, error: Exception) -> None:
        """A failed deadline check in the incident's history, once (it is tried again every tick)."""
        if incident_id in self._noted:
            return
        self._noted.add(incident_id)
        try:
            self.store.log(incident_id, "deadline check failed",
                           redact.text(f"{type(error).__name__}: {error} (tried again every tick; see serve's log)"))
        except Exception:
            LOG.exception("incident %d: the failed deadline check could not be noted", incident_id,
                          extra={"incident": incident_id})

    def _rolls_back(self, incident: Incident) -> bool:
        """At its deadline, this incident's fix is rolled back (it ran one, and its rule does not keep it)."""
        rule = self.engine.rules.named(str(incident.rule))
        return incident.run_id is not None and not (rule is not None and rule.on_unresolved == "keep")

    def unresolved(self, incident_id: int) -> None:
        """The job at the deadline: fail the incident, rolling its run back unless its rule keeps the fix."""
        incident = self.store.get(incident_id)
        if incident.state != State.WAITING_RESOLVED or incident.deadline is None \
                or incident.deadline > self.engine.clock():
            return
        rule = self.engine.rules.named(str(incident.rule))
        finish = self.engine.execution.finish
        if incident.run_id is None:
            finish(incident_id, State.FAILED, f"{WAITED}; this incident ran nothing (the host was already fixed), so "
                                              "nothing was rolled back: escalate")
            return
        if rule is not None and rule.on_unresolved == "keep":
            finish(incident_id, State.FAILED, f"{WAITED}; the fix was kept (on_unresolved: keep): escalate")
            return
        if self.engine.paused:
            self.engine.execution.hold_rollback(incident)
            return
        self._roll_back(incident)

    def _roll_back(self, incident: Incident) -> None:
        if self.store.transition(incident.id, [State.WAITING_RESOLVED], State.RUNNING, "rolling back",
                                 f"{WAITED}; rolling back run {incident.run_id}") is None:
            return
        began = time.monotonic()
        undone = self.engine.runs.rollback(str(incident.host), str(incident.run_id),
                                           self.engine.execution.emit_for(incident.id), self.engine.running)
        if undone.status == "held":
            self.store.transition(incident.id, [State.RUNNING], State.WAITING_RESOLVED, "paused", undone.message)
            self.engine.execution.hold_rollback(self.store.get(incident.id))
            return
        ok, message = undone.status == "done", undone.message
        self.engine.metrics.run(incident.playbook or "", "rollback", "ok" if ok else "failed", time.monotonic() - began)
        if ok:
            self.engine.execution.finish(incident.id, State.FAILED,
                                         f"{WAITED}; run {incident.run_id} was rolled back: {message}")
        else:
            self.engine.execution.finish(incident.id, State.FAILED,
                                         f"{WAITED}; ROLLBACK FAILED for run {incident.run_id}: {message}")
