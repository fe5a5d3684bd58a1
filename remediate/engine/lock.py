"""One run at a time per host: a lock file beside the run journals, naming its holder."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from remediate.engine.journal import now, operator
from remediate.errors import CommandError, ConflictError
from remediate.transport import FOLDER_REFUSED_EXIT, Transport


@dataclass
class Lock:
    """A held lock; release it when the run ends, whatever the outcome."""

    transport: Transport
    path: str
    run_id: str

    def release(self) -> None:
        self.transport.remove(self.path)


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """True/False when the holder ran on this machine, None when that cannot be known from here."""
    if holder.get("machine") != socket.gethostname():
        return None
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def describe(holder: dict[str, Any]) -> str:
    """Who holds a lock, from its file's content, for people."""
    if not holder:
        return "an empty lock file (left by a run that could not write it)"
    return (f"run {holder.get('run_id', '?')} by {holder.get('operator', '?')} since {holder.get('started', '?')} "
            f"(pid {holder.get('pid', '?')} on {holder.get('machine', '?')})")


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


def take(transport: Transport, path: str, run_id: str, *, break_lock: bool = False,
         take_over: str | None = None) -> Lock:
    """Take the lock at path for run_id, or raise ConflictError naming the holder.

    take_over: a run id whose lock may be taken over (rollback of the run that holds it), only once its process
        is known to be gone: a live holder's lock is never taken, whoever asks.
    break_lock: remove a lock whose holder is gone or cannot be checked from here.
    """
    me = {"run_id": run_id, "operator": operator(), "started": now(), "pid": os.getpid(), "machine": socket.gethostname()}
    for attempt in range(2):
        # onhost.folders.take_lock: the folder made 0700 if absent and refused (FOLDER_REFUSED_EXIT) when another user
        # could plant names in it; then the lock created there (O_EXCL, from inside the checked folder), or its holder.
        result = transport.operation("take_lock", path, stdin=json.dumps(me).encode(), display=f"lock {path}")
        if result.ok:
            return Lock(transport, path, run_id)
        if result.exit_code == FOLDER_REFUSED_EXIT:
            said = [line for line in result.stderr.splitlines() if line.startswith("remediate: ")]
            raise CommandError(f"{transport.name}: {said[-1].removeprefix('remediate: ') if said else result.stderr}",
                               hint="another user could plant links where the lock is read and written: make the "
                                    "folder (remediate_state_dir) one of the user remediate runs as, with mode 0700")
        if result.exit_code != 4:
            raise CommandError(f"{transport.name}: cannot create the lock {path}: {result.output.strip() or 'no reason given'}",
                               hint="nothing was changed; make room or make the folder writable, then run again")
        try:
            holder = json.loads(result.stdout or "{}")
        except ValueError:
            holder = {}
        alive = holder_alive(holder)
        who = describe(holder)
        stale_own = holder.get("run_id") == take_over and alive is False
        if attempt == 0 and (stale_own or (break_lock and alive is not True)):
            transport.remove(path)
            continue
        if alive is False:
            raise ConflictError(f"{transport.name}: stale lock {path}: {who}, and that process is gone",
                                hint="roll that run back with `remediate rollback`, or run again with --break-lock")
        if alive is True:
            raise ConflictError(f"{transport.name}: another remediate run holds {path}: {who}",
                                hint="wait for it to finish")
        raise ConflictError(f"{transport.name}: another remediate run holds {path}: {who}",
                            hint="if that run is gone, run again with --break-lock")
    raise AssertionError("unreachable")
