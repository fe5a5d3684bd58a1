"""What the chaos test sees without asking serve: every version of every run journal (the host's copies beside the
compose file, and each replica's own), the compose file's progress, the Postfix container's starts, and which worker
runs an incident's activity (Temporal's own description of the workflow)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from remediate.engine import runrecord
from remediate.engine.undo import DEFAULT_STATE_DIR
from remediate.serve.temporal import shared

from . import labctl

T = TypeVar("T")
#: Where the host keeps its journal copies, one folder per run (runner._state_dir): a leased run's (serve on Temporal)
#: in the lock's folder, the lab inventory's default state dir; any other beside the file the run changes.
HOST_JOURNALS = (Path(DEFAULT_STATE_DIR), labctl.COMPOSE_FILE.parent / ".remediate")
HOST = "host"


@dataclass(frozen=True)
class Step:
    id: str
    state: str
    started: str | None  # set when the step's mutation began (state applying)


@dataclass(frozen=True)
class Seen:
    """One version of one copy of a run's journal, when the watcher first saw it (time.time())."""

    at: float
    copy: str  # HOST, or the replica whose XDG_STATE_HOME holds it
    run_id: str
    pid: int
    started: str
    finished: str | None
    outcome: str
    steps: tuple[Step, ...]

    def state(self, step_id: str) -> str:
        return next((s.state for s in self.steps if s.id == step_id), "")


def seen(at: float, copy: str, record: dict[str, Any]) -> Seen:
    steps = tuple(Step(str(s["id"]), str(s["state"]), s.get("started")) for s in record["steps"])
    return Seen(at, copy, str(record["run_id"]), int(record.get("pid") or 0), str(record.get("started")),
                record.get("finished"), str(record["outcome"]), steps)


def compose_phase(data: bytes | None) -> str:
    """How far the fix has got in the compose file: pristine, transport (RELAYHOST replaced), fixed, other, gone."""
    if data is None:
        return "gone"
    if data == labctl.pristine_compose():
        return "pristine"
    if data == labctl.fixed_compose():
        return "fixed"
    text = data.decode(errors="replace")
    return "transport" if "POSTFIX_relay_transport=lmtp:" in text and "m8088.com" in text else "other"


@dataclass(frozen=True)
class View:
    """The newest version of each host copy, and the compose file's phase."""

    compose: str
    host: dict[str, Seen]
    generation: int = 0  # forget_host() calls taken into account

    def running(self, pids: Iterable[int]) -> Seen | None:
        """The run in flight on the host, started by one of these (live) processes."""
        live = set(pids)
        found = [s for s in self.host.values() if s.outcome == "running" and s.pid in live]
        return max(found, key=lambda s: s.started) if found else None


class JournalWatch:
    """A thread reading the journals and the compose file every `every` seconds, keeping each new version."""

    def __init__(self, homes: dict[str, Path], every: float = 0.01) -> None:
        self.homes = homes
        self.every = every
        self.trace: list[Seen] = []
        self.phases: list[tuple[float, str]] = []
        self._keys: dict[Path, tuple[int, int, int]] = {}
        self._last: dict[tuple[str, str], dict[str, Any]] = {}
        self._view = View("gone", {})
        self._host: dict[str, Seen] = {}
        self._generation = 0  # asked for by forget_host(), under _cond
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="journal-watch", daemon=True)

    def start(self) -> JournalWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise AssertionError(f"the journal watcher failed: {self._error!r}") from self._error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                view = self._poll()
                with self._cond:
                    self._view = view
                    self._cond.notify_all()
                self._stop.wait(self.every)
        except BaseException as e:  # noqa: BLE001 - handed to the test at its next wait: a blind watcher fails it
            self._error = e
            with self._cond:
                self._cond.notify_all()

    def _files(self) -> list[tuple[str, Path]]:
        found = [(HOST, p) for folder in HOST_JOURNALS for p in folder.glob("*/journal.json")]
        for name, home in self.homes.items():
            found += [(name, p) for p in (home / "remediate" / "runs").glob("*.json")]
        return found

    def _poll(self) -> View:
        now = time.time()
        with self._cond:
            generation = self._generation
        if generation != self._view.generation:
            self._host = {}
        host = self._host
        for copy, path in self._files():
            record = self._read(path)
            if record is None:
                continue
            key = (copy, str(path))
            if self._last.get(key) != record:
                self._last[key] = record
                version = seen(now, copy, record)
                self.trace.append(version)
                if copy == HOST:
                    host[version.run_id] = version
        try:
            data: bytes | None = labctl.COMPOSE_FILE.read_bytes()
        except FileNotFoundError:
            data = None  # lab/reset between incidents
        phase = compose_phase(data)
        if not self.phases or self.phases[-1][1] != phase:
            self.phases.append((now, phase))
        return View(phase, dict(host), generation)

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The record at path when it changed since the last read (None: unchanged, or gone meanwhile)."""
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if self._keys.get(path) == key:
                return None
            record = runrecord.newest(path.read_bytes())  # a running run's: its newest whole line
        except (FileNotFoundError, ValueError):  # removed by lab/reset, or caught mid-way by a non-atomic writer
            return None
        self._keys[path] = key
        return record if isinstance(record, dict) and isinstance(record.get("steps"), list) else None

    def forget_host(self) -> None:
        """After lab/reset: the host's copies are gone; returns once the watcher's view has dropped them."""
        with self._cond:
            self._generation += 1
            wanted = self._generation
        assert self.wait_for(lambda view: view.generation == wanted, 10), "the journal watcher did not poll for 10 s"

    def wait_for(self, found: Callable[[View], T | None], seconds: float) -> T | None:
        """found(view)'s first truthy value, tried at every poll; None when `seconds` pass first (a missed moment)."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while True:
                self._raise()
                value = found(self._view)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def since(self, at: float) -> list[Seen]:
        with self._cond:
            return [s for s in self.trace if s.at >= at]


@dataclass(frozen=True)
class Activity:
    """An incident's pending activity as Temporal describes it."""

    type: str
    attempt: int
    identity: str  # the worker that runs (or last ran) it: the SDK's default, pid@hostname
    started: bool

    @property
    def pid(self) -> int | None:
        head = self.identity.split("@", 1)[0]
        return int(head) if head.isdigit() else None


@dataclass(frozen=True)
class Described:
    """An incident's workflow as Temporal describes it: its pending activity, and the summary in its memo."""

    activity: Activity | None
    summary: dict[str, Any]


def describe(address: str, number: int) -> Described | None:
    """Incident `number`'s workflow (None: there is none yet); RuntimeError when Temporal does not answer. Asks
    Temporal alone: a query to the workflow would wait for the worker it asks."""
    async def described() -> Described | None:
        client = await Client.connect(address)
        try:
            found = await client.get_workflow_handle(shared.workflow_id(number)).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        summary = (await found.memo()).get(shared.MEMO)
        for pending in found.raw_description.pending_activities:
            started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            doing = Activity(pending.activity_type.name, pending.attempt, pending.last_worker_identity, started)
            return Described(doing, summary if isinstance(summary, dict) else {})
        return Described(None, summary if isinstance(summary, dict) else {})
    try:
        return asyncio.run(asyncio.wait_for(described(), 5))
    except (RPCError, OSError, TimeoutError) as e:  # the SDK raises RuntimeError itself when it cannot connect
        raise RuntimeError(f"Temporal at {address} did not describe incident {number}: {e}") from e


def stuck(address: str, number: int) -> str:
    """What Temporal says of an incident that does not move: its pending activity, and the last workflow task that
    failed (a workflow whose code raises is retried for ever, and never moves)."""
    async def said() -> str:
        handle = (await Client.connect(address)).get_workflow_handle(shared.workflow_id(number))
        failed = None
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_task_failed_event_attributes"):
                failed = event.workflow_task_failed_event_attributes.failure
        found = await handle.describe()
        pending = [f"{a.activity_type.name} attempt {a.attempt} on {a.last_worker_identity or 'no worker'}"
                   for a in found.raw_description.pending_activities]
        return (f"Temporal: workflow {found.status.name if found.status else '?'}, pending {pending or 'nothing'}"
                + (f", its workflow task fails: {failed.message!r} ({failed.application_failure_info.type}) at\n"
                   f"{failed.stack_trace[-1500:]}" if failed is not None else ""))
    try:
        return asyncio.run(asyncio.wait_for(said(), 10))
    except (RPCError, RuntimeError, OSError, TimeoutError) as e:
        return f"Temporal did not describe incident {number}: {e!r}"


def activity(address: str, number: int) -> Activity | None:
    """Incident `number`'s pending activity (None: none, or no such workflow); RuntimeError when Temporal does not
    answer."""
    found = describe(address, number)
    return found.activity if found is not None else None


def container_starts(since: float, until: float, name: str = labctl.POSTFIX) -> int:
    """How many times Docker started a container named `name` between the two times (time.time())."""
    done = labctl.sh("docker", "events", "--since", f"{since:.3f}", "--until", f"{until:.3f}", "--filter",
                     f"container={name}", "--filter", "event=start", "--format", "{{.Actor.Attributes.name}}")
    return sum(1 for line in done.stdout.splitlines() if line.strip() == name)
