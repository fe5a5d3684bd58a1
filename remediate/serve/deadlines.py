"""The deadlines: an incident still firing `resolve_timeout` after its fix is rolled back (or kept, on_unresolved:
keep) and failed. One incident's failure is logged with its id and noted on it; the others are checked all the same.

With serve --alertmanager, "resolved" has a second source: every few seconds each incident waiting for resolved asks
Alertmanager's API whether its alert is still there. Absent, from an Alertmanager up longer than the grace, ends the
incident resolved (after the playbook's plan is made again and found a no-op, when the rule says verify_again), with
the evidence of each source. The webhook's resolved still ends an incident at once (intake.py); the API's word at
that moment is kept beside it, and a disagreement is said in the history and the evidence."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Final

from remediate import redact
from remediate.serve.alertmanager import Alertmanager, Look, stamp
from remediate.serve.jobs import PAST_DEADLINE
from remediate.serve.models import State
from remediate.serve.runs import attribution
from remediate.serve.store import Incident

if TYPE_CHECKING:
    from remediate.serve.engine import Engine

LOG = logging.getLogger(__name__)

WAITED = "the alert was still firing at the deadline"
#: The job that ends an incident resolved on the API's word (after verify_again's plan).
RESOLVING: Final = "resolved by Alertmanager's API"


class Deadlines:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self._noted: set[int] = set()  # incidents whose failed deadline check is in their history already
        #: Alertmanager's API, asked whether a waiting incident's alert is still there (serve --alertmanager).
        self.alertmanager: Alertmanager | None = None
        #: How long Alertmanager must have been up for "absent" to count (serve --alertmanager-grace).
        self.grace = 120.0
        #: The least time between two looks at one incident's alert.
        self.every = 5.0
        self._looks: dict[int, Look] = {}  # each waiting incident's last look
        self._resolving: set[int] = set()  # incidents with a RESOLVING job queued or running
        self._quiet_until = float("-inf")  # Alertmanager did not answer: no look before then

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
        waiting = self.store.all([State.WAITING_RESOLVED])
        if len(self._looks) > 1000:  # the looks of incidents long over
            self._looks = {i.id: self._looks[i.id] for i in waiting if i.id in self._looks}
        for incident in waiting:
            try:
                if not self._proven(incident, now):
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
        waited, evidence = self._waited(incident_id), self._evidence(incident_id)
        if incident.run_id is None:
            finish(incident_id, State.FAILED, f"{waited}; this incident ran nothing (the host was already fixed), so "
                                              "nothing was rolled back: escalate", **evidence)
            return
        if rule is not None and rule.on_unresolved == "keep":
            finish(incident_id, State.FAILED, f"{waited}; the fix was kept (on_unresolved: keep): escalate",
                   **evidence)
            return
        if self.engine.paused:
            self.engine.execution.hold_rollback(incident)
            return
        self._roll_back(incident)

    def _roll_back(self, incident: Incident) -> None:
        if self.store.transition(incident.id, [State.WAITING_RESOLVED], State.RUNNING, "rolling back",
                                 f"{self._waited(incident.id)}; rolling back run {incident.run_id}") is None:
            return
        began = time.monotonic()
        undone = self.engine.runs.rollback(str(incident.host), str(incident.run_id),
                                           self.engine.execution.emit_for(incident.id), self.engine.running,
                                           attribution=attribution(incident.id, approvals=incident.approvals,
                                                                   requested_by=incident.requested_by))
        if undone.status == "held":
            self.store.transition(incident.id, [State.RUNNING], State.WAITING_RESOLVED, "paused", undone.message)
            self.engine.execution.hold_rollback(self.store.get(incident.id))
            return
        ok, message = undone.status == "done", undone.message
        waited, evidence = self._waited(incident.id), self._evidence(incident.id)
        self.engine.metrics.run(incident.playbook or "", "rollback", "ok" if ok else "failed", time.monotonic() - began)
        if ok:
            self.engine.execution.finish(incident.id, State.FAILED,
                                         f"{waited}; run {incident.run_id} was rolled back: {message}", **evidence)
        else:
            self.engine.execution.finish(incident.id, State.FAILED,
                                         f"{waited}; ROLLBACK FAILED for run {incident.run_id}: {message}", **evidence)

    # --- "resolved" from Alertmanager's API --------------------------------------------------------------------------

    def _proven(self, incident: Incident, now: float) -> bool:
        """Ask Alertmanager (not more often than `every`) whether the alert is still there; True when its absence
        sent the incident to be resolved."""
        if self.alertmanager is None or incident.id in self._resolving or now < self._quiet_until \
                or now - self._looks.get(incident.id, Look("unknown", "", float("-inf"))).at < self.every:
            return incident.id in self._resolving
        look = self.alertmanager.look(incident.fingerprint, incident.labels, self.grace)
        look = Look(look.state, look.said, now, look.reached)
        if not look.reached:  # the other incidents' looks wait too: a tick never waits out one timeout per incident
            self._quiet_until = now + self.every
        previous = self._looks.get(incident.id)
        self._looks[incident.id] = look
        if look.state != "absent":
            if look.state == "unknown" and (previous is None or previous.state != "unknown"):
                self.store.log(incident.id, "not counted", f"Alertmanager's API: {look.said}")
            return False
        self._resolving.add(incident.id)
        self.engine.jobs.submit(str(incident.host), incident.id, RESOLVING, lambda i: self.resolve(i, look))
        return True

    def resolve(self, incident_id: int, look: Look | None, webhook: str | None = None) -> None:
        """The job: the incident ends resolved when one source says resolved and none contradicts it (the API's look,
        made here when the webhook's resolved asked for it; the playbook's verify when the rule says verify_again).
        A contradiction is said, and the incident waits: for the sources to agree, or for its deadline."""
        try:
            incident = self.store.get(incident_id)
            if incident.state != State.WAITING_RESOLVED:
                return
            if look is None and self.alertmanager is not None:
                look = self.alertmanager.look(incident.fingerprint, incident.labels, self.grace)
            if look is not None and look.state == "firing":  # only the webhook's resolved can have asked
                self._looks[incident_id] = look
                self.store.log(incident_id, "sources disagree", f"the webhook said resolved at {webhook}; "
                                                                 f"Alertmanager's API: {look.said}. Waiting for them "
                                                                 "to agree, or the deadline")
                return
            rule = self.engine.rules.named(str(incident.rule))
            verify = self.verify(incident) if rule is not None and rule.verify_again else None
            if verify is not None and not verify.startswith("verified"):
                self._unverified(incident, look, verify)
                return
            self._resolved(incident, look, verify, webhook)
        finally:
            self._resolving.discard(incident_id)

    def _resolved(self, incident: Incident, look: Look | None, verify: str | None, webhook: str | None) -> None:
        """Resolved, with each source's word in the history and the evidence."""
        heard = webhook or (stamp(incident.alert_resolved) if incident.alert_resolved else None)
        evidence = {"webhook": f"resolved at {heard}" if heard else None, "api": look.said if look else None,
                    "verify": verify}
        detail = (f"webhook: {evidence['webhook'] or 'no resolved came'}; Alertmanager's API: "
                  f"{evidence['api'] or 'not asked'}{f'; {verify}' if verify else ''}")
        done = self.store.transition(incident.id, [State.WAITING_RESOLVED], State.RESOLVED, "resolved", detail,
                                     evidence=evidence, reason=None,
                                     alert_resolved=incident.alert_resolved or (look.at if look else None))
        if done is not None:
            self.engine.execution.notify(done)

    def _unverified(self, incident: Incident, look: Look | None, verify: str) -> None:
        """The alert is gone, and the playbook's plan has changes (or failed): said once, looked at a minute on."""
        said = look.said if look else "no look at Alertmanager's API"
        if "sources disagree" not in {h["what"] for h in incident.history}:
            self.store.log(incident.id, "sources disagree", f"{said}; but the playbook's verify again: {verify}. "
                                                            "Waiting until the deadline (verified again each minute)")
        # the next look (and plan) a minute on: a plan is not made every few seconds
        at = look.at if look else self.engine.clock()
        self._looks[incident.id] = Look("unknown", f"{said}; verify again: {verify}", at + 60)

    def confirm(self, incident: Incident, now: float) -> bool:
        """Alertmanager's webhook said resolved for an incident waiting for it: True when it may end resolved at once
        (no Alertmanager to ask, no verify_again). Otherwise the webhook's word is kept and a job ends the incident
        once the API does not contradict it and the verify passes (`resolve`). For intake.py to ask first."""
        rule = self.engine.rules.named(str(incident.rule))
        if self.alertmanager is None and not (rule is not None and rule.verify_again):
            return True
        if incident.id in self._resolving:
            return False
        self.store.update(incident.id, "webhook resolved", f"Alertmanager sent resolved at {stamp(now)}: confirmed "
                                                           "with its API (and the playbook's verify, when the rule "
                                                           "says verify_again) before it counts", alert_resolved=now)
        self._resolving.add(incident.id)
        self.engine.jobs.submit(str(incident.host), incident.id, RESOLVING,
                                lambda i: self.resolve(i, None, webhook=stamp(now)))
        return False

    def verify(self, incident: Incident) -> str:
        """The playbook's plan made again on the host: a no-op plan is the fix still in place ("verified ...")."""
        rule = self.engine.rules.named(str(incident.rule))
        if rule is None:
            return f"not verified: rule {incident.rule!r} is no longer in {self.engine.rules.path}"
        planned = self.engine.runs.plan(rule, str(incident.host), lambda event: None)
        at = stamp(self.engine.clock())
        if planned.status == "nothing":
            return f"verified at {at}: the playbook's plan on {incident.host} is a no-op"
        if planned.status == "error":
            return f"not verified at {at}: the plan failed: {redact.text(planned.message)}"
        return f"not verified at {at}: the playbook's plan on {incident.host} has changes"

    def webhook_resolved(self, incident: Incident) -> None:
        """An incident the webhook's resolved ended: the API's word at that moment kept beside it, and a
        disagreement said (the state stays resolved: the webhook is Alertmanager's own notice)."""
        if incident.evidence is not None or self.alertmanager is None:
            return
        look = self.alertmanager.look(incident.fingerprint, incident.labels, self.grace)
        heard = stamp(incident.alert_resolved) if incident.alert_resolved else "?"
        evidence: dict[str, Any] = {"webhook": f"resolved at {heard}", "api": look.said, "verify": None}
        if look.state == "firing":
            evidence["disagree"] = f"the webhook said resolved at {heard}; Alertmanager's API still lists the alert"
            self.store.update(incident.id, "sources disagree", f"{evidence['disagree']}: {look.said}",
                              evidence=evidence)
            return
        self.store.update(incident.id, "evidence", f"webhook: {evidence['webhook']}; API: {look.said}",
                          evidence=evidence)

    def _waited(self, incident_id: int) -> str:
        """WAITED, with the API's last word when it was asked."""
        look = self._looks.get(incident_id)
        return f"{WAITED} (Alertmanager's API: {look.said})" if look is not None else WAITED

    def _evidence(self, incident_id: int) -> dict[str, Any]:
        look = self._looks.get(incident_id)
        return {"evidence": {"webhook": None, "api": look.said, "verify": None}} if look is not None else {}
