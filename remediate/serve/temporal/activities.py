"""The incident workflow's activities: plan, apply and rollback through the same library calls as the CLI (serve's
runs.py), and the notify hooks. Apply heartbeats at each step, and runs under the run id the workflow chose, holding
the host's lock with a lease of its workflow and run (renewed at each step, outliving a heartbeat timeout): an attempt
retried after its worker died, hung or was cut off finds that run in this machine's journal or the host's, and takes
it from there (applied, rolled back, still in flight elsewhere: wait; cut off: take the lock over and undo it), never
starting a second run beside it (takeover.py)."""

from __future__ import annotations

import contextvars
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from remediate import api
from remediate.engine import events, lock, planfile
from remediate.engine import journal as journal_mod
from remediate.engine.events import Event
from remediate.serve import approvals
from remediate.serve.notify import Notifier
from remediate.serve.rules import Rule, Rules
from remediate.serve.runs import ApplyStatus, LibraryRuns, RollbackStatus, attribution, audit_line
from remediate.serve.temporal import shared
from remediate.serve.temporal.proof import escalate
from remediate.serve.temporal.shared import PlanInput, Planned, Ran, RunInput, Told
from remediate.serve.temporal.takeover import continue_or_undo, heartbeat, outlast, wait_while_held

#: The events an incident's history keeps, as execution.emit_for words them.
STEPS = (events.StepApplied, events.StepVerified, events.StepFailed, events.StepRolledBack)


class Steps:
    """The library's events for one activity: each step into the incident's log, and a heartbeat with it (sent on
    the activity's own context, whichever thread the step ran on)."""

    def __init__(self) -> None:
        self.log: list[list[str]] = []
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = audit_line(event)
        if line is None:
            return
        self.log.append(list(line))
        if isinstance(event, STEPS):
            with self._lock:
                self._context.run(heartbeat, event.name, event.step)


def lease(run_id: str) -> tuple[str, float]:
    """The lease an activity's run holds the host's lock with: its workflow and run, for twice the activity's
    heartbeat timeout (at least 10 s), so that a lease outlives a heartbeat timeout: Temporal retries a dead worker's
    activity, and the retry waits (retryable) until the lease lapses, then takes the run over."""
    info = activity.info()
    beat = info.heartbeat_timeout.total_seconds() if info.heartbeat_timeout else 0.0
    return f"{info.workflow_id}/{run_id}", max(2 * beat, 10.0)


@contextmanager
def alive() -> Iterator[None]:
    """Heartbeats while this worker works on the host, a third of the heartbeat timeout apart, beside the one each
    step sends: a worker that dies (or loses Temporal) stops them and another takes its run over, but one that is
    alive and slow (connecting, planning, a long step) keeps its host, never a second worker beside it."""
    timeout = activity.info().heartbeat_timeout
    every = max(0.5, (timeout.total_seconds() if timeout else 60.0) / 3)
    context, done = contextvars.copy_context(), threading.Event()

    def tick() -> None:
        while not done.wait(every):
            context.run(heartbeat, "alive")
    ticker = threading.Thread(target=tick, name="heartbeat", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()


class Activities:
    """What the workers run; `running` is asked last before an apply's or rollback's first change (the pause)."""

    def __init__(self, runs: LibraryRuns, rules: Rules, running: Callable[[], bool],
                 live: Callable[[str, str], bool] = lambda by, via: True) -> None:
        self.runs = runs
        self.rules = rules
        self.running = running
        self.live = live  # whether an approver still stands (a revoked token's no longer does): engine.stands

    def all(self) -> list[Callable[..., Any]]:
        return [self.plan, self.apply, self.rollback, self.notify]

    def _rule(self, name: str) -> Rule:
        rule = self.rules.named(name)
        if rule is None:
            raise ApplicationError(f"rule {name!r} is no longer in {self.rules.path}", non_retryable=True)
        return rule

    # No activity takes an exception thrown into its thread (temporalio's way to cancel a thread, on a cancel or a
    # worker's shutdown): it lands at whatever bytecode runs next, between a lock's acquire and its try, in an import,
    # in the pool's own loop, and can leave the process wedged. A run (or its rollback) cut at a random point is the
    # one thing worse than a run that goes on. A cancelled activity runs to its end and its result is dropped: a plan
    # changes nothing, and an apply's retry waits for it (its lease on the host's lock is live).
    @activity.defn(name=shared.PLAN, no_thread_cancel_exception=True)
    def plan(self, given: PlanInput) -> Planned:
        with alive():  # a planner that dies stops heartbeating, and another worker plans (nothing changes in a plan)
            planned = self.runs.plan(self._rule(given.rule), given.host, Steps())
        return Planned(planned.status.value, planned.diff, planned.plan, planned.message, planned.fixed_by,
                       planfile.key_id())

    @activity.defn(name=shared.APPLY, no_thread_cancel_exception=True)
    def apply(self, given: RunInput) -> Ran:
        """Exactly the approved plan, as run `given.run_id`; on a retry, that run wherever it got to."""
        rule = self._rule(given.rule)
        steps = Steps()
        with lock.leased(*lease(given.run_id)):
            found = continue_or_undo(self.runs, given.host, given.run_id, steps)
            if found is not None:
                return found
            if given.key_id and not hmac.compare_digest(given.key_id, planfile.key_id()):
                return Ran("failed", None, other_key(given.key_id), steps.log)
            unapproved = self._unapproved(rule, given, steps)
            if unapproved is not None:
                return unapproved
            with journal_mod.chosen_run_id(given.run_id):
                applied = self.runs.apply(rule, dict(given.plan or {}), steps, self.running,
                                          attribution=attribution(given.number, approvals=given.approvals,
                                                                  requested_by=given.requested_by))
            if applied.status == ApplyStatus.ERROR:  # refused by an earlier attempt of this run, still in flight?
                wait_while_held(self.runs, given.host, given.run_id, steps, others=False)
        return Ran(applied.status.value, applied.run_id, applied.message, steps.log)

    def _unapproved(self, rule: Rule, given: RunInput, steps: Steps) -> Ran | None:
        """None when the approvals still approve the plan as the apply begins; else the run is refused, changing
        nothing. The workflow accepted them when they were given, but the activity may start much later (no worker
        was up, serve restarted): each must still be younger than the rule's approval_expires and its person still
        stand, as the embedded backend asks at its apply (execution.approved)."""
        if rule.approval != "required" or not given.approvals:  # an older serve's workflow kept no list: as it was
            return None
        now = approvals.standing(given.approvals, given.plan, given.host, time.time(), rule.approval_expires,
                                 self.live, rule.approvals)
        if now.enough:
            return None
        steps.log.extend(["approval dropped", line] for line in now.dropped)
        return Ran("unapproved", None, now.refusal(), steps.log, approvals=now.kept)

    @activity.defn(name=shared.ROLLBACK, no_thread_cancel_exception=True)
    def rollback(self, given: RunInput) -> Ran:
        """Undo run `given.run_id`, found here or on the host; a retry waits while an earlier attempt's lease lives."""
        steps = Steps()
        with lock.leased(*lease(given.run_id)):
            local = next(iter(journal_mod.records(given.host, run_id=given.run_id)), None)
            seen = None
            if local is None or journal_mod.live_outcome(local) != "rolled-back":  # the host's word on it
                opts = api.Options(inventory=self.runs.inventory, hosts=(given.host,))
                seen = api.host_run(opts, given.run_id, self.runs.factory(opts, steps))
                local = seen.journal.record if seen.journal is not None else local
            if local is not None and journal_mod.live_outcome(local) == "rolled-back":
                return Ran("done", given.run_id, "already rolled back (found in the journal after a retry)")
            outlast(self.runs, given.host, given.run_id, steps, seen)  # an earlier attempt's worker died mid-undo
            undone = self.runs.rollback(given.host, given.run_id, steps, self.running,
                                        attribution=attribution(given.number, approvals=given.approvals,
                                                                  requested_by=given.requested_by))
            if undone.status == RollbackStatus.FAILED:  # an earlier attempt still undoing it, its lease renewed?
                wait_while_held(self.runs, given.host, given.run_id, steps, others=False)
        return Ran(undone.status.value, given.run_id, undone.message, steps.log)

    @activity.defn(name=shared.NOTIFY, no_thread_cancel_exception=True)
    def notify(self, given: Told) -> list[list[str]]:
        said: list[list[str]] = []
        notifier = Notifier(self.rules.notify, lambda number, what, detail: said.append([what, detail]))
        notifier.send(given.number, given.body)
        notifier.wait()
        return said + escalate(self.rules, given.record)  # a failed end to its rule's escalate: (proof.py)


def other_key(planned_under: str) -> str:
    """Why this replica does not apply a plan another replica made under another plan key: it cannot tell whether
    the host is as the plan saw it (a plan's identity is keyed), and would call every plan changed underfoot."""
    return (f"not applied: this replica's plan key ({journal_mod.state_home()}/{planfile.KEY_NAME}, id "
            f"{planfile.key_id()}) is not the one the plan was made under (id {planned_under}); nothing was changed. "
            "Give every serve replica the same plan.key (0600, in each one's state home), then raise the alert again")
