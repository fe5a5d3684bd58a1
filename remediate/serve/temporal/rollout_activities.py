"""The fleet rollout's one activity: apply exactly one host's reviewed plan, on whichever serve worker takes it, with
that worker's inventory (addresses, credentials) and the plan document's playbook text and variables, never the
worker's own playbook files (as serve's LibraryRuns applies an approved plan). A host no longer as the plan saw it is
refused, changing nothing. It heartbeats at each step and runs under the run id its child workflow chose: a retry
after its worker died or hung takes that run over (adopts it finished, waits for it in flight, undoes it cut off),
never starting a second run beside it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from remediate import api
from remediate.engine import journal as journal_mod
from remediate.engine import planfile
from remediate.engine.outcome import Status
from remediate.errors import EXIT_ERROR, EXIT_OK, EXIT_ROLLBACK_INCOMPLETE, RemediateError
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal.activities import Steps
from remediate.serve.temporal.rollout_shared import APPLY_HOST, HostRan, HostRun


def key_id() -> str:
    """Which plan key this machine's identities are made under, naming nothing of the key: the operator's and a
    worker's must be the same key for a worker to find a host exactly as the operator's plan saw it."""
    return hmac.new(planfile.key(), b"remediate plan key id", hashlib.sha256).hexdigest()[:16]


class RolloutActivities:
    """What a serve worker runs for rollouts; `running` is asked just before a host's first change (serve's pause)."""

    def __init__(self, runs: LibraryRuns, running: Callable[[], bool]) -> None:
        self.runs = runs
        self.running = running

    def all(self) -> list[Callable[..., Any]]:
        return [self.apply]

    # never an exception thrown into the thread mid-step: a retried attempt waits for a run in flight instead
    @activity.defn(name=APPLY_HOST, no_thread_cancel_exception=True)
    def apply(self, given: HostRun) -> HostRan:
        """Exactly the reviewed plan on given.host, as run given.run_id; on a retry, that run wherever it got to."""
        found = next((r for r in journal_mod.history(given.host) if r.get("run_id") == given.run_id), None)
        if found is not None:
            return self._take_over(given, found)
        mine = key_id()
        if not hmac.compare_digest(mine, given.key_id):
            return HostRan(Status.ERROR, EXIT_ERROR, None, f"this worker's plan key ({journal_mod.state_home()}/"
                           f"{planfile.KEY_NAME}, id {mine}) is not the one the rollout was planned under (id "
                           f"{given.key_id}): a plan's identity is keyed, so this worker cannot tell whether the host "
                           "is as the plan saw it; nothing was changed. Give the workers the planning operator's "
                           "plan key, or start the rollout from a machine that shares theirs")
        steps = Steps()
        asked = _Asked(self.running)
        try:
            with journal_mod.chosen_run_id(given.run_id):
                planset = api.PlanSet.saved(given.plan, self.runs.inventory)
                outcome = api.apply(planset, steps, self.runs.factory(planset.options, steps), asked)[0]
        except RemediateError as e:
            if asked.refused:
                return HostRan("", EXIT_OK, None, "serve is paused: held back just before the first change; nothing "
                               "was changed", steps.log, retry="held")
            return HostRan(Status.ERROR, e.exit_code, None, str(e), steps.log)
        return HostRan(outcome.status.value, outcome.exit_code, outcome.run_id, outcome.message, steps.log)

    def _take_over(self, given: HostRun, record: dict[str, Any]) -> HostRan:
        """A retried apply: the run its first attempt started, as the journal has it (activities.py's adoption)."""
        outcome = journal_mod.live_outcome(record)
        run_id = given.run_id
        said = [["retried", f"the apply was retried (attempt {activity.info().attempt}); the journal says run "
                            f"{run_id} is {outcome}: nothing is started beside it"]]
        if outcome == "applied":
            return HostRan(Status.CHANGED, EXIT_OK, run_id, "applied and verified (found in the journal after a "
                           "retry)", said)
        if outcome == "rolled-back":
            return HostRan(Status.ROLLED_BACK, EXIT_ERROR, run_id, f"run {run_id} failed and was rolled back", said)
        if outcome == "rollback-incomplete":
            return HostRan(Status.ROLLBACK_INCOMPLETE, EXIT_ROLLBACK_INCOMPLETE, run_id, f"run {run_id}: ROLLBACK "
                           "INCOMPLETE, the host needs attention", said)
        if outcome in journal_mod.NOTHING_CHANGED:
            return HostRan(Status.FAILED, EXIT_ERROR, run_id, f"run {run_id} {outcome}: nothing was changed", said)
        if outcome == "running":  # its process lives: wait for it (the next attempt looks again)
            raise ApplicationError(f"run {run_id} is still in flight in another process; waiting for it")
        steps = Steps()
        undone = self.runs.rollback(given.host, run_id, steps, lambda: True)  # cut off mid-way: never left half-done
        if undone.status.value == "done":
            return HostRan("", EXIT_OK, run_id, f"the worker running run {run_id} stopped mid-way ({outcome}); it "
                           "was rolled back", said + steps.log, retry="cut off")
        return HostRan(Status.ROLLBACK_INCOMPLETE, EXIT_ROLLBACK_INCOMPLETE, run_id, f"the worker running run "
                       f"{run_id} stopped mid-way ({outcome}) and its rollback failed: {undone.message}",
                       said + steps.log)


class _Asked:
    """`running` as the library's confirm callback, remembering a no (the library then raises "cancelled")."""

    def __init__(self, running: Callable[[], bool]) -> None:
        self.running = running
        self.refused = False

    def __call__(self, _: Any) -> bool:
        self.refused = not self.running()
        return not self.refused
