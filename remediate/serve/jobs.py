"""serve's workers: each incident's job on a thread, one job at a time per host. A job that raises is logged with its
incident and traceback and the incident is failed with the reason; the other jobs go on."""

from __future__ import annotations

import logging
import threading
import time
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

Job = Callable[[int], object]


@dataclass(frozen=True)
class InFlight:
    """A job not finished yet: its incident, what it does, and whether a worker has begun it."""

    incident_id: int
    what: str
    started: bool


class Jobs:
    def __init__(self, workers: int, failed: Callable[[int, str], None]) -> None:
        #: Told (incident, reason) when a job raised: the incident is failed with that reason.
        self.failed = failed
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="incident")
        self._host_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._futures: list[Future[None]] = []
        self._jobs: dict[Future[None], tuple[int, str]] = {}  # each job's incident and what it does, until done

    def submit(self, host: str, incident_id: int, what: str, job: Job) -> None:
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
