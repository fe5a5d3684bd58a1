"""What a person asks of serve besides approve and deny: a run of a rule on a host (a manual trigger, opened as an
alert would open it), a plan made again, and a fix rolled back. Whoever asked for a run may not approve it
(approvals.py); whether they may ask at all is the routes' (permit.require, before these are called)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from remediate.errors import RemediateError
from remediate.inputs import inventory as inventory_mod
from remediate.serve.identity import Person
from remediate.serve.jobs import APPLYING, PLANNING
from remediate.serve.models import State
from remediate.serve.refusals import Refused
from remediate.serve.runs import attribution
from remediate.serve.store import Incident, iso

if TYPE_CHECKING:
    from remediate.serve.engine import Engine

ROLLING_BACK = "rolling back (asked by a person)"


class Manual:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store

    def request(self, rule_name: str, host: str, person: Person) -> Incident:
        """A run of `rule_name` on `host`, asked for by `person`: an incident as the rule's alert would open
        (fingerprint manual:<uuid>), planned, and applied once approved by others (or at once, approval: auto)."""
        engine = self.engine
        rule = engine.rules.named(rule_name)
        if rule is None:
            raise Refused(f"no rule {rule_name!r} in {engine.rules.path}")
        try:
            hosts = inventory_mod.load(engine.inventory).hosts
        except RemediateError as e:
            raise Refused(f"the inventory cannot be read: {e.message}") from None
        if host not in hosts:
            raise Refused(f"host {host!r} is not in {engine.inventory}")
        if engine.paused:
            raise Refused(f"serve is paused ({self.store.setting('paused_by')}): resume it before asking for a run")
        with engine.intake._receiving:  # counted by the rate limits as an alert is, one at a time
            limited = engine.intake._limited(rule, host)
            if limited is not None:
                raise Refused(str(limited[1]))
            state = State.PENDING if rule.approval == "required" else State.RUNNING
            incident, _ = self.store.create(
                fingerprint=f"manual:{uuid.uuid4()}", starts_at=iso(engine.clock()), alertname=None,
                labels={rule.host_label: host}, host=host, rule=rule.name, playbook=rule.playbook, state=state,
                reason=None, what="requested", detail=f"by {person.said}: rule {rule.name!r}, playbook "
                                                      f"{Path(rule.playbook).stem} on {host}")
            self.store.update(incident.id, "matched", f"rule {rule.name!r} ({rule.where}), approval {rule.approval}"
                              + (f"; {person.name} asked for it, so someone else must approve it"
                                 if rule.approval == "required" else ""), requested_by=person.name)
        if state == State.PENDING:
            engine.jobs.submit(host, incident.id, PLANNING, engine.execution.plan)
        else:
            engine.jobs.submit(host, incident.id, APPLYING, engine.execution.run)
        return self.store.get(incident.id)

    def replan(self, incident_id: int, person: Person) -> Incident:
        """A pending incident whose plan is made (or a failed one that ran nothing) planned again, its approvals
        cleared; `person` asked for the new plan, so may not approve it."""
        incident = self.engine.get(incident_id)
        if not (incident.state == State.PENDING or (incident.state == State.FAILED and incident.run_id is None)):
            raise Refused(f"incident {incident_id} is {incident.state}"
                          f"{f' (run {incident.run_id})' if incident.run_id else ''}: only a pending incident, or a "
                          "failed one that ran nothing, is planned again")
        if incident.state == State.PENDING and incident.plan is None:
            raise Refused(f"incident {incident_id}: its plan is being made; look again once it shows a diff")
        with self.engine._deciding:  # never between an approval's read of the plan and its decision
            done = self.store.transition(incident_id, [incident.state], State.PENDING, "re-plan",
                                         f"asked by {person.said}: the plan is made again and its approvals are "
                                         f"cleared; {person.name} may not approve it", plan=None, plan_diff=None,
                                         approvals=[], approved_by=None, requested_by=person.name, planned_at=None,
                                         reason=None, deadline=None)
        if done is None:
            raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        self.engine.jobs.submit(str(done.host), incident_id, PLANNING, self.engine.execution.plan)
        return done

    def rollback(self, incident_id: int, person: Person) -> Incident:
        """The run an incident applied (waiting for resolved, or resolved) rolled back now, as its deadline would."""
        incident = self.engine.get(incident_id)
        if incident.state not in (State.WAITING_RESOLVED, State.RESOLVED) or incident.run_id is None:
            raise Refused(f"incident {incident_id} is {incident.state}"
                          f"{'' if incident.run_id else ' and ran nothing'}: only an incident whose run applied "
                          "(waiting_resolved or resolved) is rolled back")
        if self.engine.paused:
            raise Refused(f"serve is paused ({self.store.setting('paused_by')}): resume it before rolling back")
        was = incident.state
        done = self.store.transition(incident_id, [was], State.RUNNING, "rolling back",
                                     f"asked by {person.said}: rolling back run {incident.run_id}", deadline=None)
        if done is None:
            raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        self.engine.jobs.submit(str(done.host), incident_id, ROLLING_BACK,
                                lambda number: self._roll_back(number, person, was, incident.deadline))
        return done

    def _roll_back(self, incident_id: int, person: Person, was: State, deadline: float | None) -> None:
        """The job: the run undone (rolled_back), or failed saying so; back where it was when the pause held it."""
        engine = self.engine
        incident = self.store.get(incident_id)
        if incident.state != State.RUNNING:
            return
        began = time.monotonic()
        undone = engine.runs.rollback(str(incident.host), str(incident.run_id), engine.execution.emit_for(incident_id),
                                      engine.running, attribution=attribution(
                                          incident_id, approvals=incident.approvals, requested_by=person.said))
        if undone.status == "held":
            self.store.transition(incident_id, [State.RUNNING], was, "paused", f"{undone.message}; nothing was "
                                  f"rolled back: ask again once serve is resumed", deadline=deadline)
            return
        ok = undone.status == "done"
        engine.metrics.run(incident.playbook or "", "rollback", "ok" if ok else "failed", time.monotonic() - began)
        if ok:
            engine.execution.finish(incident_id, State.ROLLED_BACK, f"rolled back by {person.said}: run "
                                                                   f"{incident.run_id}: {undone.message}")
        else:
            engine.execution.finish(incident_id, State.FAILED, f"ROLLBACK FAILED for run {incident.run_id} (asked by "
                                                               f"{person.said}): {undone.message}")
