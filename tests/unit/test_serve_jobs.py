"""serve's workers: during a storm (5 alerts within `quiet` s), a plan an alert asked for yields to the alerts
still coming in (it begins once none has come in for `quiet` s, or after `hold` s at most); a lone alert's plan, and
any other job, begins at once; a job that raises fails its incident. Time
here is a fake clock that the jobs' own waits move on, so nothing depends on how fast the machine is."""

from __future__ import annotations

import threading

from remediate.serve.jobs import Jobs


class Clock:
    """A clock only the jobs' waits move; `during[n]` runs as the nth wait ends (the clock moved on)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.during: dict[int, object] = {}
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            self.now += seconds
            at = len(self.waits)
        act = self.during.get(at)
        if callable(act):
            act()


def jobs_with(clock: Clock, failed: list[tuple[int, str]] | None = None) -> Jobs:
    return Jobs(2, lambda number, reason: (failed if failed is not None else []).append((number, reason)),
                quiet=0.5, hold=5.0, clock=clock, sleep=clock.sleep)


def test_a_yielding_job_begins_once_the_alerts_have_stopped_coming_in() -> None:
    clock = Clock()
    jobs = jobs_with(clock)
    began: list[float] = []

    clock.during[1] = jobs.arriving  # as the first wait ends, 0.5 s on, another payload comes in
    jobs.arriving(3)
    jobs.arriving(2)  # a storm: five alerts at once
    jobs.submit("h1", 1, "planning", lambda number: began.append(clock()), yielding=True)
    jobs.idle(30)
    jobs.stop()
    assert clock.waits == [0.5, 0.5] and began == [1.0]  # 0.5 s after the last payload, not after the first


def test_a_yielding_job_waits_no_longer_than_hold_while_alerts_keep_coming() -> None:
    clock = Clock()
    jobs = jobs_with(clock)
    began: list[float] = []
    def five() -> None:
        jobs.arriving(5)

    for n in range(1, 100):
        clock.during[n] = five  # a payload of five as each wait ends: the storm never stops
    five()
    jobs.submit("h1", 1, "planning", lambda number: began.append(clock()), yielding=True)
    jobs.idle(30)
    jobs.stop()
    assert began == [5.0] and clock.waits == [0.5] * 10


def test_other_jobs_begin_at_once_and_a_failure_fails_the_incident() -> None:
    clock = Clock()
    failed: list[tuple[int, str]] = []
    jobs = jobs_with(clock, failed)
    ran: list[int] = []

    def broken(number: int) -> None:
        raise ValueError("the plan broke")

    jobs.arriving()
    jobs.submit("h1", 1, "applying", ran.append)  # an approved apply: not held by the alerts
    jobs.submit("h1", 2, "planning", broken)
    jobs.idle(30)
    jobs.stop()
    assert ran == [1] and clock.waits == []
    assert failed == [(2, "internal error: ValueError: the plan broke")]


def test_a_yielding_job_begins_at_once_after_a_lone_payload_or_long_after_a_storm() -> None:
    clock = Clock()
    jobs = jobs_with(clock)
    ran: list[int] = []
    jobs.arriving(2)
    jobs.arriving(2)  # two payloads of two alerts at once (an HA pair of Alertmanagers): no storm
    jobs.submit("h1", 7, "planning", ran.append, yielding=True)
    jobs.idle(30)
    clock.now = 0.6
    jobs.arriving(4)  # four more, 0.6 s after those: still no storm (five within 0.5 s make one)
    jobs.submit("h1", 8, "planning", ran.append, yielding=True)
    jobs.idle(30)
    jobs.stop()
    assert ran == [7, 8] and clock.waits == []
