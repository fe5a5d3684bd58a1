"""The rollout's arithmetic and its scheduling: batches, the failure budget, and what never starts."""

from __future__ import annotations

import threading

import pytest

from remediate.engine import fleet
from remediate.engine.outcome import Outcome
from remediate.errors import EXIT_ERROR, EXIT_OK, InputError


@pytest.mark.parametrize(("serial", "total", "sizes"), [
    ("", 7, [7]),
    ("1,3", 10, [1, 3, 3, 3]),
    ("1,5,20%", 20, [1, 5, 4, 4, 4, 2]),
    ("50%", 3, [2, 1]),
    ("1%", 10, [1] * 10),
    ("100", 4, [4]),
])
def test_batches(serial: str, total: int, sizes: list[int]) -> None:
    assert fleet.Rollout(serial=fleet.parse_serial(serial)).batches(total) == sizes


@pytest.mark.parametrize("bad", ["0", "1,x", "101%", "1,,2", "-1"])
def test_bad_serial_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="is not a batch size"):
        fleet.parse_serial(bad)


@pytest.mark.parametrize(("percent", "failed", "total", "exceeded"), [
    (0, 0, 10, False), (0, 1, 10, True), (10, 1, 10, True), (10, 1, 11, False), (50, 4, 10, False), (100, 9, 10, False),
])
def test_the_budget_counts_the_whole_rollout(percent: float, failed: int, total: int, exceeded: bool) -> None:
    assert fleet.Rollout(max_fail_percent=percent).exceeded(failed, total) is exceeded


def test_no_new_host_starts_once_the_budget_is_spent_and_running_ones_finish() -> None:
    """Ordered by barriers, never by sleeps: the first three hosts all run at once (--forks 3); h2 fails; h1 and h3
    end only once the budget has been judged on h2's failure; then no new host starts."""
    started: list[str] = []
    lock = threading.Lock()
    all_running = threading.Barrier(3, timeout=30)
    judged = threading.Event()

    class Judged(fleet.Rollout):
        def exceeded(self, failed: int, total: int) -> bool:
            try:
                return super().exceeded(failed, total)
            finally:
                judged.set()

    def apply(name: str) -> Outcome:
        with lock:
            started.append(name)
        all_running.wait()
        if name == "h2":
            return Outcome(name, "failed", EXIT_ERROR)
        assert judged.wait(timeout=30)
        return Outcome(name, "changed", EXIT_OK)

    names = [f"h{n}" for n in range(1, 9)]
    progress = fleet.roll_out(names, apply, Judged(forks=3), threading.Event())
    assert progress.aborted == "h2 failed" and progress.failed == 1
    assert sorted(started) == ["h1", "h2", "h3"] and set(progress.outcomes) == set(started)


def test_a_failing_canary_batch_ends_the_rollout() -> None:
    progress = fleet.roll_out(["a", "b", "c"], lambda n: Outcome(n, "failed", EXIT_ERROR),
                              fleet.Rollout(forks=5, serial=fleet.parse_serial("1,2")), threading.Event())
    assert list(progress.outcomes) == ["a"] and progress.aborted == "a failed"


def test_stop_means_no_new_host() -> None:
    stop = threading.Event()

    def apply(name: str) -> Outcome:
        stop.set()
        return Outcome(name, "changed", EXIT_OK)

    progress = fleet.roll_out(["a", "b", "c"], apply, fleet.Rollout(forks=1), stop)
    assert list(progress.outcomes) == ["a"] and progress.aborted == "interrupted"


def test_plans_group_by_content_with_host_names_aside_as_whole_path_segments() -> None:
    from types import SimpleNamespace

    from remediate import api as session

    def bound(host: str, path: str) -> SimpleNamespace:
        diff = f"--- a/{host}:{path}\n+++ b/{host}:{path}\n@@ -1 +1 @@\n-old\n+new\n"
        event = {"step": "conf", "kind": "file", "target": "host", "status": "change", "reason": "differs",
                 "diffs": [{"path": path, "diff": diff}], "commands": [], "checks": [], "duration": 0.1}
        return SimpleNamespace(host=SimpleNamespace(name=host), events=[event], plans=[SimpleNamespace(changed=True)])

    hosts = [bound("h1", "/etc/app.conf"), bound("h2", "/etc/app.conf"), bound("h3", "/srv/h3/app.conf"),
             bound("h4", "/etc/other.conf"), bound("h5", "/srv/h5/app.conf"), bound("h6", "/srv/h66/app.conf")]
    ok = [Outcome(b.host.name, "pending", 2) for b in hosts]
    groups = session.groups(hosts, ok)  # type: ignore[arg-type]
    assert [g.hosts for g in groups] == [["h1", "h2"], ["h3", "h5"], ["h4"], ["h6"]]
    assert groups[0].changed == 1 and "duration" not in groups[0].as_dict()["steps"][0]


def test_forks_slide_a_new_host_starts_as_soon_as_one_ends() -> None:
    """Salt's batch window: a slow host holds its own slot only; the next host never waits for a group to end."""
    others_done = threading.Event()
    ended: list[str] = []

    def apply(name: str) -> Outcome:
        if name == "slow":
            freed = others_done.wait(timeout=30)
            ended.append(name)
            return Outcome(name, "changed" if freed else "failed", EXIT_OK if freed else EXIT_ERROR)
        ended.append(name)
        if name == "d":
            others_done.set()
        return Outcome(name, "changed", EXIT_OK)

    progress = fleet.roll_out(["slow", "b", "c", "d"], apply, fleet.Rollout(forks=2), threading.Event())
    assert ended == ["b", "c", "d", "slow"] and progress.failed == 0 and not progress.aborted
