"""serve's workers: each incident's job on a thread, one job at a time per host. A job that raises is logged with its
incident and traceback and the incident is failed with the reason; the other jobs go on."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from remediate import redact

LOG = logging.getLogger(__name__)

#: What each kind of job does, as serve names it when it stops with jobs in flight.
PLANNING: Final = "planning"
APPLYING: Final = "applying"
PAST_DEADLINE: Final = "past its deadline (rollback, or keep)"

#: A storm: STORM alerts within QUIET s. While one lasts, a job an alert asked for waits: it begins once no alert
#: has come in for QUIET s, or after HOLD s at most. A lone alert's plan begins at once.
STORM: Final = 5
QUIET: Final = 0.5
HOLD: Final = 5.0

Job = Callable[[int], object]


@dataclass(frozen=True)
class InFlight:
    """A job not finished yet: its incident, what it does, and whether a worker has begun it."""

    incident_id: int
    what: str
    started: bool


class Jobs:
    def __init__(self, workers: int, failed: Callable[[int, str], None], *, quiet: float = QUIET, hold: float = HOLD,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        #: Told (incident, reason) when a job raised: the incident is failed with that reason.
        self.failed = failed
        self.quiet, self.hold, self._clock, self._sleep = quiet, hold, clock, sleep
        self._arrived: deque[float] = deque(maxlen=STORM)  # when the intake last said alerts were coming in
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="incident")
        self._host_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._futures: list[Future[None]] = []
        self._jobs: dict[Future[None], tuple[int, str]] = {}  # each job's incident and what it does, until done
        self._start(workers)

    def _start(self, workers: int) -> None:
        """Every worker thread started now, not on the first jobs: an alert storm's first payload would otherwise wait
        for them to start, each beginning its plan (and taking the GIL) as it does. The pool starts a thread per job
        while none is idle, so `workers` jobs that meet each other make them all (at most 10 s: they are idle after,
        however many met)."""
        met = threading.Barrier(workers)

        def meet() -> None:
            try:
                met.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass

        for _ in range(workers):
            self._pool.submit(meet)

    def arriving(self, alerts: int = 1) -> None:
        """Alerts are coming in (the intake says so for each payload): in a storm, the jobs that yield wait."""
        now = self._clock()
        with self._guard:
            self._arrived.extend([now] * min(alerts, STORM))

    def _storm_ends(self) -> float:
        """When the storm ends, if no other alert comes in (-inf: no storm)."""
        with self._guard:
            arrived = list(self._arrived)
        if len(arrived) < STORM or arrived[-1] - arrived[0] > self.quiet:
            return float("-inf")
        return arrived[-1] + self.quiet

    def submit(self, host: str, incident_id: int, what: str, job: Job, *, yielding: bool = False) -> None:
        """The job, on a worker, after the host's previous one. `yielding` (a plan or run an alert asked for): during
        a storm (STORM alerts within `quiet` s) it begins only once no alert has come in for `quiet` s, or after
        `hold` s: a plan's CPU (and the GIL) would otherwise slow the webhook's answers to the alerts still coming
        in."""
        if yielding:
            queued = self._clock()
            job = functools.partial(self._after_quiet, queued, job)
        future = self._pool.submit(self._serially, host, incident_id, what, job)
        with self._guard:
            self._futures.append(future)
            self._jobs[future] = (incident_id, what)
        future.add_done_callback(self._forget)
        LOG.debug("incident %d: %s on %s queued", incident_id, what, host, extra={"incident": incident_id})

    def in_flight(self) -> list[InFlight]:
        """The jobs not finished yet, by incident."""
        with self._guard:
            jobs = [(f, *job) for f, job in self._jobs.items() if not f.done()]
        return [InFlight(incident_id, what, future.running()) for future, incident_id, what in
                sorted(jobs, key=lambda j: j[1])]

    def idle(self, timeout: float = 300.0) -> None:
        """Wait until every queued job has finished (tests and shutdown)."""
        end = time.monotonic() + timeout
        while True:
            with self._guard:
                pending = [f for f in self._futures if not f.done()]
                self._futures = pending
            if not pending:
                return
            pending[0].result(timeout=max(0.0, end - time.monotonic()))

    def stop(self) -> None:
        """Every job already handed to the workers runs to its end (an apply is never abandoned half-way)."""
        self._pool.shutdown(wait=True, cancel_futures=False)

    def _forget(self, future: Future[None]) -> None:
        with self._guard:
            self._jobs.pop(future, None)

    def _after_quiet(self, queued: float, job: Job, incident_id: int) -> object:
        while True:
            now = self._clock()
            wait = min(self._storm_ends(), queued + self.hold) - now
            if wait <= 0:
                return job(incident_id)
            self._sleep(wait)

    def _serially(self, host: str, incident_id: int, what: str, job: Job) -> None:
        with self._guard:
            lock = self._host_locks.setdefault(host, threading.Lock())
        with lock:
            try:
                job(incident_id)
            except Exception as e:
                LOG.exception("incident %d: %s on %s failed", incident_id, what, host, extra={"incident": incident_id})
                self._record(incident_id, redact.text(f"internal error: {type(e).__name__}: {e}"))

    def _record(self, incident_id: int, reason: str) -> None:
        """The failure on the incident; if even that fails (the store), the log says so and the worker goes on."""
        try:
            self.failed(incident_id, reason)
        except Exception:
            LOG.exception("incident %d: the failure could not be recorded on the incident", incident_id,
                          extra={"incident": incident_id})

