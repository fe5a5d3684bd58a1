"""The fleet rollout's one activity: apply exactly one host's reviewed plan, on whichever serve worker takes it, with
that worker's inventory (addresses, credentials) and the plan document's playbook text and variables, never the
worker's own playbook files (as serve's LibraryRuns applies an approved plan). A host no longer as the plan saw it is
refused, changing nothing. It heartbeats at each step and while its worker lives (alive()), and runs under the run id
its child workflow chose, holding the host's lock with a lease of that workflow and run (activities.lease): a retry
after its worker died takes that run over (takeover.continue_or_undo: adopts it ended, waits for it in flight here or
while its lease lives, undoes it cut off), never starting a second run beside it; the child then starts a fresh run
in place of one it undid."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Final

from temporalio import activity

from remediate import api
from remediate.engine import events, lock, planfile
from remediate.engine import journal as journal_mod
from remediate.engine.events import Event
from remediate.engine.outcome import Mode, Status
from remediate.errors import EXIT_ERROR, EXIT_OK, EXIT_ROLLBACK_INCOMPLETE, RemediateError
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal.activities import Steps, alive, lease
from remediate.serve.temporal.rollout_shared import APPLY_HOST, HostRan, HostRun
from remediate.serve.temporal.shared import Ran
from remediate.serve.temporal.takeover import continue_or_undo, wait_while_held

#: takeover's endings (the incidents' words) as the library's status and exit code.
ENDINGS: Final = {"applied": (Status.CHANGED, EXIT_OK), "rolled_back": (Status.ROLLED_BACK, EXIT_ERROR),
                  "failed": (Status.FAILED, EXIT_ERROR),
                  "incomplete": (Status.ROLLBACK_INCOMPLETE, EXIT_ROLLBACK_INCOMPLETE)}


#: Which plan key this machine's identities are made under (planfile.key_id): the operator's and a worker's must be
#: the same key for a worker to find a host exactly as the operator's plan saw it.
key_id = planfile.key_id


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
        with alive():
            return self._apply(given)

    def _apply(self, given: HostRun) -> HostRan:
        steps = HostSteps()
        with lock.leased(*lease(given.run_id)):
            found = continue_or_undo(self.runs, given.host, given.run_id, steps)
            if found is not None:
                return taken_over(found, undone_now=steps.undone)
            refused = self._other_key(given)
            if refused is not None:
                return refused
            asked = _Asked(self.running)
            try:
                with journal_mod.chosen_run_id(given.run_id):
                    planset = api.PlanSet.saved(given.plan, self.runs.inventory)
                    outcome = api.apply(planset, steps, self.runs.factory(planset.options, steps), asked)[0]
            except RemediateError as e:
                if asked.refused:
                    return HostRan("", EXIT_OK, None, "serve is paused: held back just before the first change; "
                                   "nothing was changed", steps.log, retry="held")
                return HostRan(Status.ERROR, e.exit_code, None, str(e), steps.log)
            if outcome.status == Status.ERROR:  # refused by an earlier attempt of this run, still in flight?
                wait_while_held(self.runs, given.host, given.run_id, steps, others=False)
        return HostRan(outcome.status.value, outcome.exit_code, outcome.run_id, outcome.message, steps.log)

    @staticmethod
    def _other_key(given: HostRun) -> HostRan | None:
        """A refusal when this worker's plan key is not the one the rollout was planned under (None when it is)."""
        mine = key_id()
        if hmac.compare_digest(mine, given.key_id):
            return None
        return HostRan(Status.ERROR, EXIT_ERROR, None, f"this worker's plan key ({journal_mod.state_home()}/"
                       f"{planfile.KEY_NAME}, id {mine}) is not the one the rollout was planned under (id "
                       f"{given.key_id}): a plan's identity is keyed, so this worker cannot tell whether the host is "
                       "as the plan saw it; nothing was changed. Give the workers the planning operator's plan key, "
                       "or start the rollout from a machine that shares theirs")


class HostSteps(Steps):
    """activities.Steps (each step into the host's log, with a heartbeat), noting whether a rollback started here."""

    def __init__(self) -> None:
        super().__init__()
        self.undone = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, events.RunStarted) and event.mode == Mode.ROLLBACK:
            self.undone = True
        super().__call__(event)


def taken_over(found: Ran, *, undone_now: bool) -> HostRan:
    """takeover.continue_or_undo's finding as the host's ending: a run cut off and undone by this attempt is to be
    started afresh ("cut off"); a run that ended is that ending (rolled back by its own failure counts as failed)."""
    if found.status == "rolled_back" and undone_now:
        return HostRan("", EXIT_OK, found.run_id, found.message, found.log, retry="cut off")
    status, code = ENDINGS.get(found.status, (Status.FAILED, EXIT_ERROR))
    return HostRan(status, code, found.run_id, found.message, found.log)


class _Asked:
    """`running` as the library's confirm callback, remembering a no (the library then raises "cancelled")."""

    def __init__(self, running: Callable[[], bool]) -> None:
        self.running = running
        self.refused = False

    def __call__(self, _: Any) -> bool:
        self.refused = not self.running()
        return not self.refused
