"""Where a fleet rollout on Temporal stands, and what it decides: its batches, each host's state, the failure budget
(fleet.Rollout's own batches() and exceeded(), as a local rollout decides them), the hosts to roll back newest first,
and the outcome each host ends with. Pure: the rollout workflow keeps one, feeds it what its children report, and
its record is what `remediate rollouts show` prints; time is given, never read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from remediate.engine import fleet
from remediate.engine.outcome import Status
from remediate.errors import EXIT_ABORTED, EXIT_FLEET_ROLLED_BACK, EXIT_OK, EXIT_ROLLBACK_INCOMPLETE
from remediate.serve.temporal.rollout_shared import HostRan, HostState, RolloutInput, RolloutState

#: A host's ending (the library's status word) as the rollout shows it.
STATES: Final[Mapping[str, HostState]] = {
    Status.CHANGED: HostState.APPLIED, Status.STALE: HostState.STALE, Status.OK: HostState.STALE,
    Status.ROLLBACK_INCOMPLETE: HostState.INCOMPLETE}
#: What the memo keeps of each host (its message and log are the workflow's: a query, or its result once ended).
MEMO_FIELDS: Final = ("state", "status", "exit_code", "run_id")


class Tally:
    """A rollout's hosts and decisions (see the module's docstring)."""

    def __init__(self, given: RolloutInput, now: float) -> None:
        s = given.settings
        self.rollout = fleet.Rollout(forks=max(1, s.forks), serial=fleet.parse_serial(s.serial),
                                     max_fail_percent=s.max_fail_percent,
                                     rollback_fleet_on_abort=s.rollback_fleet_on_abort)
        self.given = given
        self.state = RolloutState.RUNNING
        self.started = now
        self.ended_at: float | None = None
        self.failed = 0
        self.aborted: str | None = None
        self.order: list[str] = []  # hosts in the order they ended
        self.hosts: dict[str, dict[str, Any]] = {
            h: _host(h, HostState.UNCHANGED, Status.OK, EXIT_OK, why) for h, why in given.unchanged.items()}
        self.hosts.update({h: _host(h, HostState.PENDING, Status.PENDING, EXIT_OK, "") for h in given.hosts})

    def batches(self) -> list[list[str]]:
        """The hosts with changes, batch by batch (--serial; one batch without it)."""
        queue, found = list(self.given.hosts), []
        for size in self.rollout.batches(len(queue)):
            found.append(queue[:size])
            queue = queue[size:]
        return found

    def may_start(self) -> bool:
        """No new host starts once the rollout is stopped."""
        return self.aborted is None

    def starting(self, host: str, now: float) -> None:
        self.hosts[host].update(state=HostState.APPLYING, since=now)

    def ended(self, host: str, ran: HostRan, now: float) -> None:
        """A host's apply ended: its state, and the budget's decision (as fleet.roll_out's, host by host)."""
        failed = ran.exit_code != EXIT_OK
        state = STATES.get(ran.status, HostState.FAILED if failed else HostState.APPLIED)
        self.hosts[host].update(state=state, status=ran.status, exit_code=ran.exit_code, message=ran.message,
                                run_id=ran.run_id, since=now, log=ran.log)
        self.order.append(host)
        if not failed:
            return
        self.failed += 1
        total = len(self.given.hosts)
        if self.aborted is None and self.rollout.exceeded(self.failed, total):
            self.aborted = (f"{self.failed} of {total} host(s) failed, reaching --max-fail-percent "
                            f"{self.rollout.max_fail_percent:g}" if self.rollout.max_fail_percent else f"{host} failed")

    def stop(self, now: float) -> list[str]:
        """The rollout stopped (aborted): every host never started is skipped; the hosts to roll back, newest first
        (none without --rollback-fleet-on-abort)."""
        for host in self.given.hosts:
            if self.hosts[host]["state"] == HostState.PENDING:
                self.hosts[host].update(state=HostState.SKIPPED, status=Status.SKIPPED, exit_code=EXIT_ABORTED,
                                        message=f"not started: the rollout stopped ({self.aborted})", since=now)
        if not self.rollout.rollback_fleet_on_abort:
            return []
        self.state = RolloutState.ROLLING_BACK
        return [h for h in reversed(self.order) if self.hosts[h]["state"] == HostState.APPLIED]

    def rolling_back(self, host: str, now: float) -> None:
        self.hosts[host].update(state=HostState.ROLLING_BACK, since=now)

    def rolled_back(self, host: str, done: bool, message: str, now: float) -> None:
        record = self.hosts[host]
        if done:
            record.update(state=HostState.ROLLED_BACK, status=Status.ROLLED_BACK, exit_code=EXIT_FLEET_ROLLED_BACK,
                          message=f"fixed, then rolled back because the rollout stopped ({self.aborted})", since=now)
        else:
            record.update(state=HostState.INCOMPLETE, status=Status.ROLLBACK_INCOMPLETE,
                          exit_code=EXIT_ROLLBACK_INCOMPLETE, since=now,
                          message=f"the rollout stopped ({self.aborted}) and rolling back run {record['run_id']} "
                                  f"failed: {message}")

    def finish(self, now: float) -> None:
        self.ended_at = now
        if self.aborted is None:
            self.state = RolloutState.DONE
        else:
            self.state = RolloutState.ROLLED_BACK if self.rollout.rollback_fleet_on_abort else RolloutState.STOPPED

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for record in self.hosts.values():
            found[record["state"]] = found.get(record["state"], 0) + 1
        return found

    def record(self) -> dict[str, Any]:
        """The whole rollout as `remediate rollouts show` reads it."""
        g = self.given
        return {"id": g.rollout_id, "playbook": g.playbook, "started_by": g.started_by, "started": self.started,
                "ended": self.ended_at, "state": self.state.value,
                "batches": self.batches(), "failed": self.failed, "aborted": self.aborted, "budget": self.budget(),
                "counts": self.counts(), "hosts": {h: dict(r) for h, r in self.hosts.items()}}

    def budget(self) -> dict[str, Any]:
        s = self.given.settings
        return {"max_fail_percent": s.max_fail_percent, "serial": s.serial, "forks": s.forks,
                "rollback_fleet_on_abort": s.rollback_fleet_on_abort}

    def memo(self) -> dict[str, Any]:
        """The few fields `remediate rollouts` lists, kept in the workflow's memo (read without a worker)."""
        counts = self.counts()
        return {"id": self.given.rollout_id, "playbook": self.given.playbook, "started_by": self.given.started_by,
                "started": self.started, "state": self.state.value, "hosts": len(self.hosts),
                "applied": counts.get(HostState.APPLIED, 0), "failed": self.failed, "aborted": self.aborted,
                "budget": self.budget(), "states": {h: {k: r[k] for k in MEMO_FIELDS} for h, r in self.hosts.items()}}


def _host(host: str, state: HostState, status: Status, code: int, message: str) -> dict[str, Any]:
    return {"host": host, "state": state.value, "status": status.value, "exit_code": code, "message": message,
            "run_id": None, "since": None, "log": []}

