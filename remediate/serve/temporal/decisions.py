"""What people send an incident's workflow, as updates whose validators refuse what serve refuses: an approval
(four eyes: approvals.decide, at workflow.now()), a denial, a re-plan and a rollback asked for by hand. Kept apart from
the path the incident takes (workflow.py, whose IncidentWorkflow has these handlers from this class)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from remediate.serve import approvals
    from remediate.serve.temporal.shared import Decision, Opened


class Decisions:
    """The incident workflow's handlers for people's decisions; the record and its moves are the workflow's."""

    opened: Opened | None
    record: dict[str, Any]
    #: who asked for the applied run's rollback (the rollback update), until it is done
    rollback_by: str | None

    def identity(self) -> str | None:
        raise NotImplementedError

    def _log(self, what: str, detail: str) -> None:
        raise NotImplementedError

    def _set(self, state: str, what: str, detail: str, **columns: Any) -> None:
        raise NotImplementedError

    def _publish(self) -> None:
        raise NotImplementedError

    @workflow.update
    def approve(self, decision: Decision) -> dict[str, Any]:
        """One approval (approvals.decide); the incident runs once its rule's `approvals` people approved the plan."""
        assert self.opened is not None
        ruling, needed = self._ruling(decision), self.opened.approvals
        for line in ruling.dropped:
            self._log("approval dropped", line)
        counted = f" ({len(ruling.approvals)} of {needed})" if needed > 1 else ""
        if ruling.enough:
            self._set("running", "approved", f"by {_said(decision)}{counted}", approvals=ruling.approvals,
                      approved_by=", ".join(str(a["by"]) for a in ruling.approvals), reason=None)
        else:
            self.record["approvals"] = ruling.approvals
            self._log("approved", f"by {_said(decision)}{counted}: the plan waits for "
                                  f"{needed - len(ruling.approvals)} more")
            self._publish()
        return self.record

    @approve.validator
    def _approvable(self, decision: Decision) -> None:
        number, state = self.record.get("id"), self.record.get("state")
        if state != "pending":
            raise ValueError(f"incident {number} is {state}, not pending: nothing to approve")
        if self.record.get("plan") is None:
            raise ValueError(f"incident {number}: its plan is not ready yet; approve once it shows a diff")
        if decision.identity is not None and decision.identity != self.identity():
            raise ValueError(f"incident {number}: the plan is not the one you approved (its identity is now "
                             f"{self.identity()}); look again")
        refused = self._ruling(decision).refused
        if refused is not None:
            raise ValueError(f"incident {number}: {refused}")

    def _ruling(self, decision: Decision) -> approvals.Decision:
        assert self.opened is not None
        return approvals.decide(self.record.get("approvals") or [], decision.by, decision.via or "typed",
                                self.identity(), workflow.now().timestamp(), needed=self.opened.approvals,
                                expires=self.opened.approval_expires, requested_by=self.record.get("requested_by"))

    @workflow.signal
    def refused(self, detail: str) -> None:
        """A decision the validators refused (the front end tells it): the audit log says who and why."""
        self._log("approval refused", detail)

    @workflow.update
    def deny(self, decision: Decision) -> dict[str, Any]:
        self._set("denied", "denied", f"by {_said(decision)}: {decision.reason}",
                  reason=f"denied by {_said(decision)}: {decision.reason}")
        return self.record

    @deny.validator
    def _deniable(self, decision: Decision) -> None:
        if self.record.get("state") != "pending":
            raise ValueError(f"incident {self.record.get('id')} is {self.record.get('state')}, not pending: nothing "
                             "to deny")
        if not decision.reason.strip():
            raise ValueError('deny needs a reason: {"reason": "..."}')

    @workflow.update
    def replan(self, decision: Decision) -> dict[str, Any]:
        """The plan made again (the pending wait wakes up to it), its approvals cleared; its asker may not approve."""
        self.record.update(plan=None, plan_diff=None, approvals=[], approved_by=None, requested_by=decision.by,
                           planned_at=None, reason=None)
        self._log("re-plan", f"asked by {_said(decision)}: the plan is made again and its approvals are cleared; "
                             f"{decision.by} may not approve it")
        self._publish()
        return self.record

    @replan.validator
    def _replannable(self, decision: Decision) -> None:
        number, state = self.record.get("id"), self.record.get("state")
        if state != "pending":
            raise ValueError(f"incident {number} is {state}: only a pending incident is planned again (on the "
                             "temporal backend, a failed one has ended)")
        if self.record.get("plan") is None:
            raise ValueError(f"incident {number}: its plan is being made; look again once it shows a diff")

    @workflow.update
    def rollback(self, decision: Decision) -> dict[str, Any]:
        """The applied run rolled back now (the wait for resolved wakes up to it), as its deadline would."""
        self.rollback_by = _said(decision)
        self._set("running", "rolling back", f"asked by {self.rollback_by}: rolling back run {self.record['run_id']}")
        return self.record

    @rollback.validator
    def _rollbackable(self, decision: Decision) -> None:
        number, state = self.record.get("id"), self.record.get("state")
        if state != "waiting_resolved" or not self.record.get("run_id") or self.rollback_by is not None:
            raise ValueError(f"incident {number} is {state}: only an incident whose run applied and waits for "
                             "resolved is rolled back here (`remediate rollback --run RUN` undoes any run)")


def _said(decision: Decision) -> str:
    """Who decided, as the audit log words it: 'alice (token)'."""
    return f"{decision.by} ({decision.via})" if decision.via else decision.by
