"""A retried activity's run, wherever its earlier attempt got to: found in this machine's journal or the host's copy,
then reported (it ended), waited for (still in flight: a retryable error) or undone (its worker is gone); never a
second run beside it. The apply activity asks before it starts its run; so may any activity that runs one host's run
under an id chosen beforehand (journal.chosen_run_id), inside the lock.leased block it applies in."""

from __future__ import annotations

import time
from typing import Any, Final, Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from remediate import api
from remediate.engine import journal as journal_mod
from remediate.engine.events import Event
from remediate.engine.hostcopy import OnHost
from remediate.serve.runs import LibraryRuns, RollbackStatus
from remediate.serve.temporal.shared import Ran

#: A retry that only waits for a run in flight: expected, so Temporal's SDK logs it without a traceback.
WAITING = ApplicationErrorCategory.BENIGN

#: How a run that ended says so in its record; every other outcome (running, interrupted, taken-over,
#: rollback-incomplete, and refused: an attempt that met another attempt's lock) may still need its host's word.
ENDED: Final = frozenset({"applied", "rolled-back", "failed"})


class Log(Protocol):
    """What an activity listens with (activities.Steps): the library's events in, the incident's log lines in .log."""

    log: list[list[str]]

    def __call__(self, event: Event) -> None: ...


def continue_or_undo(runs: LibraryRuns, host: str, run_id: str, steps: Log) -> Ran | None:
    """What became of run `run_id` on `host`, which an earlier attempt of this activity may have started.

    None: no such run, in this machine's journal or on the host: start it (under journal.chosen_run_id(run_id)).
    A Ran: it ended (applied, rolled back, refused or failed: its outcome, as the workflow takes an apply's), or it
    was cut off and is now undone here (rolled_back, or incomplete with the reason). Raises a retryable
    ApplicationError while it is still in flight: its process lives on this machine, or its lease on the host's lock
    is live (a worker elsewhere, maybe partitioned from Temporal, still renews it). A lapsed lease is taken over by
    the undo (the lock's take_over), so call this inside the lock.leased block the activity runs in. Steps' events
    (the undo's) go to `steps`, and the Ran's log starts with a "retried" line saying what was found."""
    record = next(iter(journal_mod.records(host, run_id=run_id)), None)
    seen: OnHost | None = None
    if record is None or (record.get("outcome") not in ENDED and journal_mod.live_outcome(record) != "running"):
        seen = _look(runs, host, run_id, steps)
        if seen.journal is not None:  # the host's copy: what an attempt elsewhere (or a takeover) last wrote
            record = seen.journal.record
    if record is None:
        return None
    outcome = journal_mod.live_outcome(record)
    attempt = f" (attempt {activity.info().attempt})" if activity.in_activity() else ""
    said = [["retried", f"the activity was retried{attempt}; the journal says run {run_id} is {outcome}: nothing is "
                        "started beside it"]]
    if outcome == "applied":
        return Ran("applied", run_id, "applied and verified (found in the journal after a retry)", said)
    if outcome == "rolled-back":
        return Ran("rolled_back", run_id, f"run {run_id} was rolled back", said)
    if outcome in journal_mod.NOTHING_CHANGED:
        return Ran("failed", run_id, f"run {run_id} {outcome}: nothing was changed", said)
    if outcome == "running":  # its process lives on this machine: wait for it (the next attempt looks again)
        raise ApplicationError(f"run {run_id} is still in flight in another process here; waiting for it",
                               category=WAITING)
    _wait_while_held(seen, run_id)
    undone = runs.rollback(host, run_id, steps, lambda: True)  # cut off mid-way: never left half-done
    if undone.status != RollbackStatus.DONE:  # refused because its holder renewed the lease meanwhile?
        wait_while_held(runs, host, run_id, steps)
    status = "rolled_back" if undone.status == RollbackStatus.DONE else "incomplete"
    return Ran(status, run_id, f"run {run_id} was cut off mid-way ({outcome}); "
                               f"{'it was rolled back' if status == 'rolled_back' else 'its rollback failed'}: "
                               f"{undone.message}", said + steps.log)


def wait_while_held(runs: LibraryRuns, host: str, run_id: str, steps: Log, *, others: bool = True) -> None:
    """After an apply or a rollback of run_id refused or failed: raise a retryable ApplicationError if the host's lock
    is held by a holder that may be alive, which a retry waits for: another attempt of the run, or (others) another
    run. Return when the lock is free or its holder gone: the failure is the run's own."""
    _wait_while_held(_look(runs, host, run_id, steps), run_id, others=others)


def outlast(runs: LibraryRuns, host: str, run_id: str, steps: Log, seen: OnHost | None = None) -> None:
    """Wait here, heartbeating, while the host's lock is held by an earlier attempt of run_id whose lease is live (its
    worker died mid-way: the lease lapses within its seconds), at most those seconds and 10 s more; then return, for
    the lock's take-over to decide. Raises a retryable ApplicationError if it is still being renewed then: that attempt
    lives. For an activity whose retries are too few or too quick to outlast a lease (the incident's rollback).
    seen: the host's word already asked for, if any (one connection fewer)."""
    deadline: float | None = None
    while True:
        held = (seen if seen is not None else _look(runs, host, run_id, steps)).lock
        seen = None
        if held is None or held.lease is None or held.alive is False or held.run_id != run_id:
            return
        seconds = float(held.lease.get("seconds") or 0)
        deadline = deadline if deadline is not None else time.monotonic() + seconds + 10
        if time.monotonic() > deadline:
            _wait_while_held(OnHost(None, held), run_id)
        if activity.in_activity():
            heartbeat(f"waiting for the lease of an earlier attempt of run {run_id} to lapse")
        time.sleep(min(5.0, max(1.0, seconds / 10)))


def heartbeat(*details: Any) -> None:
    """A heartbeat from an activity's thread, or none when it cannot be sent. temporalio hands it to the worker's
    event loop and raises TimeoutError when the loop has not taken it within 10 s (a loop that busy, or stopped); a
    heartbeat is never a reason to cut a run short. Temporal then times the heartbeat out and retries the activity
    elsewhere, where the retry waits for this run's lease (renewed at each step) or takes the run over. (Anything
    else, "not in an activity" among it, is raised: it is a mistake here.)"""
    try:
        activity.heartbeat(*details)
    except TimeoutError:
        pass


def _look(runs: LibraryRuns, host: str, run_id: str, steps: Log) -> OnHost:
    """The host's word on the run (api.host_run): its journal copy, kept here, and its lock."""
    opts = api.Options(inventory=runs.inventory, hosts=(host,))
    return api.host_run(opts, run_id, runs.factory(opts, steps))


def _wait_while_held(seen: OnHost | None, run_id: str, *, others: bool = True) -> None:
    """Raise a retryable ApplicationError while the host's lock is held by a holder that may be alive: the run itself
    (its lease live, or a holder that cannot be judged from here), or another run, which the undo would have to wait
    for anyway."""
    held = seen.lock if seen is not None else None
    if held is None or held.alive is False or (held.run_id != run_id and not others):
        return
    if held.run_id == run_id:
        raise ApplicationError(f"run {run_id} is still in flight on {held.doc.get('machine', '?')} (its lease on the "
                               f"host's lock is live: renewed {held.age if held.age is not None else '?'} s ago, for "
                               f"{(held.lease or {}).get('seconds', '?')} s); waiting for it", category=WAITING)
    raise ApplicationError(f"run {run_id} was cut off mid-way, and the host's lock is held by run {held.run_id}; "
                           "waiting for it before undoing", category=WAITING)
