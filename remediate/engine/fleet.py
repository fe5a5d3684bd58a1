"""A rollout over many hosts: hosts in parallel (--forks), canary batches (--serial), one failure budget for the
whole rollout (--max-fail-percent), and, on abort, the fleet rolled back if asked (--rollback-fleet-on-abort)."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import TYPE_CHECKING, Final, TypeVar

from remediate.engine.outcome import Outcome
from remediate.errors import EXIT_OK, InputError
from remediate.records import record

if TYPE_CHECKING:
    from concurrent.futures import Future

DEFAULT_FORKS: Final = 20
SERIAL_ITEM: Final = re.compile(r"^\s*(\d+)(%?)\s*$")
T = TypeVar("T")


@record(frozen=True)
class Rollout:
    """How to go through the hosts that need a change."""

    forks: int = DEFAULT_FORKS
    #: Batch sizes, each a number of hosts or a percentage of them; the last one repeats. Empty: one batch.
    serial: tuple[tuple[int, bool], ...] = ()
    #: The rollout stops once failures reach this share of its hosts (in percent); 0 stops at the first failure.
    max_fail_percent: float = 0.0
    rollback_fleet_on_abort: bool = False

    def batches(self, total: int) -> list[int]:
        """The size of each batch for total hosts (percentages round up, never below one host)."""
        if not self.serial:
            return [total] if total else []
        sizes, left, index = [], total, 0
        while left > 0:
            number, percent = self.serial[min(index, len(self.serial) - 1)]
            size = max(1, math.ceil(total * number / 100)) if percent else max(1, number)
            sizes.append(min(size, left))
            left -= sizes[-1]
            index += 1
        return sizes

    def exceeded(self, failed: int, total: int) -> bool:
        """Failures have used up the budget: they reach max_fail_percent of the rollout's hosts (any one, at 0)."""
        return failed > 0 and failed * 100 >= self.max_fail_percent * total


def parse_serial(text: str | None) -> tuple[tuple[int, bool], ...]:
    """--serial 1,5,20% as ((1, False), (5, False), (20, True)); InputError naming the bad item."""
    if not text:
        return ()
    items = []
    for part in text.split(","):
        match = SERIAL_ITEM.match(part)
        if not match or int(match.group(1)) == 0 or (match.group(2) and int(match.group(1)) > 100):
            raise InputError(f"--serial {text!r}: {part.strip()!r} is not a batch size",
                             hint="batch sizes are host counts or percentages above 0, e.g. --serial 1,5,20%")
        items.append((int(match.group(1)), bool(match.group(2))))
    return tuple(items)


def forks(value: int) -> int:
    if value < 1:
        raise InputError(f"--forks {value}: at least 1 host at a time", hint="--forks 1 runs hosts one after another")
    return value


def percent(value: float | None) -> float:
    if value is None:
        return 0.0
    if not 0 <= value <= 100:
        raise InputError(f"--max-fail-percent {value:g}: a percentage from 0 to 100")
    return value


class Stop(threading.Event):
    """Set when the operator interrupts a rollout; cause is what interrupted it (Ctrl-C, or SIGTERM as Terminated),
    raised again in each host still applying, at its next step, so it rolls back saying why."""

    def __init__(self) -> None:
        super().__init__()
        self.cause: BaseException = KeyboardInterrupt()

    def interrupt(self, cause: BaseException) -> None:
        self.cause = cause
        self.set()


@record
class Progress:
    """Where a rollout stands: outcomes by host in the order they ended, and whether it was aborted."""

    outcomes: dict[str, Outcome] = field(default_factory=dict)
    failed: int = 0
    aborted: str | None = None  # why no new host starts


def each(items: Sequence[T], work: Callable[[T], Outcome], *, forks: int) -> list[Outcome]:
    """work on every item, at most forks at a time, in the items' order; the calling thread when forks is 1."""
    if forks <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor  # and logging: a one-host run needs neither
    with ThreadPoolExecutor(max_workers=min(forks, len(items)), thread_name_prefix="host") as pool:
        return list(pool.map(work, items))


def roll_out(names: Sequence[str], apply: Callable[[str], Outcome], rollout: Rollout,
             stop: threading.Event) -> Progress:  # stop: a Stop, or any Event in tests
    """Apply to every host, batch by batch, at most rollout.forks at a time. A batch starts when every host of the
    one before has ended; once failures exceed the budget (or stop is set), no new host starts, and the hosts
    already running finish (each rolls itself back on its own failure)."""
    progress = Progress()
    total = len(names)
    queue = list(names)
    for size in rollout.batches(total):
        batch, queue = queue[:size], queue[size:]
        _batch(batch, apply, rollout, stop, progress, total)
        if progress.aborted:
            break
    return progress


def _batch(batch: list[str], apply: Callable[[str], Outcome], rollout: Rollout, stop: threading.Event,
           progress: Progress, total: int) -> None:
    def done(name: str, outcome: Outcome) -> None:
        progress.outcomes[name] = outcome
        if outcome.exit_code != EXIT_OK:
            progress.failed += 1
            if rollout.exceeded(progress.failed, total) and not progress.aborted:
                progress.aborted = (f"{progress.failed} of {total} host(s) failed, reaching --max-fail-percent "
                                    f"{rollout.max_fail_percent:g}" if rollout.max_fail_percent else f"{name} failed")

    if rollout.forks <= 1 or len(batch) == 1:  # in this thread: Ctrl-C and SIGTERM reach the step itself
        for name in batch:
            if progress.aborted or stop.is_set():
                progress.aborted = progress.aborted or "interrupted"
                return
            done(name, apply(name))
        return
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
    pending = list(batch)
    running: dict[Future[Outcome], str] = {}
    with ThreadPoolExecutor(max_workers=min(rollout.forks, len(batch)), thread_name_prefix="host") as pool:
        while pending or running:
            while pending and len(running) < rollout.forks and not progress.aborted and not stop.is_set():
                name = pending.pop(0)
                running[pool.submit(apply, name)] = name
            if not running:
                break
            try:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt as cause:  # no new host; those running roll back at their next step
                if isinstance(stop, Stop):
                    stop.interrupt(cause)
                else:
                    stop.set()
                continue
            for future in finished:
                done(running.pop(future), future.result())
    if stop.is_set() and not progress.aborted:
        progress.aborted = "interrupted"
