"""The rollout workflows (serve/temporal/rollout.py) on a real Temporal (the `temporal` dev server), with stand-in
activities at the activity seam: batches in order and never two at once, at most --forks hosts at a time, the
failure budget host by host, the fleet rolled back newest first, a cut-off run started afresh under a new run id,
a held host tried again. The real activities over SSH: test_rollout_temporal.py."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from remediate.engine.outcome import Status
from remediate.errors import EXIT_ERROR, EXIT_OK
from remediate.serve.temporal import parts, rollout_client, shared
from remediate.serve.temporal.rollout_shared import (
    APPLY_HOST,
    ROLLOUT,
    HostRan,
    HostRun,
    RolloutInput,
    Settings,
    host_workflow_id,
    workflow_id,
)
from remediate.serve.temporal.shared import Ran, RunInput

HOSTS = [f"h{n:02d}" for n in range(1, 11)]


@dataclass
class Hosts:
    """The stand-in hosts: what each apply answers, and what happened, in order."""

    answers: dict[str, list[HostRan]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (what, host, run id)
    running: int = 0
    most: int = 0
    gate: asyncio.Event | None = None

    @activity.defn(name=APPLY_HOST)
    async def apply(self, given: HostRun) -> HostRan:
        self.events.append(("start", given.host, given.run_id))
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0)
        if self.gate is not None and given.host == "h01":
            await self.gate.wait()
        self.running -= 1
        queued = self.answers.get(given.host) or []
        ran = queued.pop(0) if queued else HostRan(Status.CHANGED, EXIT_OK, given.run_id, "applied")
        ran.run_id = ran.run_id or given.run_id
        self.events.append(("end", given.host, given.run_id))
        return ran

    @activity.defn(name=shared.ROLLBACK)
    async def rollback(self, given: RunInput) -> Ran:
        self.events.append(("rollback", given.host, given.run_id))
        return Ran("done", given.run_id, "every step undone")


FAILED = HostRan(Status.ROLLED_BACK, EXIT_ERROR, None, "step 'settle' failed; every applied step was rolled back")


Body = Callable[[Client, str, Hosts], Coroutine[Any, Any, None]]


def on_worker(temporal: str, body: Body) -> None:
    """body(client, task queue, stand-in hosts) with a worker of the rollout workflows on a task queue of its own."""
    async def main() -> None:
        client = await Client.connect(temporal)
        queue = f"rollout-{uuid.uuid4().hex[:8]}"
        hosts = Hosts()
        async with Worker(client, task_queue=queue, workflows=[w for w in parts.workflows() if "Rollout" in w.__name__],
                          activities=[hosts.apply, hosts.rollback]):
            await body(client, queue, hosts)
    asyncio.run(main())


async def roll(client: Client, queue: str, **settings: Any) -> dict[str, Any]:
    rollout_id = uuid.uuid4().hex[:10]
    given = RolloutInput(rollout_id, {"hosts": ["all"], "plans": {h: {"identity": h} for h in HOSTS}}, list(HOSTS),
                         Settings(**{"retry_interval": 1.0, "held_retry": 1.0, **settings}), "key", "me@here",
                         "fleet")
    handle = await client.start_workflow(ROLLOUT, given, id=workflow_id(rollout_id), task_queue=queue)
    return dict(await asyncio.wait_for(handle.result(), 120))


def started(hosts: Hosts) -> list[str]:
    return [h for what, h, _ in hosts.events if what == "start"]


def states(record: dict[str, Any], state: str) -> list[str]:
    return [h for h, r in record["hosts"].items() if r["state"] == state]


def test_batches_run_in_order_and_a_batch_starts_only_when_the_one_before_has_ended(temporal: str) -> None:
    async def body(client: Client, queue: str, hosts: Hosts) -> None:
        record = await roll(client, queue, serial="1,3", forks=2)
        assert record["state"] == "done" and states(record, "applied") == HOSTS
        assert record["batches"] == [HOSTS[:1], HOSTS[1:4], HOSTS[4:7], HOSTS[7:]]
        order = [(what, h) for what, h, _ in hosts.events]
        for before, after in zip(record["batches"], record["batches"][1:]):
            last_end = max(order.index(("end", h)) for h in before)
            assert all(order.index(("start", h)) > last_end for h in after), order
        assert hosts.most <= 2  # --forks
        assert {r["run_id"] for r in record["hosts"].values()} == {run for what, _, run in hosts.events if what == "end"}
    on_worker(temporal, body)


def test_one_failure_within_the_budget_goes_on(temporal: str) -> None:
    async def body(client: Client, queue: str, hosts: Hosts) -> None:
        hosts.answers["h03"] = [FAILED]
        record = await roll(client, queue, serial="1,3", max_fail_percent=20)
        assert record["state"] == "done" and record["failed"] == 1 and sorted(started(hosts)) == HOSTS
        assert states(record, "failed") == ["h03"] and len(states(record, "applied")) == 9
    on_worker(temporal, body)


def test_over_the_budget_it_stops_skips_the_rest_and_rolls_the_fleet_back_newest_first(temporal: str) -> None:
    async def body(client: Client, queue: str, hosts: Hosts) -> None:
        hosts.answers["h02"] = [FAILED]
        hosts.answers["h04"] = [FAILED]
        record = await roll(client, queue, serial="1,3", max_fail_percent=20, rollback_fleet_on_abort=True)
        assert record["state"] == "stopped, rolled back"
        assert "2 of 10 host(s) failed, reaching --max-fail-percent 20" == record["aborted"]
        assert sorted(started(hosts)) == HOSTS[:4] and states(record, "skipped") == HOSTS[4:]
        ended = [h for what, h, _ in hosts.events if what == "end" and h in ("h01", "h03")]
        rolled = [(h, run) for what, h, run in hosts.events if what == "rollback"]
        assert [h for h, _ in rolled] == list(reversed(ended))  # newest first
        assert all(run == record["hosts"][h]["run_id"] for h, run in rolled)
        assert states(record, "rolled back") == ["h01", "h03"] and states(record, "failed") == ["h02", "h04"]
    on_worker(temporal, body)


def test_a_failing_canary_at_budget_0_stops_everything(temporal: str) -> None:
    async def body(client: Client, queue: str, hosts: Hosts) -> None:
        hosts.answers["h01"] = [FAILED]
        record = await roll(client, queue, serial="1,5")
        assert started(hosts) == ["h01"] and record["aborted"] == "h01 failed" and record["state"] == "stopped"
        assert states(record, "skipped") == HOSTS[1:] and not [e for e in hosts.events if e[0] == "rollback"]
    on_worker(temporal, body)


def test_a_cut_off_run_is_started_afresh_under_a_new_run_id_and_a_held_one_tried_again(temporal: str) -> None:
    async def body(client: Client, queue: str, hosts: Hosts) -> None:
        hosts.answers["h01"] = [HostRan("", EXIT_OK, None, "the worker running it stopped mid-way; rolled back",
                                        retry="cut off")]
        hosts.answers["h02"] = [HostRan("", EXIT_OK, None, "serve is paused", retry="held")]
        record = await roll(client, queue, serial="1")
        assert record["state"] == "done" and states(record, "applied") == HOSTS
        h01 = [run for what, h, run in hosts.events if what == "start" and h == "h01"]
        h02 = [run for what, h, run in hosts.events if what == "start" and h == "h02"]
        assert len(h01) == 2 and h01[0] != h01[1] and record["hosts"]["h01"]["run_id"] == h01[1]
        assert len(h02) == 2 and h02[0] == h02[1]  # nothing was started while held: the same run id
        assert [w for w, _ in record["hosts"]["h01"]["log"]] == ["restarted"]
    on_worker(temporal, body)


def test_the_rollout_is_listed_with_its_hosts_from_the_memo_while_it_runs(temporal: str) -> None:
    async def body(client: Client, queue: str, hosts: Hosts) -> None:
        hosts.gate = asyncio.Event()
        task = asyncio.ensure_future(roll(client, queue, serial="1"))
        memo: dict[str, Any] = {}
        for _ in range(600):  # until the canary is seen applying in the memo (no query: visibility and describe only)
            found = [w async for w in client.list_workflows(f"WorkflowType = '{ROLLOUT}' AND TaskQueue = '{queue}'")]
            if found:
                memo = dict((await (await client.get_workflow_handle(found[0].id).describe()).memo()).get("rollout")
                            or {})  # started here without one: the workflow's first task writes it
                if memo and memo["states"]["h01"]["state"] == "applying":
                    break
            await asyncio.sleep(0.1)
        assert memo["states"]["h01"]["state"] == "applying" and memo["states"]["h02"]["state"] == "pending", memo
        assert memo["hosts"] == 10 and memo["playbook"] == "fleet"
        child = client.get_workflow_handle(host_workflow_id(memo["id"], "h01"))
        assert len(await child.query("run_ids")) == 1  # the child's id: the rollout's and the host's
        hosts.gate.set()
        assert (await task)["state"] == "done"
    on_worker(temporal, body)


def test_the_worker_registers_the_rollout_workflows() -> None:
    names = {getattr(w, "__temporal_workflow_definition").name for w in parts.workflows()}
    assert {ROLLOUT, "RemediateRolloutHost"} <= names


def test_a_rollout_terminated_in_temporal_reads_as_unfinished_never_as_a_success(temporal: str) -> None:
    async def body(client: Client, queue: str, hosts: Hosts) -> None:
        hosts.gate = asyncio.Event()
        rollout_id = uuid.uuid4().hex[:10]
        given = RolloutInput(rollout_id, {"hosts": ["all"], "plans": {h: {"identity": h} for h in HOSTS}},
                             list(HOSTS), Settings(serial="1"), "key", "me@here", "fleet")
        handle = await client.start_workflow(ROLLOUT, given, id=workflow_id(rollout_id), task_queue=queue)
        for _ in range(600):  # until the canary's apply has begun (a minute at most)
            if "h01" in started(hosts):
                break
            await asyncio.sleep(0.1)
        assert "h01" in started(hosts), hosts.events
        await handle.terminate("by hand")
        hosts.gate.set()
        record = await rollout_client.read(client, rollout_id)
        assert record["partial"] and "(terminated in Temporal)" in record["state"], record
        done = await asyncio.to_thread(subprocess.run, ["remediate", "rollouts", "show", rollout_id, "--follow",
                                                        "--temporal-address", temporal],
                                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == EXIT_ERROR and f"rollout {rollout_id} ended without finishing" in done.stderr, done
    on_worker(temporal, body)
