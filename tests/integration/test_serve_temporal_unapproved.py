"""The incident workflow on a real Temporal (the `temporal` dev server), with stand-in activities at the activity
seam: an apply that the activity refuses because the approvals no longer approve the plan when it began ("unapproved":
expired or revoked while it waited for a worker) leaves the incident pending with the approvals that still count and
nothing run; a fresh approval then applies it. The activity's own check: tests/unit/test_temporal_apply_approvals.py."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from remediate.serve import approvals
from remediate.serve.temporal import attributes, parts, shared
from remediate.serve.temporal.shared import Decision, Opened, PlanInput, Planned, Ran, RunInput, Told

PLAN = {"plans": {"h1": {"identity": "stand-in-identity"}}}


@dataclass
class Stand:
    """The stand-in activities: the first apply is refused as unapproved (bob's approval kept), the next applies."""

    applies: list[RunInput] = field(default_factory=list)

    @activity.defn(name=shared.PLAN)
    async def plan(self, given: PlanInput) -> Planned:
        return Planned("changes", "--- a\n+++ b\n", dict(PLAN), "the host needs the fix")

    @activity.defn(name=shared.APPLY)
    async def apply(self, given: RunInput) -> Ran:
        self.applies.append(given)
        if len(self.applies) == 1:
            kept = [a for a in given.approvals if a["by"] == "bob"]
            return Ran("unapproved", None, "the approvals held no longer approve this plan (1 of 2 count): nothing "
                       "was changed; the plan waits for approval",
                       [["approval dropped", "alice's approval expired (approvals count for 3600 s)"]], approvals=kept)
        return Ran("applied", given.run_id, "applied and verified")

    @activity.defn(name=shared.NOTIFY)
    async def notify(self, given: Told) -> list[list[str]]:
        return []


async def approve(handle: WorkflowHandle[Any, Any], by: str, identity: str) -> dict[str, Any]:
    done: dict[str, Any] = await handle.execute_update("approve", Decision(by, identity, via="token"), result_type=dict)
    return done


async def until(handle: WorkflowHandle[Any, Any], what: Any) -> dict[str, Any]:
    for _ in range(600):  # a condition with a deadline (60 s), polled
        record: dict[str, Any] = await handle.query("incident", result_type=dict)
        if what(record):
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"the incident never got there: {record}")


def test_an_apply_refused_as_unapproved_goes_back_to_pending_and_a_fresh_approval_applies(temporal: str) -> None:
    async def main() -> None:
        client = await Client.connect(temporal)
        await attributes.ensure(client, "default")  # as serve does at connect (RemediateApplied: a Datetime)
        queue, stand = f"unapproved-{uuid.uuid4().hex[:8]}", Stand()
        async with Worker(client, task_queue=queue, workflows=[w for w in parts.workflows() if "Incident" in w.__name__],
                          activities=[stand.plan, stand.apply, stand.notify]):
            number = int(uuid.uuid4().int % 1_000_000) + 1
            opened = Opened(number, "fp", "2026-12-06T00:00:00Z", "A", {"alertname": "A"}, "h1", "app", "app.yml",
                            "pending", None, "fired", approvals=2, resolve_timeout=60.0)
            handle = await client.start_workflow(shared.INCIDENT, opened, id=f"unapproved-{number}", task_queue=queue)
            planned = await until(handle, lambda r: r["plan"] is not None)
            identity = str(approvals.identity_of(planned["plan"], "h1"))
            await approve(handle, "alice", identity)
            await approve(handle, "bob", identity)
            back = await until(handle, lambda r: r["state"] == "pending" and any(
                h["what"].startswith("not applied") for h in r["history"]))
            assert [a["by"] for a in back["approvals"]] == ["bob"] and back["run_id"] is None, back
            whats = [h["what"] for h in back["history"]]
            assert "approval dropped" in whats and whats.count("applying") == 1, whats
            assert len(stand.applies) == 1
            await approve(handle, "carol", identity)  # bob's still counts: carol's makes two
            await until(handle, lambda r: r["state"] == "waiting_resolved")
            await handle.signal("resolved", "test")
            done = await until(handle, lambda r: r["state"] == "resolved")
            assert len(stand.applies) == 2 and {a["by"] for a in stand.applies[1].approvals} == {"bob", "carol"}
            assert [h["what"] for h in done["history"]].count("applying") == 2
    asyncio.run(main())
