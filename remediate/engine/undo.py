"""Undo: roll back a recorded run from its journal, newest step first, under the host's one lock."""

from __future__ import annotations

import posixpath
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from remediate import redact
from remediate.engine import events, lock
from remediate.engine.context import HOST, Context, TransportPool
from remediate.engine.events import Emit
from remediate.engine.fleet import Stop
from remediate.engine.journal import UNDO_STATES, Journal, live_outcome, now
from remediate.engine.outcome import Mode, Outcome, RunEnd, Status
from remediate.errors import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_ROLLBACK_INCOMPLETE,
    ConflictError,
    ConnectError,
    InputError,
    LeaseLost,
    NotReversed,
    RemediateError,
)
from remediate.inputs.inventory import Host
from remediate.kinds import REGISTRY, Step, StepSpec, load_kinds
from remediate.kinds.file import undone
from remediate.transport import Transport

DEFAULT_STATE_DIR: Final = "/var/lib/remediate"
LOCK_NAME: Final = "lock"


def lock_path(host: Host) -> str:
    """The host's one lock: in its state dir (remediate_state_dir), whatever the playbook touches."""
    return posixpath.join(str(host.vars.get("remediate_state_dir") or DEFAULT_STATE_DIR), LOCK_NAME)


class Terminated(KeyboardInterrupt):
    """SIGTERM during apply: handled like Ctrl-C, so the run is rolled back rather than cut short."""


def terminate_as_interrupt() -> None:
    """From now on SIGTERM (a timeout in automation, systemd) rolls back like Ctrl-C does."""
    def handler(signum: int, frame: Any) -> None:
        raise Terminated()
    signal.signal(signal.SIGTERM, handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM are ignored in the block: a rollback, once begun, ends (a second Ctrl-C waits for it).
    Only the main thread handles signals: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


class Undo:
    """Rolls back journals on hosts; also the base of Runner, which undoes its own failed applies."""

    def __init__(self, *, pool: TransportPool, emit: Emit, break_lock: bool = False) -> None:
        self.pool = pool
        self.sink = emit
        self.break_lock = break_lock
        #: Set when the operator interrupts a rollout: every host still applying rolls back at its next step.
        self.stop = Stop()
        #: The lease every host's lock is taken with (lock.leased where this is made: it reaches each host's thread of a
        #: fleet as it is); None for a run whose holder is its process.
        self.lease = lock.current_lease()
        #: The locks held now, by host name: renewed before each step and each undo when leased.
        self.held: dict[str, lock.Lock] = {}
        #: Locks that could not be released, by host name: why, and when the lock was taken (the run's outcome says
        #: it, and exits non-zero).
        self.unreleased: dict[str, tuple[str, str]] = {}

    def emit(self, event: events.Event) -> None:
        """Hand a typed event to the renderer (or whoever listens)."""
        self.sink(event)

    def rollback_journal(self, ctx: Context, journal: Journal, steps: Mapping[str, Step],
                         skip: frozenset[str] = frozenset()) -> list[str]:
        """Undo every step the journal says may still need it: reverse order, reconcilers last. Ctrl-C waits.

        A reconciler (the restart) is not run when an undo before it failed: it would re-create the service from
        files that were not restored; nor is an earlier step that wrote a file whose undo failed (_blocked). They stay
        pending, like the failed step, for the next rollback. A leased run's lease is renewed before each undo:
        LeaseLost (another attempt took the run over) stops here, undoing no more."""
        entries = [e for e in journal.record["steps"] if e.get("state") in UNDO_STATES]
        ordinary = [e for e in reversed(entries) if not REGISTRY[e["kind"]].reconciler]
        reconcilers = [e for e in reversed(entries) if REGISTRY[e["kind"]].reconciler]
        problems: list[str] = []
        failed: list[str] = []
        unrestored: dict[tuple[str, str], str] = {}  # (target, path) of a file whose undo failed -> the step's id
        with signals_held():
            for entry in ordinary + reconcilers:
                step_id = entry["id"]
                if step_id in skip:
                    journal.update_step(step_id, state="rollback-skipped", rolled_back_at=now(),
                                        rolled_back="skipped by the operator (--skip): left as it is")
                    self.emit(events.StepRollbackSkipped(ctx.host.name, step_id,
                                                         "skipped by the operator (--skip): left as it is"))
                    continue
                text = self._blocked(entry, failed, unrestored)
                if text is not None:
                    journal.update_step(step_id, state="rollback-blocked", rollback_error=text)
                else:
                    text = self._undo_step(ctx, journal, steps[step_id], entry)
                if text is None:
                    continue
                problems.append(f"{step_id}: {text}")
                self.emit(events.StepRollbackFailed(ctx.host.name, step_id, text))
                done = journal.step(step_id)  # a change nothing reverses blocks no restart: no file is left as run
                if done.get("state") == "rollback-failed" and not done.get("not_reversed"):
                    failed.append(step_id)
                if done.get("state") == "rollback-blocked" or step_id in failed:  # its files are left as it left them
                    unrestored.update({(f.get("target"), f.get("path")): step_id for f in entry.get("files") or ()})
        return problems

    @staticmethod
    def _blocked(entry: Mapping[str, Any], failed: list[str], unrestored: Mapping[tuple[str, str], str]) -> str | None:
        """Why a step's undo must wait for failed undos (None: it need not). A reconciler (the restart) would re-create
        the service from files that were not restored. A step that wrote a file a later step's failed undo left as
        it was would judge that file by a state that is not its own after-state: it restores once the later one is."""
        if REGISTRY[entry["kind"]].reconciler and failed:
            return (f"not run: it would re-create the service from files that were not restored ({', '.join(failed)}); "
                    "it runs once they are")
        later = sorted({unrestored[key] for f in entry.get("files") or ()
                        if (key := (f.get("target"), f.get("path"))) in unrestored})
        if later:
            return (f"not run: a later step of the run that wrote the same file, {', '.join(later)}, is not undone; "
                    "this one runs once it is")
        return None

    def _undo_step(self, ctx: Context, journal: Journal, step: Step, entry: Mapping[str, Any]) -> str | None:
        """Undo one step (its lease renewed first, when leased), once more after a lost connection: None when it is
        undone (journalled), else why not (journalled as rollback-failed). LeaseLost goes up: nothing more is undone."""
        try:
            try:
                lost, message = self._attempt_undo(ctx, step, entry)
            except ConnectError:
                self._recover(ctx, journal)
                lost, message = self._attempt_undo(ctx, step, entry)
        except LeaseLost:
            raise
        except Exception as e:  # noqa: BLE001 - each failure (a lost connection too) is reported, the others still run
            text = redact.text(str(e))
            journal.update_step(step.id, state="rollback-failed", rollback_error=text, before_image_lost=False,
                                not_reversed=isinstance(e, NotReversed))
            return text
        if lost:
            text = (f"cannot be undone: {'; '.join(lost)}. Nothing can put it back as it was before the run "
                    f"(--force cannot either); once the file is as you want it, run the rollback again with "
                    f"--skip {step.id}")
            journal.update_step(step.id, state="rollback-failed", rollback_error=text, before_image_lost=True)
            return text
        journal.update_step(step.id, state="rolled-back", rolled_back=message, rolled_back_at=now())
        self.emit(events.StepRolledBack(ctx.host.name, step.id, redact.text(message)))
        return None

    def _attempt_undo(self, ctx: Context, step: Step, entry: Mapping[str, Any]) -> tuple[list[str], str]:
        """One try at a step's undo, its lease renewed first: the files nothing can restore (then nothing is done),
        else what the undo did."""
        self.renew(ctx)
        lost = self._lost_before_images(ctx, entry)
        return (lost, "") if lost else ([], step.rollback(ctx, entry))

    def renew(self, ctx: Context) -> None:
        """Renew the lease of the host's lock, when the run holds one (LeaseLost: another attempt took it over)."""
        held = self.held.get(ctx.host.name)
        if held is not None and held.token is not None:
            held.transport = ctx.transport(HOST)  # the connection made again after a lost one, if it was
            held.renew()

    def fenced(self, ctx: Context, journal: Journal) -> Transport | None:
        """The transport whose lock release is to carry the journal's last record (Journal.finish(via=)): that of the
        host's copy, when the run holds a leased lock there. The host writes it only while the lock carries the run's
        token: an attempt fenced out (another took the run over) never overwrites the taker's copy. None otherwise:
        the record is written at once."""
        held = self.held.get(ctx.host.name)
        if held is None or held.token is None or journal.remote is None:
            return None
        return journal.remote[0]

    def taken_over(self, ctx: Context, journal: Journal, lost: LeaseLost) -> None:
        """Another attempt of the run took its lock over: this one stops as it is, undoing nothing, leaving the lock
        and the host's copy of the journal to it; this machine's record of the run says so ("taken-over")."""
        if journal.remote is not None:
            journal.remote[0].pending_journal = None  # the host's copy is the other attempt's now
            journal.remote = None
        journal.finish("taken-over")
        self.emit(events.Notice(ctx.host.name, redact.text(lost.message)))

    def _lost_before_images(self, ctx: Context, entry: Mapping[str, Any]) -> list[str]:
        """The files of a step that nothing can restore, each said in a line: the run changed them, they are not as
        before the run now, and the before-image the run kept is gone or altered (a lab reset, a clean-up). Read-only:
        asked before the step's undo, which would refuse anyway, with --force or without."""
        lost = []
        for f in entry.get("files") or []:
            if not f.get("existed") or not f.get("backup"):
                continue  # a file the run created is removed: it needs no before-image
            transport = ctx.transport(entry["target"])
            if undone(transport.read(f["path"]), f, ctx.earlier_states(entry["id"], f)):
                continue  # already as before the step, or undone further (an earlier step's before-state)
            found = transport.sha256(f["backup"])
            if found != f["before_sha256"]:
                what = "is gone" if found is None else f"was altered (sha256 {found[:12]})"
                lost.append(f"{transport.name}:{f['path']}: its before-image {f['backup']} (sha256 "
                            f"{str(f['before_sha256'])[:12]}) {what}")
        return lost

    def rollback(self, host: Host, journal: Journal, *, force: bool = False, skip: frozenset[str] = frozenset()) -> Outcome:
        """Undo a recorded run from its journal alone, in a new process.

        force: overwrite files changed after the run with their before-image (the refusal showed the diff).
        skip: step ids the operator resolved by hand; they are marked so and left alone."""
        load_kinds(every=False)
        strange = sorted({e["kind"] for e in journal.record["steps"]} - set(REGISTRY))
        if strange:  # checked before the lock is taken: nothing is undone of a run that cannot be undone whole
            raise InputError(f"{journal.path}: run {journal.run_id} has steps of a kind this remediate does not know: "
                             f"{', '.join(strange)}", hint="install the plug-in that provides it, then roll back again")
        unknown = sorted(skip - {e["id"] for e in journal.record["steps"]})
        if unknown:
            raise InputError(f"--skip {unknown[0]}: run {journal.run_id} has no step of that name",
                             hint=f"its steps: {', '.join(e['id'] for e in journal.record['steps'])}")
        ctx = Context(host=host, vars=journal.record.get("vars") or {}, run_id=journal.run_id, pool=self.pool,
                      journal=journal, force=force, skip=skip)
        steps = {e["id"]: REGISTRY[e["kind"]](StepSpec(id=e["id"], kind=e["kind"], target=e["target"],
                                                       params=e.get("params") or {}, where=str(journal.path)))
                 for e in journal.record["steps"]}
        self.emit(events.RunStarted(host.name, Mode.ROLLBACK, journal.run_id, journal.record.get("playbook")))
        if live_outcome(journal.record) == "running":
            raise ConflictError(f"{host.name}: run {journal.run_id} is still running (pid {journal.record.get('pid')} on "
                                f"{journal.record.get('machine')}); rolling it back now would race it",
                                hint="wait for it to finish; Ctrl-C or SIGTERM makes it roll itself back")
        remote = journal.record.get("remote_journal")
        try:
            with self._locked(ctx, take_over=journal.run_id):
                if remote:
                    journal.attach(ctx.transport(HOST), remote.split(":", 1)[1])
                journal.failing()
                problems = self.rollback_journal(ctx, journal, steps, skip)
                outcome = RunEnd.ROLLBACK_INCOMPLETE if problems else RunEnd.ROLLED_BACK
                journal.finish(outcome, via=self.fenced(ctx, journal))  # a leased lock's release carries the copy
        except LeaseLost as taken:  # at an undo, or at the release: the copy is the other attempt's
            self.taken_over(ctx, journal, taken)
            raise
        code = EXIT_ROLLBACK_INCOMPLETE if problems else EXIT_OK
        left = self.lock_left(host.name, journal)
        pending = [p.split(":", 1)[0] for p in problems]
        failed = [e for e in journal.record["steps"] if e["id"] in pending and e.get("state") == "rollback-failed"]
        lost = [e["id"] for e in failed if e.get("before_image_lost")]
        way_out = [f"{', '.join(lost)}: nothing can restore {'its' if len(lost) == 1 else 'their'} file(s), whose "
                   f"before-image is gone (--force cannot either): once they are as you want them, run `remediate "
                   f"rollback` again with {' '.join(f'--skip {s}' for s in lost)}"] if lost else []
        if len(lost) < len(failed) or not lost:
            way_out.append("run `remediate rollback` again once resolved, with --force to overwrite a changed file or "
                           "--skip STEP for one you fixed by hand")
        message = (f"ROLLBACK INCOMPLETE: {len(pending)} step(s) still need undoing: {', '.join(pending)} (reasons above); "
                   f"{'; '.join(way_out)}") if problems else f"run {journal.run_id} rolled back"
        if left is not None:
            message, code = f"{message}; but it {left}", max(code, EXIT_ERROR)
        self.emit(events.RunFinished(host.name, journal.run_id, outcome, code, message if code else None))
        return Outcome(host.name, Status(outcome), code, message, journal.run_id)

    @contextmanager
    def _locked(self, ctx: Context, *, take_over: str | None = None) -> Iterator[lock.Lock]:
        """The host's one lock for the duration of the block: one release path, whatever happens inside. (The run's
        own folder is made by the run, with Transport.mkdir, which checks it.)"""
        held = self._lock(ctx, take_over=take_over)
        self.held[ctx.host.name] = held
        try:
            yield held
        finally:
            self.held.pop(ctx.host.name, None)
            self._release(held, ctx)  # not when another attempt took it over: it is theirs (Lock.lost)

    def _lock(self, ctx: Context, *, take_over: str | None) -> lock.Lock:
        """The host's one lock, in its state dir whatever the playbook touches; with this Undo's lease, if any."""
        transport = ctx.transport(HOST)
        return lock.take(transport, lock_path(ctx.host), ctx.run_id, break_lock=self.break_lock,
                         take_over=take_over, lease=self.lease)

    def _recover(self, ctx: Context, journal: Journal) -> None:
        """After a lost connection: log in again for the rollback, and keep the host's journal copy going."""
        self.pool.drop(ctx.host.name)
        try:
            transport = ctx.transport(HOST)
        except RemediateError as e:
            journal.remote = None
            self.emit(events.Notice(ctx.host.name, f"cannot reconnect to roll back; the local journal keeps the run: {e}"))
            return
        self.emit(events.Notice(ctx.host.name, "the SSH connection was lost; reconnected to roll back"))
        if journal.remote is not None:
            old, path = journal.remote
            if posixpath.dirname(path) not in old.private_dirs:  # never known made and checked: checked now
                try:
                    transport.mkdir(posixpath.dirname(path))
                except RemediateError as e:
                    journal.detach()
                    self.emit(events.Notice(ctx.host.name, f"the local journal keeps the run: {redact.text(str(e))}"))
                    return
            journal.attach(transport, path)

    def _release(self, held: lock.Lock, ctx: Context) -> None:
        """Release the lock, once more over a new connection after a lost one. A release that cannot be done is said;
        LeaseLost (the lock is another attempt's, or gone) goes up: the run is not this attempt's to report."""
        try:
            try:
                held.transport = ctx.transport(HOST)
                held.release()
            except ConnectError:
                self.pool.drop(ctx.host.name)
                held.transport = ctx.transport(HOST)
                held.release()
        except LeaseLost:
            raise
        except RemediateError as e:
            self.unreleased[ctx.host.name] = (f"could not release its lock {held.path}: {e}", held.taken)

    def lock_left(self, host: str, journal: Journal) -> str | None:
        """Why the run's lock is still on the host (its release failed), journalled; None when it was released. The
        next run there stops on it as a stale lock: the words say there is nothing to roll back for it."""
        if host not in self.unreleased:
            return None
        left, taken = self.unreleased.pop(host)
        journal.note(lock_left=left, lock_taken=taken)
        return left + ("; the next run on this host stops on it: once you have checked the host, run again with "
                       "--break-lock (this run needs no rollback for it)")

