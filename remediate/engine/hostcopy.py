"""A run's journal as its host keeps it (`<state dir>/<run id>/journal.json`, the lock's folder): read there, checked
and kept as this machine's record, for a rollback or a retried attempt on a machine that never saw the run."""

from __future__ import annotations

import json
import posixpath
import re
from typing import Final

from remediate import private
from remediate.engine import lock, runrecord
from remediate.engine.journal import Journal, RunRecord, runs_dir
from remediate.engine.undo import lock_path
from remediate.errors import InputError
from remediate.inputs.inventory import Host
from remediate.records import record
from remediate.transport import Transport

#: What a run id may be to name a file here and a folder on the host: never a path of its own (`/`, `..`).
RUN_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


@record(frozen=True)
class OnHost:
    """What a host says of a run: its copy of the run's journal (now this machine's record of it too, None when the
    host has none), and the host's lock as it stands (None when nobody holds it)."""

    journal: Journal | None
    lock: lock.Held | None


def host_path(host: Host, run_id: str) -> str:
    """Where a run that a worker on another machine may have to continue keeps its journal on the host: its folder in
    the lock's (Runner._state_dir of a leased run), found from the run id alone."""
    return posixpath.join(posixpath.dirname(lock_path(host)), run_id, "journal.json")


def fetch(transport: Transport, host: Host, run_id: str) -> Journal | None:
    """The host's copy of run_id's journal, checked and stored as this machine's record of the run (0600 in runs_dir,
    replacing the one there), its remote_journal the file it was read from; None when the host has none. See _fetch
    for what is checked before anything is kept."""
    if not RUN_ID.fullmatch(run_id):
        return None  # not a run id remediate makes: no such folder on any host
    return _fetch(transport, host, run_id)[0]


def look(transport: Transport, host: Host, run_id: str) -> OnHost:
    """The host's word on run_id: its journal (fetch) and its lock (lock.peek), on one connection."""
    if not RUN_ID.fullmatch(run_id):
        return OnHost(None, lock.peek(transport, lock_path(host)))
    return OnHost(*_fetch(transport, host, run_id))


def _fetch(transport: Transport, host: Host, run_id: str) -> tuple[Journal | None, lock.Held | None]:
    """The copy (fetch) and the lock as it stands. First the lock's folder, with its private-folder checks
    (lock.peek: CommandError when another user could plant names in it), before the copy is read; then the copy,
    refused when it is a link, not 0600 as remediate writes it, or in a run folder that is not private (the user
    remediate runs as owns the state and run folders and nobody else may write to them, so nobody else could have
    put it there); then its content (RunRecord.parse: what the undo reads, never acted on misread). Only then kept."""
    held = lock.peek(transport, lock_path(host))
    where = host_path(host, run_id)
    found = transport.read(where)
    if found is None:
        return None, held
    label = f"{host.name}:{where}"
    hint = "nothing was changed; look at the file before acting on that run"
    if found.link is not None:
        raise InputError(f"{label} is a symbolic link (to {found.link}); refusing to read a run journal through it",
                         hint=hint)
    if found.mode & 0o7777 != 0o600:
        raise InputError(f"{label} has mode {found.mode & 0o7777:o}, not 0600 as remediate writes a run journal; "
                         "refusing it", hint=hint)
    transport.mkdir(posixpath.dirname(where))  # the run folder's checks (it exists: nothing is made)
    try:
        record = runrecord.newest(found.content)  # its newest whole line (journal_then appends them)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{label}: cannot read the run journal: {e}",
                         hint="the host's copy is damaged; nothing was changed") from None
    parsed = RunRecord.parse(record, label)
    if parsed.run_id != run_id or parsed.host != host.name:
        raise InputError(f"{label}: that journal is of run {parsed.run_id} on {parsed.host}, not of run {run_id} on "
                         f"{host.name}", hint=hint)
    # Where the rollback keeps the host's copy is where it was read, whatever the copy says: a copy naming another
    # file as its own would have that file written, as root.
    record["remote_journal"] = label
    path = runs_dir() / f"{run_id}.{host.name}.json"
    private.write_bytes(path, json.dumps(record).encode() + b"\n", sync=True)
    return Journal.load(path), held
