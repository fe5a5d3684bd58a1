"""serve's reads on Temporal: incidents listed, counted and rate-limited from the namespace's visibility (the search
attributes and each incident's summary in its memo), never a query per workflow; one incident whole from its own
workflow (a query while it runs, its result once it completed), or its summary when neither answers. Visibility is
eventually consistent: what a workflow has just done may show a moment later."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.service import RPCError, RPCStatusCode

from remediate.serve.engine import NotFound
from remediate.serve.models import State
from remediate.serve.store import NOT_RUN
from remediate.serve.temporal import shared
from remediate.serve.temporal.workflow import IncidentWorkflow

LOG = logging.getLogger(__name__)

#: How long GET /incidents/N waits for a running incident's worker to answer before showing its summary.
QUERY_WAIT = 10.0
#: How long /metrics and the page reuse the counts by state: a scrape storm costs Temporal one count per state.
COUNTS_TTL = 5.0


def literal(value: str) -> str:
    """`value` as a visibility query's string. Refused with a backslash, which Temporal's SQL visibility matches
    inconsistently (ValueError)."""
    if "\\" in value:
        raise ValueError(f"{value!r} has a backslash, which Temporal's visibility queries cannot match reliably")
    return "'" + value.replace("'", "''") + "'"


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Visibility:
    """The reads of one team of replicas (its task queue) in the client's namespace."""

    def __init__(self, connect: Callable[[], Awaitable[Client]], task_queue: str, *, ttl: float = COUNTS_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.connect = connect
        self.base = f"WorkflowType = '{shared.INCIDENT}' AND TaskQueue = {literal(task_queue)}"
        self.ttl, self.clock = ttl, clock
        self._counted: tuple[float, dict[str, int]] | None = None
        self._counting = asyncio.Lock()

    async def incidents(self, *, state: str | None = None, host: str | None = None,
                        rule: str | None = None) -> list[dict[str, Any]]:
        """Every incident's summary (shared.summary), newest first; only those in `state`, on `host`, of `rule`."""
        query = self.base + "".join(f" AND {name} = {literal(value)}" for name, value in (
            (shared.STATE_ATTRIBUTE, state), (shared.HOST_ATTRIBUTE, host), (shared.RULE_ATTRIBUTE, rule)) if value)
        client = await self.connect()
        found = []
        async for execution in client.list_workflows(query):
            summary = (await execution.memo()).get(shared.MEMO)
            if isinstance(summary, dict):
                found.append(summary)
            else:  # started by a serve that kept no summary: GET /incidents/N still has it
                LOG.warning("incident workflow %s has no summary in its memo: not listed", execution.id)
        return sorted(found, key=lambda r: float(r["created"]), reverse=True)

    async def record(self, number: int) -> dict[str, Any]:
        """The incident's whole record: asked of its workflow while it runs (its summary when no worker answers in
        QUERY_WAIT), its result once it completed (no worker needed), its summary when it ended otherwise."""
        handle = (await self.connect()).get_workflow_handle(shared.workflow_id(number))
        try:
            described = await handle.describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"no incident {number}") from None
            raise
        if described.status == WorkflowExecutionStatus.COMPLETED:
            done: dict[str, Any] = await handle.result()
            return done
        if described.status == WorkflowExecutionStatus.RUNNING:
            try:
                asked: dict[str, Any] = await handle.query(IncidentWorkflow.incident,
                                                           rpc_timeout=timedelta(seconds=QUERY_WAIT))
                return asked
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as e:
                LOG.info("incident %s: its workflow did not answer (%s): showing its summary", number, e)
        summary = (await described.memo()).get(shared.MEMO)
        if not isinstance(summary, dict):
            raise NotFound(f"incident {number}: its workflow is {described.status} and keeps no summary")
        return summary

    async def counts(self) -> dict[State, int]:
        """Incidents by state, one count per state, reused for `ttl` seconds."""
        async with self._counting:
            if self._counted is None or self.clock() - self._counted[0] >= self.ttl:
                client = await self.connect()
                counted = await asyncio.gather(*(client.count_workflows(
                    f"{self.base} AND {shared.STATE_ATTRIBUTE} = {literal(state.value)}") for state in State))
                self._counted = (self.clock(), {state.value: c.count for state, c in zip(State, counted)})
            found = self._counted[1]
        return {state: int(found.get(state.value, 0)) for state in State}

    async def runs_since(self, since: float, *, host: str, rule: str | None = None, besides: Iterable[str] = ()) -> int:
        """What the run limits count, as the embedded backend does: incidents on `host` (of `rule`) opened since
        `since` that were not ignored or denied; and any whose apply started since (RemediateApplied). `besides`:
        workflow ids left out (a replica counts those it just started itself)."""
        when = literal(stamp(since))
        opened = " AND ".join([f"StartTime >= {when}",
                               *(f"{shared.STATE_ATTRIBUTE} != {literal(s.value)}" for s in NOT_RUN)])
        query = (f"{self.base} AND {shared.HOST_ATTRIBUTE} = {literal(host)}"
                 + (f" AND {shared.RULE_ATTRIBUTE} = {literal(rule)}" if rule is not None else "")
                 + f" AND (({opened}) OR {shared.APPLIED_ATTRIBUTE} >= {when})"
                 + "".join(f" AND WorkflowId != {literal(i)}" for i in besides))
        counted = await (await self.connect()).count_workflows(query)
        return int(counted.count)


__all__ = ["COUNTS_TTL", "QUERY_WAIT", "Visibility", "literal"]
