"""An incident as a Temporal workflow: the path engine.py draws, with Temporal keeping every decision. People's
decisions (approve, four eyes; deny; re-plan; rollback) are updates whose validators refuse what serve refuses
(decisions.py), the resolved notice is a signal, the approval expiry and the resolve deadline are durable timers, and
plan, apply and rollback are activities (activities.py). Each state change goes to the search attributes and to a
summary in the memo, which listings read (visibility.py). The pause lives in one more workflow, ControlWorkflow."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError

from remediate.serve.temporal.decisions import Decisions
from remediate.serve.temporal.proving import Proving

#: A retried apply continues or undoes its own run (a worker that died, a heartbeat that stopped); an apply that
#: fails this many times is a bug, and the incident fails naming its run rather than retrying for ever.
APPLY_ATTEMPTS = 20

with workflow.unsafe.imports_passed_through():
    from remediate.serve import approvals
    from remediate.serve.temporal import shared
    from remediate.serve.temporal.shared import Opened, PlanInput, Planned, Ran, RunInput, Told

STATE_KEY = SearchAttributeKey.for_keyword(shared.STATE_ATTRIBUTE)
APPLIED_KEY = SearchAttributeKey.for_datetime(shared.APPLIED_ATTRIBUTE)
FINAL = ("denied", "resolved", "rolled_back", "failed", "ignored")


@workflow.defn(name=shared.INCIDENT)
class IncidentWorkflow(Decisions, Proving):
    @workflow.init
    def __init__(self, opened: Opened) -> None:
        # the record exists before any handler runs: a signal delivered with the start (another replica's repeat, a
        # resolved) is handled in the workflow's first task, before run() begins
        self.opened: Opened | None = opened
        self.record: dict[str, Any] = shared.first_record(opened, workflow.now().timestamp())
        self.held_said = False
        self.key_id = ""  # the plan key id of the replica that made the plan (shared.Planned)
        self.rollback_by: str | None = None  # who asked for the applied run's rollback (the rollback update)
        self._proof_init()

    # --- what people and Alertmanager send ---------------------------------------------------------------------

    @workflow.query
    def incident(self) -> dict[str, Any]:
        return self.record

    @workflow.signal
    def resolved(self, sender: str) -> None:
        """Alertmanager's resolved for this firing: acted on by the step of the path the incident is on."""
        now = workflow.now().timestamp()
        if self.record.get("alert_resolved") is None:
            self.record["alert_resolved"] = now
        state = self.record.get("state")
        if state == "running":
            self._log("alert resolved", "Alertmanager sent resolved while the run was in flight; it counts once the "
                                        "run has applied and verified")
        elif state not in ("pending", "waiting_resolved"):
            self._log("alert resolved", f"Alertmanager sent resolved (incident is {state})")

    @workflow.signal
    def repeat(self, detail: str) -> None:
        self._log("repeat", f"{detail} again (same fingerprint and startsAt): attached, nothing run")

    # --- the path ------------------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, opened: Opened) -> dict[str, Any]:
        if opened.state == "ignored":  # the memo its start carried says all there is
            return self.record
        self._log("matched", f"rule {opened.rule!r}: playbook {opened.playbook} on {opened.host}, approval "
                             f"{opened.approval}")
        while self.record["state"] not in FINAL:
            await self._step()
            await self._follow()  # the silence, as the new state asks (proving.py)
        await self._notify()
        return self.record

    async def _step(self) -> None:
        state = self.record["state"]
        if state in ("pending", "running") and self.record["plan"] is None:
            await self._plan()
        elif state == "pending":
            await self._decision()
        elif state == "running" and self.rollback_by is not None:
            await self._asked_rollback()
        elif state == "running":
            await self._apply()
        else:
            await self._resolution()

    async def _plan(self) -> None:
        assert self.opened is not None
        planned: Planned = await workflow.execute_activity(
            shared.PLAN, PlanInput(self.opened.number, str(self.opened.rule), str(self.opened.host)),
            result_type=Planned, start_to_close_timeout=timedelta(minutes=10), retry_policy=self._retry(3),
            heartbeat_timeout=timedelta(seconds=self.opened.timing.heartbeat))  # a planner that dies: planned again
        if planned.status == "error":
            self._set("failed", "failed", f"the plan failed: {planned.message}",
                      reason=f"the plan failed: {planned.message}")
        elif planned.status == "nothing" and planned.fixed_by:
            timeout = self.opened.resolve_timeout
            self._set("waiting_resolved", "already fixed", f"nothing to do: run {planned.fixed_by} already fixed "
                      f"{self.opened.host}; waiting up to {int(timeout)} s for resolved (this incident ran nothing, so "
                      "it rolls nothing back)", deadline=workflow.now().timestamp() + timeout)
        elif planned.status == "nothing":
            why = ("nothing to do: the host is already as the playbook leaves it, so the alert has another cause; "
                   "escalate")
            self._set("failed", "failed", why, reason=why)
        else:
            self._log("planned", planned.message.replace("the host", str(self.opened.host)))
            self.record.update(plan=planned.plan, plan_diff=planned.diff, planned_at=workflow.now().timestamp(),
                               approvals=[])
            self.key_id = planned.key_id
            self._publish()
            await self._post_chat()

    async def _decision(self) -> None:
        """Pending: wait for a person (an update), Alertmanager's resolved (a signal), or the approval expiry."""
        assert self.opened is not None
        try:
            await workflow.wait_condition(
                lambda: self.record["state"] != "pending" or self.record["alert_resolved"] is not None
                or self.record["plan"] is None, timeout=timedelta(seconds=self.opened.timing.approval_expiry))
        except TimeoutError:
            days = self.opened.timing.approval_expiry / 86400
            why = f"nobody approved the plan within {days:g} day(s); nothing was run"
            self._set("ignored", "expired", why, reason=why)
            return
        if self.record["state"] == "pending" and self.record["alert_resolved"] is not None:
            why = "the alert resolved on its own before approval; nothing was run"
            self._set("ignored", "alert resolved", "the alert resolved before anyone approved the plan; nothing was "
                      "run", reason=why)

    def run_id(self) -> str:
        """The run's id, chosen here (the same on every replay) and handed to the apply: a retried activity finds
        this run in the host's journal and never starts a second one."""
        count = sum(1 for h in self.record["history"] if h["what"] == "applying")
        digest = hashlib.sha256(f"{workflow.info().workflow_id}/{count}".encode()).hexdigest()[:6]
        return workflow.now().strftime("%Y%m%dT%H%M%SZ") + "-" + digest

    async def _apply(self) -> None:
        assert self.opened is not None
        run_id = self.run_id()
        self._log("applying", approvals.reviewed(
            float(self.record.get("planned_at") or self.record["updated"]), self.identity(), self.opened.host,
            self.record.get("approvals") or [], self.record.get("approved_by")) + f", as run {run_id}")
        self.record.update(started=workflow.now().timestamp(), run_id=run_id)
        workflow.upsert_search_attributes([APPLIED_KEY.value_set(workflow.now())])  # what the run limits count
        self._publish()
        await self._silenced()
        attempts = self.apply_attempts()
        try:
            ran: Ran = await workflow.execute_activity(
                shared.APPLY, RunInput(self.opened.number, str(self.opened.rule), str(self.opened.host), run_id,
                                       self.record["plan"], self.key_id, *self.whom()),
                result_type=Ran, start_to_close_timeout=timedelta(hours=1), retry_policy=self._retry(attempts),
                heartbeat_timeout=timedelta(seconds=self.opened.timing.heartbeat))
        except ActivityError as e:  # every attempt ended in an error of remediate's own (a bug), or none finished
            why = (f"the apply of run {run_id} did not end after {attempts} attempts ({e.cause or e}); what it "
                   f"changed: `remediate runs show {run_id}` for {self.opened.host}, undo: `remediate rollback --run "
                   f"{run_id}`")
            self._set("failed", "failed", why, reason=why)
            return
        self._steps(ran)
        if ran.status == "applied":
            self._applied(ran)
        elif ran.status == "stale":
            self._set("pending", "changed underfoot", f"{ran.message}; a fresh plan waits for approval", plan=None,
                      plan_diff=None, approved_by=None, run_id=None, approvals=[], planned_at=None)
        elif ran.status == "held":
            self._set("pending", "paused", f"serve is paused; not applied ({ran.message}): nothing was changed. The "
                      "plan waits for approval once serve is resumed", approved_by=None, run_id=None, approvals=[],
                      reason="held: serve was paused before the apply; approve it again after POST /resume")
        elif ran.status == "unapproved":  # expired or revoked while the apply waited for a worker: nothing run
            self._set("pending", "not applied", ran.message, approved_by=None, run_id=None,
                      approvals=ran.approvals or [])
        elif ran.status == "rolled_back":
            self._set("rolled_back", "rolled back", ran.message, reason=ran.message)
        else:
            why = ("ROLLBACK INCOMPLETE: " if ran.status == "incomplete" else "") + ran.message
            self._set("failed", "failed", why, reason=why)

    def _applied(self, ran: Ran) -> None:
        assert self.opened is not None
        resolved, started = self.record["alert_resolved"], self.record["started"]
        if resolved is not None and started is not None and resolved >= started and not self.proving():
            self._set("resolved", "resolved", f"run {ran.run_id} applied and verified, and the alert resolved",
                      reason=None)
            return
        timeout = self.opened.resolve_timeout
        self._set("waiting_resolved", "applied", f"run {ran.run_id}: {ran.message}; waiting up to {int(timeout)} s "
                  "for Alertmanager's resolved", deadline=workflow.now().timestamp() + timeout)

    async def _resolution(self) -> None:
        """Waiting for resolved until the deadline (a durable timer); then failed, rolled back unless kept."""
        assert self.opened is not None
        if self.proving():  # resolved from Alertmanager's API and the verify too (proving.py)
            await self._proof_wait()
            return
        left = max(0.0, float(self.record["deadline"] or 0) - workflow.now().timestamp())
        try:
            await workflow.wait_condition(lambda: self.record["alert_resolved"] is not None
                                          or self.rollback_by is not None, timeout=timedelta(seconds=left))
        except TimeoutError:
            await self._unresolved()
            return
        if self.rollback_by is not None:
            return  # the rollback update set it running: _step rolls it back
        self._set("resolved", "resolved", "Alertmanager sent resolved: the fix worked", reason=None)

    async def _unresolved(self) -> None:
        assert self.opened is not None
        run_id = self.record["run_id"]
        if run_id is None:
            why = f"{self.waited()}; this incident ran nothing (the host was already fixed), so nothing was rolled back: escalate"
            self._set("failed", "failed", why, reason=why, **self.evidence())
            return
        if self.opened.on_unresolved == "keep":
            why = f"{self.waited()}; the fix was kept (on_unresolved: keep): escalate"
            self._set("failed", "failed", why, reason=why, **self.evidence())
            return
        self._log("rolling back", f"{self.waited()}; rolling back run {run_id}")
        ran = await self._undo(run_id)
        if isinstance(ran, str):  # every attempt ended in an error (the host unreachable, a bug): escalate
            why = f"{self.waited()}; ROLLBACK FAILED for run {run_id}: {ran}"
            self._set("failed", "failed", why, reason=why, **self.evidence())
            return
        if ran.status == "held":
            await self._held(run_id)
            return
        why = (f"{self.waited()}; run {run_id} was rolled back: {ran.message}" if ran.status == "done" else
               f"{self.waited()}; ROLLBACK FAILED for run {run_id}: {ran.message}")
        self._set("failed", "failed", why, reason=why, **self.evidence())

    async def _undo(self, run_id: str) -> Ran | str:
        """The rollback activity: how it ended (its steps logged), or why it never ended, with what to do."""
        assert self.opened is not None
        try:
            ran: Ran = await workflow.execute_activity(
                shared.ROLLBACK, RunInput(self.opened.number, str(self.opened.rule), str(self.opened.host), run_id,
                                          None, "", *self.whom()),
                result_type=Ran, start_to_close_timeout=timedelta(hours=1), retry_policy=self._retry(3),
                heartbeat_timeout=timedelta(seconds=self.opened.timing.heartbeat))
        except ActivityError as e:
            return (f"it did not end after 3 attempts ({e.cause or e}); roll it back by hand: `remediate rollback "
                    f"--host {self.opened.host} --run {run_id}`")
        self._steps(ran)
        return ran

    async def _asked_rollback(self) -> None:
        """The rollback a person asked for: rolled_back, or failed saying why; held by the pause, back to waiting."""
        run_id, by = str(self.record["run_id"]), self.rollback_by
        ran = await self._undo(run_id)
        self.rollback_by = None
        if isinstance(ran, str) or ran.status not in ("done", "held"):
            why = f"ROLLBACK FAILED for run {run_id} (asked by {by}): {ran if isinstance(ran, str) else ran.message}"
            self._set("failed", "failed", why, reason=why)
        elif ran.status == "held":
            self._set("waiting_resolved", "paused", f"{ran.message}; nothing was rolled back: ask again once serve "
                                                    "is resumed")
        else:
            why = f"rolled back by {by}: run {run_id}: {ran.message}"
            self._set("rolled_back", "rolled back", why, reason=why)

    async def _held(self, run_id: str) -> None:
        """Paused at the deadline: the rollback waits for the resume (tried again later), unless resolved first."""
        assert self.opened is not None
        if not self.held_said:
            self.held_said = True
            self._log("rollback held", f"the deadline passed while serve is paused: run {run_id} is rolled back once "
                                       f"serve is resumed, unless the alert resolves first (or now by hand: remediate "
                                       f"rollback --host {self.opened.host} --run {run_id})")
        self.record["deadline"] = workflow.now().timestamp() + self.opened.timing.held_retry

    async def _notify(self) -> None:
        record = self.record
        body = {"incident": record["id"], "state": record["state"], "outcome": record["state"],
                "reason": record["reason"], "run_id": record["run_id"], "host": record["host"],
                "alertname": record["alertname"], "fingerprint": record["fingerprint"],
                "starts_at": record["starts_at"], "rule": record["rule"], "playbook": record["playbook"]}
        said: list[list[str]] = await workflow.execute_activity(
            shared.NOTIFY, Told(record["id"], body, {**record, "plan": None}), result_type=list[list[str]],
            start_to_close_timeout=timedelta(minutes=2), retry_policy=self._retry(3))
        for what, detail in said:
            self._log(what, detail)

    # --- the record ----------------------------------------------------------------------------------------------

    def identity(self) -> str | None:
        return approvals.identity_of(self.record.get("plan"), self.record.get("host"))

    def whom(self) -> tuple[list[dict[str, Any]], str | None]:
        """Whom a run is for, for its journal: the approvals held and who asked for it."""
        return list(self.record.get("approvals") or []), self.record.get("requested_by")

    def apply_attempts(self) -> int:
        """APPLY_ATTEMPTS, plus the retries that only wait out a dead attempt's lease on the host's lock (twice the
        heartbeat timeout, at least 10 s; activities.lease), so that a long heartbeat timeout never spends every
        attempt waiting and fails an incident a takeover would have ended."""
        assert self.opened is not None
        timing = self.opened.timing
        lease, waited, step, waiting = max(2 * timing.heartbeat, 10.0), 0.0, 1.0, 1
        while waited < lease:  # Temporal's backoff (_retry): from 1 s, doubling, capped at the retry interval
            waited += min(step, max(timing.retry_interval, 1.0))
            step, waiting = step * 2, waiting + 1
        return APPLY_ATTEMPTS + waiting

    def _retry(self, attempts: int) -> RetryPolicy:
        assert self.opened is not None
        return RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=attempts,
                           maximum_interval=timedelta(seconds=self.opened.timing.retry_interval))

    def _steps(self, ran: Ran) -> None:
        for what, detail in ran.log:
            self._log(what, detail)

    def _log(self, what: str, detail: str) -> None:
        now = workflow.now().timestamp()
        self.record["history"].append({"at": now, "what": what, "detail": detail})
        self.record["updated"] = now

    def _set(self, state: str, what: str, detail: str, **columns: Any) -> None:
        """A decision: the new state and columns, its history entry, the state's search attribute and the memo."""
        said = what if what == state.replace("_", " ") else f"{what} -> {state}"
        self.record.update(state=state, **columns)
        self._log(said, detail)
        workflow.upsert_search_attributes([STATE_KEY.value_set(state)])
        self._publish()

    def _publish(self) -> None:
        """The record's summary into the memo: what a listing on any replica shows, with no query to this workflow."""
        workflow.upsert_memo({shared.MEMO: shared.summary(self.record)})


@workflow.defn(name=shared.CONTROL)
class ControlWorkflow:
    """The pause, for every replica: who paused serve, when and why (None while it runs)."""

    def __init__(self) -> None:
        self.paused_by: str | None = None
        self.changes = 0

    @workflow.run
    async def run(self, paused_by: str | None) -> None:
        self.paused_by = paused_by
        await workflow.wait_condition(lambda: self.changes >= 500)  # then a fresh history, the pause kept
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(self.paused_by)

    @workflow.query
    def state(self) -> str | None:
        return self.paused_by

    @workflow.update
    def set(self, paused_by: str | None) -> str | None:
        self.paused_by = paused_by
        self.changes += 1
        return self.paused_by
