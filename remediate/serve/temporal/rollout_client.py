"""The operator's side of a fleet rollout on Temporal: start one (its input, the reviewed plan), read one (the
workflow's query while it runs, its result once ended, its memo when no worker answers), list them (visibility, by
workflow type and memo: no worker needed), and follow one until it ends or the operator detaches."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from remediate.errors import EXIT_ERROR, InputError, RemediateError
from remediate.serve.temporal.backend import Connection
from remediate.serve.temporal.rollout_shared import ROLLOUT, RolloutInput, rollout_id_of, workflow_id
from remediate.serve.temporal.rollout_tally import Tally

#: Seconds between two reads of a rollout being followed.
POLL: Final = 1.0
#: The signals that detach `apply --backend temporal` and `rollouts show --follow` (the rollout goes on).
DETACHING: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Unreachable(RemediateError):
    """Temporal cannot be reached: nothing was started or read."""


#: Set once this process holds a Temporal client: its threads can crash CPython's finalization (temporalio's
#: sdk-python#300, "PyGILState_Release ... finalizing" and SIGABRT, one exit in three here), so such a command ends
#: with its output flushed and os._exit (cli/backend.py, exits_at_once).
CONNECTED = threading.Event()


async def connect(where: Connection) -> Client:
    try:
        client = await Client.connect(where.address, namespace=where.namespace, tls=where.tls(), api_key=where.api_key)
    except (RuntimeError, OSError) as e:  # the SDK raises RuntimeError for a refused connection
        raise Unreachable(f"Temporal at {where.address} (namespace {where.namespace}) cannot be reached: {e}",
                          hint="check --temporal-address/--temporal-namespace (or TEMPORAL_ADDRESS) and that it "
                               "runs") from None
    CONNECTED.set()
    return client


def new_id(now: datetime | None = None) -> str:
    import secrets
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


async def start(client: Client, where: Connection, given: RolloutInput) -> None:
    """Start the rollout; once this returns, Temporal holds it (durable), whatever becomes of this process."""
    memo = Tally(given, datetime.now(UTC).timestamp()).memo()
    try:
        await client.start_workflow(ROLLOUT, given, id=workflow_id(given.rollout_id), task_queue=where.task_queue,
                                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, memo={"rollout": memo})
    except RPCError as e:
        if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise Unreachable(f"Temporal at {where.address} cannot be reached: {e.message}; the rollout was not "
                              "started, nothing was changed") from None
        raise


def _handle(client: Client, rollout_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(workflow_id(rollout_id_of(rollout_id)))


async def _described(handle: WorkflowHandle[Any, Any], rollout_id: str) -> Any:
    try:
        return await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise InputError(f"no rollout {rollout_id}", hint="`remediate rollouts` lists them") from None
        raise


async def glance(client: Client, rollout_id: str) -> tuple[dict[str, Any], bool]:
    """What the memo says of a rollout (no worker needed), and whether its workflow is still running."""
    handle = _handle(client, rollout_id)
    described = await _described(handle, rollout_id)
    memo = dict((await described.memo()).get("rollout") or {})
    running = described.status == WorkflowExecutionStatus.RUNNING
    if not running and described.status != WorkflowExecutionStatus.COMPLETED:
        memo["state"] = f"{memo.get('state')} ({described.status.name.lower()} in Temporal)"
    return memo, running


async def read(client: Client, rollout_id: str) -> dict[str, Any]:
    """A rollout's whole record: its result once ended, else its query (the memo alone if no worker answers)."""
    handle = _handle(client, rollout_id)
    described = await _described(handle, rollout_id)
    if described.status == WorkflowExecutionStatus.COMPLETED:
        return dict(await handle.result())
    if described.status == WorkflowExecutionStatus.RUNNING:
        try:
            return dict(await handle.query("rollout", rpc_timeout=timedelta(seconds=15)))
        except (TimeoutError, RPCError):
            pass  # no worker answered: what the memo keeps
    memo, _ = await glance(client, rollout_id)
    return from_memo(memo)


def from_memo(memo: dict[str, Any]) -> dict[str, Any]:
    """A rollout's record as far as its memo keeps it (each host's state, status, exit code and run; no messages)."""
    hosts = {h: {"host": h, "message": "", **fields} for h, fields in (memo.get("states") or {}).items()}
    return {**{k: v for k, v in memo.items() if k != "states"}, "hosts": hosts, "partial": True}


async def listed(client: Client) -> list[dict[str, Any]]:
    """Every rollout Temporal's visibility knows, newest first: its memo, and its workflow's status."""
    found = []
    async for execution in client.list_workflows(f"WorkflowType = '{ROLLOUT}'"):
        memo = dict((await execution.memo()).get("rollout") or {})
        memo.setdefault("id", rollout_id_of(execution.id))
        if execution.status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
            memo["state"] = f"{memo.get('state')} ({execution.status.name.lower() if execution.status else '?'} in "
            memo["state"] += "Temporal)"
        found.append(memo)
    return sorted(found, key=lambda m: float(m.get("started") or 0), reverse=True)


async def follow(client: Client, rollout_id: str, seen: Callable[[dict[str, Any]], None],
                 detached: asyncio.Event) -> dict[str, Any] | None:
    """Each change of the rollout's hosts to `seen` (from the memo: no worker needed), until the rollout ends (its
    whole record) or `detached` is set (None)."""
    last: dict[str, Any] = {}
    while not detached.is_set():
        memo, running = await glance(client, rollout_id)
        if memo.get("states") != last.get("states"):
            seen(from_memo(memo))
            last = memo
        if not running:
            return await read(client, rollout_id)
        try:
            await asyncio.wait_for(detached.wait(), POLL)
        except TimeoutError:
            pass
    return None


def detaching(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Event, list[signal.Signals]]:
    """Ctrl-C, SIGTERM and SIGHUP (a closed terminal) set the event instead of ending the process: the caller
    detaches, saying how to follow the rollout; the list names the signal."""
    event, why = asyncio.Event(), []

    def caught(sig: signal.Signals) -> None:
        why.append(sig)
        event.set()
    for sig in DETACHING:
        loop.add_signal_handler(sig, caught, sig)
    return event, why


#: A detached command's exit code: 128 + the signal's number, as a shell reports a process that signal ended.
def detached_code(why: list[signal.Signals]) -> int:
    return 128 + int(why[0]) if why else EXIT_ERROR
