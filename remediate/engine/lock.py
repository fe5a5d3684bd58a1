"""One run at a time per host: a lock file beside the run journals, naming its holder.

A lock may carry a lease (serve's Temporal backend: its holder is a workflow's run, on whichever worker runs it): it
is alive while the host's clock says it was renewed less than its seconds ago, and lapsed otherwise, wherever its
holder runs. A lock without one is alive while its process runs, which only its own machine can tell."""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import field
from typing import Any

from remediate.engine.journal import now, operator, records
from remediate.engine.runrecord import process, reused
from remediate.errors import CommandError, ConflictError, JournalWriteError, LeaseLost, RemediateError
from remediate.records import record
from remediate.transport import FOLDER_REFUSED_EXIT, JOURNAL_FAILED, MISSING_EXIT, Result, Transport

#: take_lock's exit code when the lock is held (its holder and age printed); renew_lock's and release_lock's when
#: the lock carries another token.
HELD_EXIT = 4


@record(frozen=True)
class Lease:
    """Who holds a leased lock (a workflow id and run, or another owner's name), for how long a renewal keeps it, and
    the token of this attempt: another attempt of the same holder has another token."""

    holder: str
    seconds: float
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def as_dict(self) -> dict[str, Any]:
        return {"holder": self.holder, "token": self.token, "seconds": self.seconds}


#: The lease the locks taken within `leased` carry (see Undo: read where the runner is made, so that it reaches every
#: host's thread of a fleet).
_LEASE: ContextVar[Lease | None] = ContextVar("remediate_lease", default=None)


@contextmanager
def leased(holder: str, seconds: float) -> Iterator[Lease]:
    """Within the block, runs take their host's lock with a lease of `seconds` for `holder`, renewed before each step
    and each undo, with a token of this block's own: another block (a retried attempt) is another holder's attempt."""
    lease = Lease(holder, float(seconds))
    token = _LEASE.set(lease)
    try:
        yield lease
    finally:
        _LEASE.reset(token)


def current_lease() -> Lease | None:
    """The lease of the enclosing `leased` block, or None (a CLI run: the lock's holder is its process)."""
    return _LEASE.get()


@record
class Lock:
    """A held lock; release it when the run ends, whatever the outcome."""

    transport: Transport
    path: str
    run_id: str
    #: The lease's token, when the lock was taken with one: renew and release only while the lock still carries it.
    token: str | None = None
    #: Set once another attempt took the lock over: it is theirs, never released from here.
    lost: bool = False
    #: The journal copy (its path on the host and bytes) the release carries, once taken from the transport.
    journal: tuple[str, bytes] | None = None
    #: This take's own mark in the lock's document (`take`, random): what tells the lock a run left behind from a
    #: later take under the same run id (a rollback of that run).
    taken: str = ""

    def renew(self) -> None:
        """Renew the lease (the lock's mtime set to the host's now); nothing for a lock without one. LeaseLost when
        the lock no longer carries our token: another attempt of the run took it over."""
        if self.token is None:
            return
        result = self.transport.operation("renew_lock", self.path, self.token, display=f"renew the lease of {self.path}")
        if result.ok:
            return
        self._refused(result, "renew")

    def release(self) -> None:
        """Remove the lock; a leased one only while it still carries our token (LeaseLost otherwise, left as it is,
        and when it is gone: a lock found gone is lost, never released).

        The release carries the journal copy left to ship on its transport (pending_journal, the run's last
        record): a leased lock's is written under the folder's flock, only once the token matched, so an attempt
        fenced out never writes it; any other rides with the removal, written first. Kept for a retry of the release
        over a new connection, which has none left to ship: the host's copy still gets the run's end."""
        if self.lost:
            return
        if self.transport.pending_journal is not None:
            self.journal = self.transport.pending_journal()
            self.transport.pending_journal = None
        if self.token is None:
            kept = self.journal
            if kept is not None:
                self.transport.pending_journal = lambda: kept
            self.transport.remove(self.path)
            return
        copy, data = self.journal or ("", None)
        result = self.transport.operation("release_lock", self.path, self.token, *([copy] if copy else []), stdin=data,
                                          display=f"release {self.path}" + (f", writing {copy} first" if copy else ""))
        if copy and result.exit_code == JOURNAL_FAILED:
            raise JournalWriteError(f"{self.transport.name}: the run's journal {copy} could not be written, so "
                                    f"{self.path} was not released: {result.output.strip() or 'no reason given'}")
        if not result.ok and not (result.exit_code == MISSING_EXIT and self._released_before(copy, data)):
            self._refused(result, "release")

    def _released_before(self, copy: str, data: bytes | None) -> bool:
        """Whether a lock found gone was released by an earlier try of this release, whose connection was lost before
        its answer: the host's copy holds exactly the record it carried. The host writes that copy only under the
        folder's flock once the token matched, then removes the lock; an attempt that took the run over writes its
        own record (its machine, its process). Anything else (no copy carried, unreadable, other bytes) is lost."""
        if not copy or data is None:
            return False
        try:
            found = self.transport.read(copy)
        except RemediateError:
            return False
        return found is not None and found.link is None and found.content == data

    def _refused(self, result: Result, what: str) -> None:
        if result.exit_code not in (HELD_EXIT, MISSING_EXIT):
            raise CommandError(f"{self.transport.name}: cannot {what} the lock {self.path}: "
                               f"{result.output.strip() or 'no reason given'}")
        self.lost = True
        now_held = describe(parse(result.stdout)[0]) if result.exit_code == HELD_EXIT else "nobody (it was removed)"
        raise LeaseLost(f"{self.transport.name}: run {self.run_id} lost its lease on {self.path}, now held by "
                        f"{now_held}: another attempt of the run took it over and continues or undoes it; this one "
                        "stopped, undoing nothing and leaving the lock and the host's journal to it",
                        hint="nothing to do here: the run's outcome is the one the attempt that took it over reports")


@record(frozen=True)
class Held:
    """A lock as its host shows it: the holder's document, and its age by the host's clock (None when not said)."""

    doc: dict[str, Any]
    age: float | None

    @property
    def run_id(self) -> str | None:
        found = self.doc.get("run_id")
        return found if isinstance(found, str) else None

    @property
    def lease(self) -> dict[str, Any] | None:
        found = self.doc.get("lease")
        return found if isinstance(found, dict) else None

    @property
    def alive(self) -> bool | None:
        return holder_alive(self.doc, self.age)


def parse(stdout: str) -> tuple[dict[str, Any], float | None, str]:
    """A lock's holder as take_lock, renew_lock, release_lock and show_lock print it (onhost.folders._show: its bytes,
    then a last line `age=SECONDS`): its document ({} when not JSON), its age (None when not said) and its bytes."""
    body, newline, last = stdout.removesuffix("\n").rpartition("\n")
    age = None
    if newline and last.startswith("age="):
        try:
            age = float(last.removeprefix("age="))
        except ValueError:
            age = None
    seen = body if age is not None else stdout
    try:
        doc = json.loads(seen or "{}")
    except (ValueError, RecursionError):
        doc = {}
    return (doc if isinstance(doc, dict) else {}), age, seen


def holder_alive(holder: dict[str, Any], age: float | None = None) -> bool | None:
    """Whether the holder is alive: by its lease when it has one (the lock's age by the host's clock, None when the
    age is not known); else by its process when it ran on this machine, None when that cannot be known from here."""
    lease = holder.get("lease")
    if isinstance(lease, dict):
        if age is None:
            return None
        try:
            return age < float(lease.get("seconds"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return True  # a lease whose length cannot be read is never taken for lapsed (as on the host)
    if holder.get("machine") != socket.gethostname():
        return None
    alive = _process_alive(holder)
    # a process that lives (serve's, say) holds nothing once its run ended and could not release the lock; the
    # journals are asked only then, not for every holder whose process is gone
    return False if alive and _ended(holder) else alive


def _process_alive(holder: dict[str, Any]) -> bool:
    """Whether the holder's process on this machine still runs: its pid, and not a pid reused since."""
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except ValueError:
        return True
    except PermissionError:
        pass
    return not reused(holder.get("pid"), holder.get("process"))  # its pid, since a reboot or a restart, another's


def describe(holder: dict[str, Any], age: float | None = None) -> str:
    """Who holds a lock, from its file's content (and its age, when known), for people."""
    if not holder:
        return "an empty lock file (left by a run that could not write it)"
    who = (f"run {holder.get('run_id', '?')} by {holder.get('operator', '?')} since {holder.get('started', '?')} "
           f"(pid {holder.get('pid', '?')} on {holder.get('machine', '?')}")
    lease = holder.get("lease")
    if not isinstance(lease, dict):
        return who + ")"
    renewed = f"; renewed {age:.0f} s ago" if age is not None else ""
    return who + f"; lease of {lease.get('holder', '?')} for {lease.get('seconds', '?')} s{renewed})"


def holder(transport: Transport, path: str) -> str | None:
    """Read-only: who holds the lock at path (see describe), or None when nobody does."""
    found = transport.read(path)
    if found is None:
        return None
    try:
        doc = json.loads(found.content or b"{}")
    except ValueError:
        doc = {}
    return describe(doc if isinstance(doc, dict) else {})


def peek(transport: Transport, path: str) -> Held | None:
    """Read-only: the lock at path with its age by the host's clock (onhost.folders.show_lock), or None when there is
    none. Its folder is checked as take_lock checks it, and never made."""
    result = transport.operation("show_lock", path, display=f"show the lock {path}")
    if result.exit_code == MISSING_EXIT:
        return None
    if not result.ok:
        raise CommandError(f"{transport.name}: cannot read the lock {path}: {result.output.strip() or 'no reason given'}")
    doc, age, _ = parse(result.stdout)
    return Held(doc, age)


def take(transport: Transport, path: str, run_id: str, *, break_lock: bool = False,
         take_over: str | None = None, lease: Lease | None = None) -> Lock:
    """Take the lock at path for run_id, or raise ConflictError naming the holder.

    take_over: a run id whose lock may be taken over (rollback of the run that holds it, a retried attempt of it),
        only once its holder is known to be gone (its process, or its lease lapsed): a live holder's lock is never
        taken, whoever asks.
    break_lock: take a lock whose holder is gone or cannot be checked from here.
    lease: the lock carries it (alive while renewed); else its holder is this process.
    A lock taken over is replaced on the host only if it is still exactly the one seen, with no live lease: of two
    takers, one wins."""
    me: dict[str, Any] = {"run_id": run_id, "operator": operator(), "started": now(), "pid": os.getpid(),
                          "process": process(), "machine": socket.gethostname(), "take": secrets.token_hex(8)}
    if lease is not None:
        me["lease"] = lease.as_dict()
    seen: str | None = None
    for attempt in range(2):
        # onhost.folders.take_lock: the folder made 0700 if absent and refused (FOLDER_REFUSED_EXIT) when another user
        # could plant names in it; then the lock created there (O_EXCL, from inside the checked folder), or its holder;
        # given the bytes seen, the lock replaced only if it still holds exactly them, under flock on its folder.
        more = () if seen is None else (seen.encode().hex(),)
        result = transport.operation("take_lock", path, *more, stdin=json.dumps(me).encode(), display=f"lock {path}")
        if result.ok:
            return Lock(transport, path, run_id, lease.token if lease is not None else None, taken=me["take"])
        _refused(transport, path, result)
        doc, age, seen = parse(result.stdout)
        alive = holder_alive(doc, age)
        stale_own = doc.get("run_id") == take_over and alive is False
        if attempt == 0 and (stale_own or (break_lock and alive is not True)):
            continue
        raise _held(transport, path, Held(doc, age))
    raise AssertionError("unreachable")


def _refused(transport: Transport, path: str, result: Result) -> None:
    """Raise for a take_lock that neither took the lock nor found it held."""
    if result.exit_code == FOLDER_REFUSED_EXIT:
        said = [line for line in result.stderr.splitlines() if line.startswith("remediate: ")]
        raise CommandError(f"{transport.name}: {said[-1].removeprefix('remediate: ') if said else result.stderr}",
                           hint="another user could plant links where the lock is read and written: make the "
                                "folder (remediate_state_dir) one of the user remediate runs as, with mode 0700")
    if result.exit_code != HELD_EXIT:
        raise CommandError(f"{transport.name}: cannot create the lock {path}: {result.output.strip() or 'no reason given'}",
                           hint="nothing was changed; make room or make the folder writable, then run again")


def _ended(holder: dict[str, Any]) -> str | None:
    """How the lock's run ended, when this machine journalled that its release failed and this is that very lock
    (its `take` mark the journal's; a rollback of the run takes it anew); else None."""
    run_id, mark = holder.get("run_id"), holder.get("take")
    try:
        found = records(None, run_id=run_id) if isinstance(run_id, str) and run_id and mark else []
    except (OSError, ValueError, RemediateError):  # this machine's journals unreadable: the holder is judged as before
        return None
    left = found and found[0].get("lock_left") and found[0].get("lock_taken") == mark
    return str(found[0]["outcome"]) if left else None


def _held(transport: Transport, path: str, held: Held) -> ConflictError:
    """The refusal of a lock its holder keeps (or that could not be taken over), in words that say what to do."""
    who = describe(held.doc, held.age)
    alive = held.alive
    if alive is False:
        gone = "its lease lapsed (its worker stopped renewing it)" if held.lease else "that process is gone"
        ended = _ended(held.doc)
        hint = (f"that run ended ({ended}) and could not release its lock: once you have checked the host, run again "
                "with --break-lock; there is nothing to roll back for it") if ended else \
            "roll that run back with `remediate rollback`, or run again with --break-lock"
        return ConflictError(f"{transport.name}: stale lock {path}: {who}, and {gone}", hint=hint)
    if alive is True:
        return ConflictError(f"{transport.name}: another remediate run holds {path}: {who}",
                             hint="wait for it to finish" + (": its lease lapses if its worker stops renewing it"
                                                             if held.lease else ""))
    return ConflictError(f"{transport.name}: another remediate run holds {path}: {who}",
                         hint="if that run is gone, run again with --break-lock")
