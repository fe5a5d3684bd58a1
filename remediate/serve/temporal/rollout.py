"""A fleet rollout as Temporal workflows: `remediate apply --host GROUP --backend temporal` starts a RolloutWorkflow
with the reviewed plan document, and it goes on whatever becomes of the process that started it. Batches run in
order (--serial), at most --forks hosts at a time, one child workflow per host (RolloutHostWorkflow, its id the
rollout's and the host's); the failure budget (--max-fail-percent) decides as each host ends whether another starts;
once stopped, the hosts never started are skipped and, with --rollback-fleet-on-abort, those it fixed are rolled back,
newest first (the incidents' rollback activity). The decisions are rollout_tally.Tally's; this is the plumbing."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from remediate.engine.outcome import Status
    from remediate.errors import EXIT_ERROR
    from remediate.serve.temporal import rollout_shared as names
    from remediate.serve.temporal import shared
    from remediate.serve.temporal.rollout_shared import HostInput, HostRan, HostRun, RolloutInput, Settings
    from remediate.serve.temporal.rollout_tally import Tally
    from remediate.serve.temporal.shared import Ran, RunInput


def _retry(settings: Settings, attempts: int) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=attempts,
                       maximum_interval=timedelta(seconds=settings.retry_interval))


@workflow.defn(name=names.ROLLOUT_HOST)
class RolloutHostWorkflow:
    """One host of a rollout: its apply, as a run whose id this workflow chooses (the same on every replay), so that
    an attempt retried after its worker died finds that run and never starts a second one beside it."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    @workflow.query
    def run_ids(self) -> list[str]:
        return self.runs

    def run_id(self) -> str:
        digest = hashlib.sha256(f"{workflow.info().workflow_id}/{len(self.runs)}".encode()).hexdigest()[:6]
        return workflow.now().strftime("%Y%m%dT%H%M%SZ") + "-" + digest

    @workflow.run
    async def run(self, given: HostInput) -> HostRan:
        said: list[list[str]] = []
        run_id = self.run_id()
        self.runs.append(run_id)
        while True:
            ran = await self._apply(given, run_id)
            said += ran.log
            if ran.retry == "held":  # serve is paused: nothing changed; the same run id, tried again later
                said.append(["held", ran.message])
                await workflow.sleep(timedelta(seconds=given.settings.held_retry))
                continue
            if ran.retry == "cut off" and len(self.runs) <= names.RESTARTS:  # undone: a fresh run from the plan
                run_id = self.run_id()
                self.runs.append(run_id)
                said.append(["restarted", f"{ran.message}; starting run {run_id} from the same reviewed plan"])
                continue
            if ran.retry == "cut off":
                ran = HostRan(Status.FAILED, EXIT_ERROR, ran.run_id, f"{ran.message}; cut off {len(self.runs)} "
                              "times: not tried again")
            ran.log = said
            return ran

    async def _apply(self, given: HostInput, run_id: str) -> HostRan:
        s = given.settings
        try:
            ran: HostRan = await workflow.execute_activity(
                names.APPLY_HOST, HostRun(given.host, run_id, given.plan, given.key_id), result_type=HostRan,
                start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=timedelta(seconds=s.takeover_after),
                retry_policy=_retry(s, names.APPLY_ATTEMPTS))
        except ActivityError as e:  # no attempt ended (workers dying, or a bug): the host fails, naming its run
            return HostRan(Status.ERROR, EXIT_ERROR, run_id, f"the apply of run {run_id} did not end after "
                           f"{names.APPLY_ATTEMPTS} attempts ({e.cause or e}); what it changed: `remediate runs show "
                           f"{run_id}`, undo: `remediate rollback --host {given.host} --run {run_id}`")
        return ran


@workflow.defn(name=names.ROLLOUT)
class RolloutWorkflow:
    """A rollout over the hosts of a reviewed plan (see the module's docstring)."""

    def __init__(self) -> None:
        self.tally: Tally | None = None
        self.given: RolloutInput | None = None

    @workflow.query
    def rollout(self) -> dict[str, Any]:
        return self.tally.record() if self.tally is not None else {}

    @workflow.run
    async def run(self, given: RolloutInput) -> dict[str, Any]:
        self.given = given
        self.tally = tally = Tally(given, self._now())
        self._memo()
        for batch in tally.batches():
            await self._batch(batch)
            if not tally.may_start():
                break
        if not tally.may_start():
            for host in tally.stop(self._now()):
                await self._roll_back(host)
        tally.finish(self._now())
        self._memo()
        return tally.record()

    async def _batch(self, batch: list[str]) -> None:
        """Every host of the batch, at most --forks at a time (a sliding window, in order); none once stopped."""
        assert self.tally is not None
        window = asyncio.Semaphore(self.tally.rollout.forks)

        async def one(host: str) -> None:
            async with window:
                if self.tally is not None and self.tally.may_start():
                    await self._host(host)
        await asyncio.gather(*(one(host) for host in batch))

    async def _host(self, host: str) -> None:
        assert self.tally is not None and self.given is not None
        g = self.given
        self.tally.starting(host, self._now())
        self._memo()
        ran: HostRan = await workflow.execute_child_workflow(
            RolloutHostWorkflow.run, HostInput(g.rollout_id, host, names.host_plan(g.plan, host), g.key_id, g.settings),
            id=names.host_workflow_id(g.rollout_id, host))
        self.tally.ended(host, ran, self._now())
        self._memo()

    async def _roll_back(self, host: str) -> None:
        """--rollback-fleet-on-abort: the run that fixed host, undone (the incidents' rollback activity: it adopts a
        rollback a retry finds done); held while serve is paused."""
        assert self.tally is not None and self.given is not None
        s = self.given.settings
        run_id = str(self.tally.hosts[host]["run_id"])
        self.tally.rolling_back(host, self._now())
        self._memo()
        while True:
            try:
                ran: Ran = await workflow.execute_activity(
                    shared.ROLLBACK, RunInput(0, "", host, run_id), result_type=Ran,
                    start_to_close_timeout=timedelta(hours=1), heartbeat_timeout=timedelta(seconds=s.takeover_after),
                    retry_policy=_retry(s, 3))
            except ActivityError as e:
                ran = Ran("failed", run_id, f"the rollback did not end ({e.cause or e})")
            if ran.status != "held":
                break
            await workflow.sleep(timedelta(seconds=s.held_retry))
        self.tally.rolled_back(host, ran.status == "done", ran.message, self._now())
        self._memo()

    def _now(self) -> float:
        return workflow.now().timestamp()

    def _memo(self) -> None:
        assert self.tally is not None
        workflow.upsert_memo({"rollout": self.tally.memo()})
