"""A fleet rollout on Temporal decides as a local rollout does (rollout_tally.Tally, the rollout workflow's pure part):
its batches, the failure budget as each host ends, the hosts skipped once it stops, the fleet rolled back newest first,
and the exit code its hosts make (api.exit_code, as a local apply's)."""

from __future__ import annotations

import pytest

from remediate import api
from remediate.engine.outcome import Outcome, Status
from remediate.errors import EXIT_ABORTED, EXIT_ERROR, EXIT_FLEET_ROLLED_BACK, EXIT_OK, EXIT_ROLLBACK_INCOMPLETE
from remediate.serve.temporal.rollout_shared import HostRan, HostState, RolloutInput, RolloutState, Settings, host_plan
from remediate.serve.temporal.rollout_tally import Tally

HOSTS = [f"h{n:02d}" for n in range(1, 11)]
APPLIED = HostRan(Status.CHANGED, EXIT_OK, "run-ok", "2 step(s) applied and verified")
FAILED = HostRan(Status.ROLLED_BACK, EXIT_ERROR, "run-bad", "step 'settle' failed; every applied step was rolled back")
STALE = HostRan(Status.STALE, EXIT_ERROR, None, "the host is not as the saved plan saw it; nothing was changed")


def tally(serial: str | None = None, percent: float = 0.0, fleet_back: bool = False, forks: int = 20,
          unchanged: dict[str, str] | None = None) -> Tally:
    settings = Settings(forks=forks, serial=serial, max_fail_percent=percent, rollback_fleet_on_abort=fleet_back)
    return Tally(RolloutInput("r1", {}, list(HOSTS), settings, "key", "me@here", "fleet", unchanged or {}), 0.0)


def run(t: Tally, results: dict[str, HostRan]) -> list[str]:
    """Drive t as the workflow does (hosts in batch order, none once stopped); the hosts started, in order."""
    started = []
    for batch in t.batches():
        for host in batch:
            if not t.may_start():
                break
            t.starting(host, 1.0)
            started.append(host)
            t.ended(host, results.get(host, APPLIED), 2.0)
        if not t.may_start():
            break
    if not t.may_start():
        for host in t.stop(3.0):
            t.rolled_back(host, True, "done", 4.0)
    t.finish(5.0)
    return started


def exit_code(t: Tally) -> int:
    return api.exit_code([Outcome(h, Status(r["status"]), r["exit_code"], r["message"], r["run_id"])
                          for h, r in t.record()["hosts"].items()])


@pytest.mark.parametrize(("serial", "sizes"), [(None, [10]), ("1,3", [1, 3, 3, 3]), ("1,5,20%", [1, 5, 2, 2]),
                                               ("50%", [5, 5])])
def test_batches_are_fleet_rollouts_own(serial: str | None, sizes: list[int]) -> None:
    batches = tally(serial).batches()
    assert [len(b) for b in batches] == sizes and sum(batches, []) == HOSTS


def test_every_host_applied_is_done_with_exit_0() -> None:
    t = tally("1,3")
    assert run(t, {}) == HOSTS
    assert t.state == RolloutState.DONE and t.aborted is None and exit_code(t) == EXIT_OK
    assert {r["state"] for r in t.record()["hosts"].values()} == {HostState.APPLIED}


def test_a_failing_canary_stops_the_rollout_at_budget_0_and_the_rest_is_skipped() -> None:
    t = tally("1,3")
    assert run(t, {"h01": FAILED}) == ["h01"]
    hosts = t.record()["hosts"]
    assert t.state == RolloutState.STOPPED and t.aborted == "h01 failed"
    assert hosts["h01"]["state"] == HostState.FAILED and hosts["h01"]["run_id"] == "run-bad"
    assert all(hosts[h]["state"] == HostState.SKIPPED and hosts[h]["exit_code"] == EXIT_ABORTED for h in HOSTS[1:])
    assert exit_code(t) == EXIT_ABORTED


def test_a_failure_within_the_budget_goes_on() -> None:
    t = tally("1,3", percent=20)
    assert run(t, {"h03": FAILED}) == HOSTS
    assert t.state == RolloutState.DONE and t.failed == 1 and exit_code(t) == EXIT_ERROR


def test_over_the_budget_stops_and_the_fleet_is_rolled_back_newest_first() -> None:
    t = tally("1,3", percent=20, fleet_back=True)
    order: list[str] = []
    started = []
    for batch in t.batches():
        for host in batch:
            if t.may_start():
                t.starting(host, 1.0)
                started.append(host)
                t.ended(host, FAILED if host in ("h03", "h05") else APPLIED, 2.0)
    back = t.stop(3.0)
    for host in back:
        order.append(host)
        t.rolled_back(host, host != "h02", "undo failed" if host == "h02" else "done", 4.0)
    t.finish(5.0)
    assert started == HOSTS[:5]  # one host after another here: none starts once h05 spends the budget
    assert t.aborted == "2 of 10 host(s) failed, reaching --max-fail-percent 20"
    assert order == ["h04", "h02", "h01"]  # the applied ones, newest first
    hosts = t.record()["hosts"]
    assert hosts["h01"]["state"] == HostState.ROLLED_BACK and hosts["h01"]["exit_code"] == EXIT_FLEET_ROLLED_BACK
    assert hosts["h02"]["state"] == HostState.INCOMPLETE and "undo failed" in hosts["h02"]["message"]
    assert [h for h in HOSTS if hosts[h]["state"] == HostState.SKIPPED] == HOSTS[5:]
    assert t.state == RolloutState.ROLLED_BACK and exit_code(t) == EXIT_ROLLBACK_INCOMPLETE


def test_with_every_rollback_done_the_exit_code_is_6() -> None:
    t = tally("2", fleet_back=True)
    assert run(t, {"h04": FAILED}) == HOSTS[:4]
    assert exit_code(t) == EXIT_FLEET_ROLLED_BACK


def test_a_stale_host_counts_against_the_budget_and_changes_nothing() -> None:
    t = tally("1,3")
    assert run(t, {"h01": STALE}) == ["h01"]
    assert t.record()["hosts"]["h01"]["state"] == HostState.STALE and t.aborted == "h01 failed"


def test_hosts_with_nothing_to_do_are_shown_never_rolled_out() -> None:
    t = Tally(RolloutInput("r1", {}, ["h01"], Settings(), "key", "me", "fleet", {"h02": "nothing to do"}), 0.0)
    assert t.batches() == [["h01"]]
    assert t.record()["hosts"]["h02"]["state"] == HostState.UNCHANGED
    assert t.memo()["states"]["h02"] == {"state": "nothing to do", "status": "ok", "exit_code": 0, "run_id": None}


def test_a_hosts_plan_is_its_own_slice_of_the_document() -> None:
    doc = {"hosts": ["all"], "plans": {"h01": {"identity": "a"}, "h02": {"identity": "b"}}, "extra": {"x": 1}}
    assert host_plan(doc, "h02") == {"hosts": ["h02"], "plans": {"h02": {"identity": "b"}}, "extra": {"x": 1}}
