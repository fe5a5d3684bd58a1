"""An incident's plan and its apply: exactly the plan that was shown, held back by the pause, and each outcome (applied,
stale, rolled back, failed) committed to the store and told to the notify hooks."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remediate.engine import events
from remediate.engine.events import Event
from remediate.engine.outcome import Mode
from remediate.serve import approvals
from remediate.serve.models import OPEN, State
from remediate.serve.rules import Rule
from remediate.serve.runs import Applied, attribution, audit_line
from remediate.serve.store import Incident

if TYPE_CHECKING:
    from remediate.serve.engine import Engine

LOG = logging.getLogger(__name__)


def reviewed(incident: Incident) -> str:
    """The apply's history line: the plan the approvers reviewed, and who approved it (approvals.reviewed)."""
    return approvals.reviewed(incident.planned_at or incident.updated,  # an older serve kept no planned_at
                              approvals.identity_of(incident.plan, incident.host), incident.host, incident.approvals,
                              incident.approved_by)


class Execution:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.held: set[int] = set()  # incidents whose rollback the pause holds, said once each

    def _rule(self, incident: Incident) -> Rule | None:
        """The incident's rule, or None with the incident failed: the rules file no longer has it."""
        rule = self.engine.rules.named(str(incident.rule))
        if rule is None:
            self.finish(incident.id, State.FAILED, f"rule {incident.rule!r} is no longer in {self.engine.rules.path}")
        return rule

    def plan(self, incident_id: int) -> bool:
        """Make and store the plan; True when it has changes to approve or apply."""
        incident = self.store.get(incident_id)
        rule = self._rule(incident)
        if rule is None:
            return False
        started = time.monotonic()
        planned = self.engine.runs.plan(rule, str(incident.host), self.emit_for(incident_id))
        self.engine.metrics.run(rule.playbook, "plan", planned.status, time.monotonic() - started)
        if planned.status == "error":
            self.finish(incident_id, State.FAILED, f"the plan failed: {planned.message}")
            return False
        if planned.status == "nothing" and planned.fixed_by:  # another incident's run (or a person's) fixed it
            self.store.transition(incident_id, [State.PENDING, State.RUNNING], State.WAITING_RESOLVED, "already fixed",
                                  f"nothing to do: run {planned.fixed_by} already fixed {incident.host}; waiting up to "
                                  f"{int(rule.resolve_timeout)} s for resolved (this incident ran nothing, so it rolls "
                                  f"nothing back)", deadline=self.engine.clock() + rule.resolve_timeout, plan=None,
                                  plan_diff=None)
            return False
        if planned.status == "nothing":
            self.finish(incident_id, State.FAILED, "nothing to do: the host is already as the playbook leaves it, so "
                                                   "the alert has another cause; escalate")
            return False
        self.store.update(incident_id, "planned", planned.message.replace("the host", str(incident.host)),
                          plan_diff=planned.diff, plan=planned.plan, planned_at=self.engine.clock(), approvals=[])
        return True

    def run(self, incident_id: int) -> None:
        """Apply exactly the stored plan (planned first for approval: auto), unless paused or the rule is gone."""
        incident = self.store.get(incident_id)
        if incident.state != State.RUNNING:
            return
        if incident.plan is None and incident.approved_by is not None:
            # approved on a plan an older serve kept without the playbook's text: never applied, planned again
            self.store.transition(incident_id, [State.RUNNING], State.PENDING, "planning again",
                                  "the approved plan was stored by an older serve without the playbook's text and "
                                  "variables; a fresh plan waits for approval", approved_by=None, plan_diff=None,
                                  approvals=[])
            self.plan(incident_id)
            return
        if incident.plan is None:  # approval: auto (or a recovered run that never planned)
            if not self.plan(incident_id):
                return
            incident = self.store.get(incident_id)
        rule = self._rule(incident)
        # approvals are asked again as the apply begins, their age too: a job that waited behind another run on the
        # host applies only on approvals still younger than approval_expires (as Temporal's activity asks)
        if rule is None or not self.approved(incident, rule, rule.approval_expires):
            return
        if self.engine.paused:
            self.hold(incident_id, "before the apply began")
            return
        self.store.update(incident_id, "applying", reviewed(incident), started=self.engine.clock())
        began = time.monotonic()
        applied = self.engine.runs.apply(rule, dict(incident.plan or {}), self.emit_for(incident_id),
                                         self.engine.running, attribution=attribution(
                                             incident_id, approvals=incident.approvals,
                                             requested_by=incident.requested_by, approved_by=incident.approved_by))
        self.engine.metrics.run(rule.playbook, "apply", applied.status, time.monotonic() - began)
        self._applied(incident_id, rule, applied)

    def approved(self, incident: Incident, rule: Rule, expires: float = math.inf) -> bool:
        """Whether the approvals held still approve the plan held (approval: required): enough distinct people, each
        of this plan, still standing (a revoked token's no longer does) and younger than `expires` (the apply and a
        restart ask the rule's approval_expires). Else nothing is applied: back to pending with the approvals that
        still count, said."""
        if rule.approval != "required" or not incident.approvals:  # an older serve's approval kept no list: as it was
            return True
        with self.engine._deciding:  # not between an approval's decision and its commit
            incident = self.store.get(incident.id)
            now = approvals.standing(incident.approvals, incident.plan, incident.host, self.engine.clock(), expires,
                                     self.engine.live, rule.approvals)
            if incident.state == State.RUNNING and now.enough:
                return True
            for line in now.dropped:
                self.store.log(incident.id, "approval dropped", line)
            self.store.transition(incident.id, [State.RUNNING], State.PENDING, "not applied", now.refusal(),
                                  approvals=now.kept, approved_by=None)
        return False

    def _applied(self, incident_id: int, rule: Rule, applied: Applied) -> None:
        """The apply's outcome, committed: waiting for resolved (or resolved already), a fresh plan, held, or over."""
        if applied.status == "applied":
            current = self.store.get(incident_id)
            if current.alert_resolved is not None and current.started is not None \
                    and current.alert_resolved >= current.started:
                done = self.store.transition(incident_id, [State.RUNNING], State.RESOLVED, "resolved",
                                             f"run {applied.run_id} applied and verified, and the alert resolved",
                                             run_id=applied.run_id, reason=None)
            else:
                done = self.store.transition(incident_id, [State.RUNNING], State.WAITING_RESOLVED, "applied",
                                             f"run {applied.run_id}: {applied.message}; waiting up to "
                                             f"{int(rule.resolve_timeout)} s for Alertmanager's resolved",
                                             run_id=applied.run_id, deadline=self.engine.clock() + rule.resolve_timeout)
            if done is not None and done.state == State.RESOLVED:
                self.notify(done)
        elif applied.status == "stale":
            self.store.transition(incident_id, [State.RUNNING], State.PENDING, "changed underfoot",
                                  f"{applied.message}; a fresh plan waits for approval", plan=None, plan_diff=None,
                                  approved_by=None, run_id=None, approvals=[], planned_at=None)
            self.plan(incident_id)
        elif applied.status == "held":
            self.hold(incident_id, applied.message)
        elif applied.status == "rolled_back":
            self.finish(incident_id, State.ROLLED_BACK, applied.message, run_id=applied.run_id)
        else:
            prefix = "ROLLBACK INCOMPLETE: " if applied.status == "incomplete" else ""
            self.finish(incident_id, State.FAILED, prefix + applied.message, run_id=applied.run_id)

    def hold(self, incident_id: int, when: str) -> None:
        """Paused: an accepted incident is not applied. Back to pending with its plan, for a person once resumed."""
        by = self.store.setting("paused_by")
        self.store.transition(incident_id, [State.RUNNING], State.PENDING, "paused",
                              f"serve is paused ({by}); not applied ({when}): nothing was changed. The plan waits "
                              "for approval once serve is resumed",
                              reason=f"held: serve was paused ({by}) before the apply; approve it again after "
                                     "POST /resume", approved_by=None, approvals=[])

    def hold_rollback(self, incident: Incident) -> None:
        """Paused at the deadline: the rollback waits for the resume. Said once per incident."""
        if incident.id in self.held:
            return
        self.held.add(incident.id)
        self.store.log(incident.id, "rollback held",
                       f"the deadline passed while serve is paused ({self.store.setting('paused_by')}): run "
                       f"{incident.run_id} is rolled back once serve is resumed, unless the alert resolves first (or "
                       f"now by hand: remediate rollback --host {incident.host} --run {incident.run_id})")

    def finish(self, incident_id: int, state: State, reason: str, **columns: Any) -> None:
        """An open incident ends in `state` for `reason`; the notify hooks are told."""
        done = self.store.transition(incident_id, OPEN, state, state.said, reason, reason=reason, **columns)
        if done is not None:
            self.notify(done)

    def notify(self, incident: Incident) -> None:
        self.engine.notifier.send(incident.id, {
            "incident": incident.id, "state": incident.state.value, "outcome": incident.state.value,
            "reason": incident.reason, "run_id": incident.run_id, "host": incident.host,
            "alertname": incident.alertname, "fingerprint": incident.fingerprint, "starts_at": incident.starts_at,
            "rule": incident.rule, "playbook": Path(incident.playbook).stem if incident.playbook else None})

    def emit_for(self, incident_id: int) -> Callable[[Event], None]:
        """The library's events for this incident's run, as its audit log keeps them."""
        announced: dict[str, str] = {}

        def emit(event: Event) -> None:
            if isinstance(event, events.RunStarted) and event.mode == Mode.APPLY:
                announced["run_id"] = event.run_id  # the checks before an apply: no journal yet
            elif isinstance(event, events.StepStarted) and announced.get("run_id"):
                # the first step: the run's journal exists from here on, so a restart must find this id
                self.store.update(incident_id, "run started", f"run {announced['run_id']}",
                                  run_id=announced.pop("run_id"))
            else:
                line = audit_line(event)
                if line is not None:
                    self.store.log(incident_id, *line)
        return emit
