"""A run's journal as its host keeps it (`<state dir>/<run id>/journal.json`, the lock's folder): read there, checked
and kept as this machine's record, for a rollback or a retried attempt on a machine that never saw the run."""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Final

from remediate import private
from remediate.engine import lock
from remediate.engine.journal import Journal, RunRecord, runs_dir
from remediate.engine.undo import lock_path
from remediate.errors import InputError
from remediate.inputs.inventory import Host
from remediate.transport import Transport

#: What a run id may be to name a file here and a folder on the host: never a path of its own (`/`, `..`).
RUN_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


@dataclass(frozen=True)
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
    """The host's copy of run_id's journal, checked (RunRecord.parse: never acted on misread) and stored as this
    machine's record of the run (0600 in runs_dir, replacing the one there), its remote_journal the file it was read
    from; None when the host has none."""
    if not RUN_ID.fullmatch(run_id):
        return None  # not a run id remediate makes: no such folder on any host
    where = host_path(host, run_id)
    found = transport.read(where)
    if found is None:
        return None
    label = f"{host.name}:{where}"
    try:
        record = json.loads(found.content)
    except (ValueError, RecursionError) as e:
        raise InputError(f"{label}: cannot read the run journal: {e}",
                         hint="the host's copy is damaged; nothing was changed") from None
    parsed = RunRecord.parse(record, label)
    if parsed.run_id != run_id or parsed.host != host.name:
        raise InputError(f"{label}: that journal is of run {parsed.run_id} on {parsed.host}, not of run {run_id} on "
                         f"{host.name}", hint="nothing was changed; look at the file before acting on that run")
    # Where the rollback keeps the host's copy is where it was read, whatever the copy says: a copy naming another
    # file as its own would have that file written, as root.
    record["remote_journal"] = label
    path = runs_dir() / f"{run_id}.{host.name}.json"
    private.write_bytes(path, json.dumps(record).encode() + b"\n", sync=True)
    return Journal.load(path)


def look(transport: Transport, host: Host, run_id: str) -> OnHost:
    """The host's word on run_id: its journal (fetch) and its lock (lock.peek), on one connection."""
    return OnHost(fetch(transport, host, run_id), lock.peek(transport, lock_path(host)))
