"""The incident workflow's activities: plan, apply and rollback through the same library calls as the CLI (serve's
runs.py), and the notify hooks. Apply heartbeats at each step, and runs under the run id the workflow chose: an attempt
retried after its worker died or hung finds that run in the host's journal and takes it from there (applied, rolled
back, still in flight elsewhere, or cut off: undone), never starting a second run beside it."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from remediate.engine import events
from remediate.engine import journal as journal_mod
from remediate.engine.events import Event
from remediate.serve.notify import Notifier
from remediate.serve.rules import Rule, Rules
from remediate.serve.runs import LibraryRuns, audit_line
from remediate.serve.temporal import shared
from remediate.serve.temporal.shared import PlanInput, Planned, Ran, RunInput, Told

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
                self._context.run(activity.heartbeat, event.name, event.step)


class Activities:
    """What the workers run; `running` is asked last before an apply's or rollback's first change (the pause)."""

    def __init__(self, runs: LibraryRuns, rules: Rules, running: Callable[[], bool]) -> None:
        self.runs = runs
        self.rules = rules
        self.running = running

    def all(self) -> list[Callable[..., Any]]:
        return [self.plan, self.apply, self.rollback, self.notify]

    def _rule(self, name: str) -> Rule:
        rule = self.rules.named(name)
        if rule is None:
            raise ApplicationError(f"rule {name!r} is no longer in {self.rules.path}", non_retryable=True)
        return rule

    @activity.defn(name=shared.PLAN)
    def plan(self, given: PlanInput) -> Planned:
        planned = self.runs.plan(self._rule(given.rule), given.host, Steps())
        return Planned(planned.status.value, planned.diff, planned.plan, planned.message, planned.fixed_by)

    # never an exception thrown into the thread mid-step: a run (or its rollback) cut at a random point is the one
    # thing worse than a run that goes on; a retried attempt waits for it (the journal says it is in flight)
    @activity.defn(name=shared.APPLY, no_thread_cancel_exception=True)
    def apply(self, given: RunInput) -> Ran:
        """Exactly the approved plan, as run `given.run_id`; on a retry, that run wherever it got to."""
        rule = self._rule(given.rule)
        found = next((r for r in journal_mod.history(given.host) if r.get("run_id") == given.run_id), None)
        if found is not None:
            return self._adopt(given, found)
        steps = Steps()
        with journal_mod.chosen_run_id(given.run_id):
            applied = self.runs.apply(rule, dict(given.plan or {}), steps, self.running)
        return Ran(applied.status.value, applied.run_id, applied.message, steps.log)

    def _adopt(self, given: RunInput, record: dict[str, Any]) -> Ran:
        """A retried apply: the run its first attempt started, as the host's journal has it."""
        outcome = journal_mod.live_outcome(record)
        run_id = given.run_id
        said = [["retried", f"the apply was retried (attempt {activity.info().attempt}); the journal says run "
                            f"{run_id} is {outcome}: nothing is started beside it"]]
        if outcome == "applied":
            return Ran("applied", run_id, "applied and verified (found in the journal after a retry)", said)
        if outcome == "rolled-back":
            return Ran("rolled_back", run_id, f"run {run_id} was rolled back", said)
        if outcome in journal_mod.NOTHING_CHANGED:
            return Ran("failed", run_id, f"run {run_id} {outcome}: nothing was changed", said)
        if outcome == "running":  # its process lives: wait for it (the next attempt looks again)
            raise ApplicationError(f"run {run_id} is still in flight in another process; waiting for it")
        steps = Steps()
        undone = self.runs.rollback(given.host, run_id, steps, lambda: True)  # cut off mid-way: never left half-done
        status = "rolled_back" if undone.status.value == "done" else "incomplete"
        return Ran(status, run_id, f"the worker running run {run_id} stopped mid-way ({outcome}); "
                                   f"{'it was rolled back' if status == 'rolled_back' else 'its rollback failed'}: "
                                   f"{undone.message}", said + steps.log)

    @activity.defn(name=shared.ROLLBACK, no_thread_cancel_exception=True)
    def rollback(self, given: RunInput) -> Ran:
        found = next((r for r in journal_mod.history(given.host) if r.get("run_id") == given.run_id), None)
        if found is not None and journal_mod.live_outcome(found) == "rolled-back":
            return Ran("done", given.run_id, "already rolled back (found in the journal after a retry)")
        steps = Steps()
        undone = self.runs.rollback(given.host, given.run_id, steps, self.running)
        return Ran(undone.status.value, given.run_id, undone.message, steps.log)

    @activity.defn(name=shared.NOTIFY)
    def notify(self, given: Told) -> list[list[str]]:
        said: list[list[str]] = []
        notifier = Notifier(self.rules.notify, lambda number, what, detail: said.append([what, detail]))
        notifier.send(given.number, given.body)
        notifier.wait()
        return said

