"""serve's Backend on Temporal: each serve process is a front end (alerts in, decisions, reads) and a worker (the
incident workflows and their activities). The Temporal client and worker live on an event loop of their own; the
routes call in from their threads. A workflow start answered by Temporal is durable; when Temporal cannot be reached
the call raises Unavailable (503) and nothing was started. The reads are visibility.py's, the routing and the run
limits routing.py's, the namespace's search attributes attributes.py's."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import threading
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, TLSConfig, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from remediate.serve import approvals
from remediate.serve.backend import Health, Unavailable
from remediate.serve.engine import stands
from remediate.serve.identity import Person
from remediate.serve.models import Alert, State, Webhook
from remediate.serve.refusals import Refused
from remediate.serve.rules import Rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.store import Incident
from remediate.serve.temporal import attributes, parts, shared
from remediate.serve.temporal.activities import Activities
from remediate.serve.temporal.asking import request as asked_by_hand
from remediate.serve.temporal.proof import ProofActivities, Proofing
from remediate.serve.temporal.routing import Router
from remediate.serve.temporal.shared import Decision, Opened, Timing
from remediate.serve.temporal.visibility import Visibility
from remediate.serve.temporal.workflow import ControlWorkflow, IncidentWorkflow

T = TypeVar("T")
WAIT = 30.0  # seconds a front-end call waits for Temporal
STOP_WAIT = 60.0  # seconds stop() waits for the worker to shut down (its activities in flight to end)
#: The most looks at Alertmanager's API an incident makes while it waits for resolved (its resolve_timeout spread over
#: them, at least Proofing.every apart): each is a timer and an activity in the workflow's history.
LOOKS = 200
STICKY = timedelta(seconds=3)  # how long a workflow task waits for the worker that cached its workflow


@dataclass(frozen=True)
class Connection:
    """Where Temporal is, as its own clients name it (the API key is never printed)."""

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = "remediate"
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    tls_ca: bytes | None = None
    api_key: str | None = None
    #: How long an apply or rollback may go without a heartbeat before Temporal gives it to another worker
    #: (--temporal-heartbeat-timeout): a dead worker's run is taken up that much later.
    heartbeat: float = 60.0

    def tls(self) -> TLSConfig | bool:
        if self.tls_cert or self.tls_ca:
            return TLSConfig(server_root_ca_cert=self.tls_ca, client_cert=self.tls_cert, client_private_key=self.tls_key)
        return self.api_key is not None


class TemporalBackend:
    """The Backend (serve/backend.py) over Temporal. start() connects and runs the worker; stop() ends both."""

    def __init__(self, connection: Connection, rules: Rules, inventory: Any, runs: LibraryRuns, *,
                 timing: Timing | None = None, host_runs_per_hour: int = 6, proofing: Proofing | None = None) -> None:
        self.connection = connection
        self.rules = rules
        self.router = Router(rules, inventory, self.paused_by, self._count, host_runs_per_hour=host_runs_per_hour)
        self.activities = Activities(runs, rules, lambda: self.paused_by() is None,
                                     lambda by, via: stands(self.work_dir, by, via))
        self.work_dir = getattr(runs, "work_dir", None)  # the state directory: its tokens say whose approvals stand
        self.proofing = proofing or Proofing()  # serve --alertmanager, its grace, --public-url, Slack's secret
        self.proof = ProofActivities(runs, rules, self.proofing)
        self.timing = timing or Timing(heartbeat=connection.heartbeat)
        self.visibility = Visibility(self._ready, connection.task_queue)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="temporal", daemon=True)
        self._client: Client | None = None
        self._worker: Worker | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity")
        self._problem: str | None = None
        #: the search attributes: what the check at connect added, and what is still missing (said at start)
        self.checked = attributes.Checked()
        self._routing = asyncio.Lock()  # one alert at a time on this replica: the limits count the one before
        self._connecting = asyncio.Lock()

    # --- life ----------------------------------------------------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """Why Temporal could not be reached at start (None once connected)."""
        return self._problem

    def start(self) -> None:
        self._thread.start()
        try:
            self._call(self._connect())
        except Unavailable as e:
            self._problem = str(e)  # serve starts all the same, answers 503 and says why; connects when it can

    async def _connect(self) -> Client:
        async with self._connecting:  # one client and one worker, however many calls come before the first is made
            if self._client is None:
                self._client = await self._open()
            return self._client

    async def _open(self) -> Client:
        """The client, the search attributes checked (attributes.py), and this process's worker running."""
        c = self.connection
        try:
            client = await Client.connect(c.address, namespace=c.namespace, tls=c.tls(), api_key=c.api_key)
        except (RuntimeError, OSError) as e:  # the SDK raises RuntimeError for a refused connection
            raise Unavailable(f"Temporal at {c.address} (namespace {c.namespace}) cannot be reached: {e}") from None
        self.checked = await attributes.ensure(client, c.namespace)
        # a dead replica's cached workflows go to another replica's worker after STICKY (the SDK waits 10 s): a GET of
        # an incident it ran, and the workflow's next step, wait that long after a kill
        self._worker = Worker(client, task_queue=c.task_queue, workflows=parts.workflows(),
                              activities=parts.activities(self.activities, self.proof), activity_executor=self._executor,
                              sticky_queue_schedule_to_start_timeout=STICKY)
        asyncio.ensure_future(self._worker.run())
        self._problem = None
        return client

    async def _ready(self) -> Client:
        """The client, once the namespace has serve's search attributes; while they are missing they are looked for
        again at each call (an operator may just have created them), and the call is Unavailable, naming the
        commands that create them."""
        client = await self._connect()
        if self.checked.problem and not self.checked.unchecked:
            self.checked = await attributes.ensure(client, self.connection.namespace)
            if self.checked.problem:
                raise Unavailable(self.checked.problem)
        return client

    def stop(self) -> None:
        """The worker shut down (each activity in flight told of the cancel and left to run to its end), then the
        loop and the pool. A worker that does not stop within STOP_WAIT raises Unavailable and keeps its loop: the
        activities still running heartbeat and report their ends through it, and the process waits for them (the
        pool's threads) before it exits."""
        if self._worker is not None:
            try:
                self._call(self._worker.shutdown(), timeout=STOP_WAIT)
            except Unavailable:
                raise Unavailable(f"the Temporal worker did not stop within {STOP_WAIT:g} s: an activity in flight is "
                                  "still running; it runs to its end (an apply is never abandoned half-way), and "
                                  "this process waits for it before it exits") from None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT) -> T:
        """Run `coro` on the Temporal loop; Temporal unreachable (or too slow) is Unavailable."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Unavailable(f"Temporal at {self.connection.address} did not answer within {timeout:g} s") from None
        except RPCError as e:
            if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"Temporal at {self.connection.address} cannot be reached: {e.message}") from None
            raise

    # --- alerts in -----------------------------------------------------------------------------------------------

    def receive(self, payload: Webhook) -> list[dict[str, Any]]:
        return [self._call(self._alert(alert, payload.receiver or "Alertmanager")) for alert in payload.alerts]

    async def _alert(self, alert: Alert, sender: str) -> dict[str, Any]:
        client = await self._ready()
        number = shared.incident_number(alert.fingerprint, alert.starts_at)
        if alert.status == "resolved":
            try:
                await client.get_workflow_handle(shared.workflow_id(number)).signal(IncidentWorkflow.resolved, sender)
                return {"id": number, "state": await self._state(number), "new": False}
            except RPCError as e:
                if e.status != RPCStatusCode.NOT_FOUND:
                    raise
            return await self._start(client, alert, self._opened(
                alert, number, (State.IGNORED, "resolved before serve saw it firing", None, None),
                f"resolved, from {sender}; never seen firing"), sender)
        async with self._routing:  # one firing at a time on this replica: the run limits count the one before
            route = await asyncio.get_running_loop().run_in_executor(None, self.router.route, alert)
            reason = route[1]
            return await self._start(client, alert, self._opened(
                alert, number, route, f"firing, from {sender}" + (f"; ignored: {reason}" if reason else "")), sender)

    async def _start(self, client: Client, alert: Alert | None, opened: Opened, sender: str) -> dict[str, Any]:
        """The incident's workflow, with its search attributes and its first summary in the memo; or the one another
        replica (or a repeat) started already: one incident."""
        workflow_id = shared.workflow_id(opened.number)
        try:
            await client.start_workflow(
                IncidentWorkflow.run, opened, id=workflow_id, task_queue=self.connection.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=_attributes(opened),
                memo={shared.MEMO: shared.summary(shared.first_record(opened, time.time()))})
        except WorkflowAlreadyStartedError:
            if alert is not None and alert.status == "firing":
                await self._quietly(client.get_workflow_handle(workflow_id).signal(IncidentWorkflow.repeat,
                                                                                   f"firing, from {sender}"))
            return {"id": opened.number, "state": await self._state(opened.number), "new": False}
        if opened.state != State.IGNORED.value and opened.rule and opened.host:
            self.router.started(workflow_id, opened.rule, opened.host)
        return {"id": opened.number, "state": opened.state, "new": True}

    def _opened(self, alert: Alert, number: int, route: Any, detail: str) -> Opened:
        state, reason, rule, host = route
        looks = rule is not None and self.proofing.alertmanager is not None
        return Opened(number, alert.fingerprint, alert.starts_at, alert.labels.get("alertname"), dict(alert.labels),
                      host, rule.name if rule else None, rule.playbook if rule else None, State(state).value, reason,
                      detail, rule.approval if rule else "required", rule.resolve_timeout if rule else 600.0,
                      rule.on_unresolved if rule else "rollback", self.timing, rule.approvals if rule else 1,
                      rule.approval_expires if rule else 3600.0, silence=looks and rule.silence,
                      look_every=max(self.proofing.every, rule.resolve_timeout / LOOKS) if looks and rule else 0.0,
                      verify_again=rule is not None and rule.verify_again, chat=rule is not None and rule.chat is not None)

    async def _quietly(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except RPCError as e:  # a closed incident takes no signal: the repeat is simply not noted
            if e.status != RPCStatusCode.NOT_FOUND:
                raise

    async def _state(self, number: int) -> str:
        return str((await self.visibility.record(number))["state"])

    def _count(self, since: float, host: str, rule: str | None, besides: Sequence[str]) -> int:
        """The run limits' count in visibility (called from the router, on a thread of its own)."""
        return self._call(self.visibility.runs_since(since, host=host, rule=rule, besides=besides))

    # --- reads (visibility.py) -----------------------------------------------------------------------------------

    def get(self, incident_id: int) -> Incident:
        return _incident(self._call(self.visibility.record(incident_id)))

    def list(self, *, state: State | None = None, host: str | None = None,
             rule: str | None = None) -> builtins.list[Incident]:
        """Newest first, from visibility; only those in `state`, on `host`, of `rule` when given."""
        found = self._call(self.visibility.incidents(state=state.value if state else None, host=host, rule=rule))
        return [_incident(r) for r in found]

    def counts(self) -> dict[State, int]:
        return self._call(self.visibility.counts())

    # --- people --------------------------------------------------------------------------------------------------

    def approve(self, incident_id: int, person: Person, identity: str | None = None) -> Incident:
        paused = self.paused_by()
        if paused is not None:
            raise Refused(f"serve is paused ({paused}): resume it before approving")
        try:
            _, gone = approvals.alive(self.get(incident_id).approvals, lambda by, via: stands(self.work_dir, by, via))
            if gone:  # the workflow holds them: no approval joins them, a fresh plan starts its approvals over
                raise Refused(f"incident {incident_id}: {'; '.join(gone)}: ask for a fresh plan (re-plan), whose "
                              "approvals start over")
            return self._decide(incident_id, "approve", Decision(person.name, identity, via=person.via))
        except Refused as e:  # the validator's refusal, into the incident's audit log (a closed one takes none)
            why = str(e).split(": ", 1)[1] if str(e).startswith(f"incident {incident_id}: ") else str(e)
            self._call(self._quietly(self._handle(incident_id).signal(IncidentWorkflow.refused, f"{person.said}: {why}")))
            raise

    def note(self, incident_id: int, what: str, detail: str) -> None:
        """A line in the incident's audit log (a refused Slack click: slack_actions.Slack's note)."""
        self._call(self._quietly(self._handle(incident_id).signal(IncidentWorkflow.note, args=[what, detail])))

    def deny(self, incident_id: int, person: Person, reason: str) -> Incident:
        return self._decide(incident_id, "deny", Decision(person.name, None, reason, via=person.via))

    def request(self, rule_name: str, host: str, person: Person) -> Incident:
        return _incident(self._call(asked_by_hand(self, rule_name, host, person)))

    def replan(self, incident_id: int, person: Person) -> Incident:
        return self._decide(incident_id, "replan", Decision(person.name, via=person.via))

    def rollback(self, incident_id: int, person: Person) -> Incident:
        paused = self.paused_by()
        if paused is not None:
            raise Refused(f"serve is paused ({paused}): resume it before rolling back")
        return self._decide(incident_id, "rollback", Decision(person.name, via=person.via))

    def _handle(self, incident_id: int) -> Any:
        assert self._client is not None
        return self._client.get_workflow_handle(shared.workflow_id(incident_id))

    def _decide(self, incident_id: int, update: str, decision: Decision) -> Incident:
        async def send() -> dict[str, Any]:
            client = await self._connect()
            handle = client.get_workflow_handle(shared.workflow_id(incident_id))
            try:
                done: dict[str, Any] = await handle.execute_update(update, decision, result_type=dict)
            except WorkflowUpdateFailedError as e:
                raise Refused(str(getattr(e.cause, "message", None) or e.cause or e)) from None
            except RPCError as e:
                if e.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                    raise
                state = await self._state(incident_id)  # NotFound when there is no such incident
                raise Refused(f"incident {incident_id} is {state}, not pending: nothing to {update}") from None
            return done
        return _incident(self._call(send()))

    # --- the pause -----------------------------------------------------------------------------------------------

    async def _control(self) -> Any:
        client = await self._connect()
        return await client.start_workflow(ControlWorkflow.run, None, id=f"{shared.CONTROL_ID}-{self.connection.task_queue}",
                                           task_queue=self.connection.task_queue,
                                           id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)

    def pause(self, by: str, reason: str = "") -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        said = f"{by} at {stamp}{': ' + reason if reason else ''}"

        async def set_it() -> str | None:
            handle = await self._control()
            result: str | None = await handle.execute_update(ControlWorkflow.set, said)
            return result
        return str(self._call(set_it()))

    def resume(self, by: str) -> None:
        async def clear() -> None:
            handle = await self._control()
            await handle.execute_update(ControlWorkflow.set, None)
        self._call(clear())

    def paused_by(self) -> str | None:
        async def read() -> str | None:
            handle = await self._control()
            found: str | None = await handle.query(ControlWorkflow.state)
            return found
        return self._call(read())

    def health(self) -> Health:
        """Unhealthy while Temporal cannot be reached, or while the namespace lacks serve's search attributes."""
        try:
            paused = self.paused_by() is not None
        except Unavailable as e:
            return Health(False, False, str(e))
        try:
            self._call(self._ready())
        except Unavailable as e:
            return Health(False, paused, str(e))
        return Health(True, paused)


def _attributes(opened: Opened) -> TypedSearchAttributes:
    pairs = [SearchAttributePair(SearchAttributeKey.for_keyword(shared.STATE_ATTRIBUTE), opened.state)]
    if opened.host:
        pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword(shared.HOST_ATTRIBUTE), opened.host))
    if opened.rule:
        pairs.append(SearchAttributePair(SearchAttributeKey.for_keyword(shared.RULE_ATTRIBUTE), opened.rule))
    return TypedSearchAttributes(pairs)


def _incident(record: dict[str, Any]) -> Incident:
    data = dict(record)
    data["state"] = State(data["state"])
    return Incident(**data)


__all__ = ["Connection", "TemporalBackend"]
