"""What a step sees while it runs: its host, the variables, the connections and the journal."""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from remediate import private
from remediate.contract.host import HOST as HOST  # re-exported for the engine
from remediate.contract.host import LOCAL, Host
from remediate.contract.plan import FileChange, Plan
from remediate.engine.journal import Journal, state_home
from remediate.errors import RemediateError
from remediate.inputs.inventory import Inventory
from remediate.records import record
from remediate.transport import FileState, Transport
from remediate.transport.local import LocalTransport

TransportFactory = Callable[[Host], Transport]


class TransportPool:
    """One transport per host for the whole run, opened when first needed."""

    def __init__(self, inventory: Inventory | None, factory: TransportFactory) -> None:
        self.inventory = inventory
        self.factory = factory
        self.open: dict[str, Transport] = {}
        self._guard = threading.Lock()
        self._opening: dict[str, threading.Lock] = {}  # one per name: hosts in parallel share one connection each
        #: Hosts being connected in the background (warm): their connection, or why it failed, once done.
        self._warming: dict[str, _Warming] = {}
        self._closed = False

    def warm(self, hosts: list[Host], forks: int) -> None:
        """Connect to the first `forks` hosts in the background (each its own thread) and get each ready for its first
        command, while the run goes on preparing: the hosts' side of connecting (sshd, the agent's python3) overlaps
        with the controller's. get() then waits for that connection, or raises what opening it raised."""
        for host in hosts[:forks]:
            with self._guard:
                if host.name in self._opening or host.name in self._warming or host.name == LOCAL:
                    continue
                warming = self._warming[host.name] = _Warming()
            threading.Thread(target=self._warm_one, args=(host, warming), name=f"warm-{host.name}", daemon=True).start()

    def _warm_one(self, host: Host, warming: _Warming) -> None:
        try:
            transport = self.factory(host)
            with self._guard:
                closed = self._closed
            if not closed:  # a run already ended starts nothing more on the host
                transport.warm()
        except BaseException as e:  # noqa: BLE001 - kept for get() to raise in the thread that needs the host
            warming.error = e
        else:
            with self._guard:
                closed = self._closed
                warming.transport = None if closed else transport
            if closed:  # the run ended (an input error) before it needed this host
                transport.close()
        finally:
            warming.done.set()

    def get(self, target: str, host: Host) -> Transport:
        name = host.name if target == HOST else target
        with self._guard:
            opening = self._opening.setdefault(name, threading.Lock())
            warming = self._warming.pop(name, None)
        with opening:
            if warming is not None:
                warming.done.wait()
                if warming.error is not None and name not in self.open:
                    raise warming.error
                if warming.transport is not None and name in self.open:  # opened meanwhile: one connection a host
                    warming.transport.close()
                elif warming.transport is not None:
                    self.open[name] = warming.transport
            if name not in self.open:
                if name == LOCAL:
                    self.open[name] = LocalTransport(name=LOCAL)
                elif name == host.name:
                    self.open[name] = self.factory(host)
                else:
                    assert self.inventory is not None
                    self.open[name] = self.factory(self.inventory.get(name, needed_by=f"a step targets it from {host.name}"))
            return self.open[name]

    def drop(self, name: str) -> None:
        """Forget a lost connection, so that the next get() opens a new one."""
        transport = self.open.pop(name, None)
        if transport is not None:
            try:
                transport.close()
            except Exception:  # noqa: BLE001 - it is already broken
                pass

    def close(self) -> None:
        with self._guard:
            self._closed = True
            warmed = [w.transport for w in self._warming.values() if w.transport is not None]
            self._warming.clear()
        for transport in [*self.open.values(), *warmed]:
            transport.close()
        self.open.clear()


@record
class _Warming:
    """A connection being opened in the background (TransportPool.warm)."""

    done: threading.Event = field(default_factory=threading.Event)
    transport: Transport | None = None
    error: BaseException | None = None


@record
class Context:
    """Per-host state shared by the steps of one run."""

    host: Host
    vars: Mapping[str, Any]
    run_id: str
    pool: TransportPool
    journal: Journal | None = None
    #: The plan's picture of files once the steps planned so far have run: (target, path) -> the file, or None when
    #: absent. Not a cache of the host: a later step's plan reads what an earlier step will write.
    planned_files: dict[tuple[str, str], FileState | None] = field(default_factory=dict)
    #: The plans made so far in this run, in step order.
    plans: list[Plan] = field(default_factory=list)
    #: Rollback only: overwrite files changed after the run with their before-image (the operator saw the diff).
    force: bool = False
    #: Rollback only: the steps the operator resolved by hand (--skip), left as they are.
    skip: frozenset[str] = frozenset()
    #: Folders that steps planned so far will create, per target (so two new files in one new folder make it once).
    overlay_dirs: dict[str, set[str]] = field(default_factory=dict)
    #: Every file the plan read, as it was read: (target, path) -> "sha256 mode uid gid", or None when absent. Part of
    #: the plan's identity (identity.py): a file changed after the plan makes it another plan.
    reads: dict[tuple[str, str], str | None] = field(default_factory=dict)
    #: How many times each step has recorded (ctx.record): a step whose second record failed to reach the host may
    #: have changed something with its first (one file of two written), so it is not "not-started".
    records: dict[str, int] = field(default_factory=dict)

    def changed_dependencies(self, spec: Any) -> list[str]:
        """The steps named in spec.when (its declared dependencies) planned so far to change something."""
        deps = set(spec.when or ())
        return [p.step_id for p in self.plans if p.step_id in deps and p.changed]

    def transport(self, target: str) -> Transport:
        return self.pool.get(target, self.host)

    def target_name(self, target: str) -> str:
        return self.host.name if target == HOST else target

    def read(self, target: str, path: str) -> FileState | None:
        """A file as it will be once the steps planned before this one have run."""
        key = (self.target_name(target), path)
        if key not in self.planned_files:
            state = self.planned_files[key] = self.transport(target).read(path)
            self.reads.setdefault(key, None if state is None else state.identity)
        return self.planned_files[key]

    def expect(self, change: FileChange, like: FileState | None, new_mode: int | None = None) -> None:
        """Tell later checks that this file will hold change.after (with like's mode and owner, or new_mode)."""
        mode, uid, gid = (like.mode, like.uid, like.gid) if like else (new_mode or 0o644, 0, 0)
        self.planned_files[(change.target, change.path)] = FileState(change.path, change.after, mode, uid, gid)

    def record(self, step_id: str, via: Transport | None = None, **fields: Any) -> None:
        """Journal what undo needs; call before the mutation it describes (it reaches the host's copy too). When the
        host's copy cannot be written (a full disk), the step never starts its mutation, and is recorded so.

        via: the transport whose next command is the mutation: the host's copy then goes with that command."""
        if self.journal is not None:
            self.records[step_id] = self.records.get(step_id, 0) + 1
            try:
                self.journal.update_step(step_id, durable=True, via=via, **fields)
            except RemediateError:
                if not self.began(step_id):
                    self.journal.update_step(step_id, state="not-started")
                raise

    def began(self, step_id: str) -> bool:
        """Whether the step may have changed something: a record before its last one reached the host, and the
        mutation it preceded may have run. Its first record failing means nothing of it ran."""
        return self.records.get(step_id, 0) > 1

    def note(self, step_id: str, **fields: Any) -> None:
        """Journal what a step learned or did that undo does not need (saved with the next record, or the run's end)."""
        if self.journal is not None:
            self.journal.update_step(step_id, later=True, **fields)

    def earlier_states(self, step_id: str, file: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
        """Rollback only: each earlier step of the run that wrote the journal entry's file too, with its own entry
        for it (its before-state), first step first. A file found in one of them is already undone past step_id's
        own before-state: by a rollback cut short before its records were kept, or by hand. Steps the operator
        leaves as they are (--skip, in this rollback or an earlier one) are not among them: their change is to stay.
        None under --force, which restores every step's before-image."""
        found: list[tuple[str, Mapping[str, Any]]] = []
        for step in self.journal.record["steps"] if self.journal is not None and not self.force else ():
            if step.get("id") == step_id:
                break
            if step.get("id") in self.skip or step.get("state") == "rollback-skipped":
                continue
            found += [(str(step["id"]), f) for f in step.get("files") or ()
                      if f.get("path") == file.get("path") and f.get("target") == file.get("target")]
        return found

    def backup_dir(self, target: str, path: str) -> str:
        """Where a step keeps the before-image of path: beside it on a host, in the state dir locally."""
        if self.target_name(target) == LOCAL:
            return str(private.folder(state_home() / "backups" / self.run_id))
        folder = posixpath.join(posixpath.dirname(path), ".remediate", self.run_id)
        self.transport(target).mkdir(folder)
        return folder
