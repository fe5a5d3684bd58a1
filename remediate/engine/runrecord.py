"""The run record as read back: checked before anything acts on it, so that rollback never acts on a record it
misreads (a damaged or crafted journal is refused whole, never half undone); summed up as the run index's row; its
outcome as shown; and as it is written: one line of JSON, each step's part of it kept until that step changes.

A journal file holds its record as one line. While its run runs, each newer record is appended as a line of its own
(KeptFile), and the last whole line is the record (read): a kill or a power cut in the middle of an append
leaves the record before it. The run's end writes the file anew with its last record alone."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from dataclasses import field
from pathlib import Path
from typing import Any, Final

from remediate import jsonin, private
from remediate.errors import InputError
from remediate.records import record

VERSION: Final = 1
# Step states whose mutation may have begun, and so must be undone on rollback.
# Step states whose mutation may have begun and is not undone yet: a failed or blocked undo stays pending, so a
# retried rollback undoes exactly what is left, until it succeeds or the operator skips it (rollback --skip).
UNDO_STATES: Final = frozenset({"applying", "applied", "verified", "failed", "rollback-failed", "rollback-blocked"})
ROLLBACKABLE: Final = frozenset({"applied", "running", "rollback-incomplete"})
NOTHING_CHANGED: Final = frozenset({"refused", "failed"})
#: A running run's journal file is written whole again once the records appended to it would pass this many times
#: the newest record (KeptFile).
APPENDED: Final = 16


@record
class StepRecord:
    """One step as the journal starts it; apply and rollback add what undo needs (update_step), exactly as given."""

    id: str
    kind: str
    target: str
    params: dict[str, Any]
    state: str  # planned, to-check, no-op, then applying, applied, verified, failed, rolled-back ...
    reason: str = ""
    diffs: list[str] = field(default_factory=list)
    commands_planned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "target": self.target, "params": self.params, "state": self.state,
                "reason": self.reason, "diffs": self.diffs, "commands_planned": self.commands_planned}


def encoded(record: dict[str, Any], parts: dict[int, tuple[dict[str, Any], bytes]]) -> bytes:
    """record as json.dumps(record, default=str) writes it, and a newline; each step's JSON taken from parts (by the
    step's id(), beside the step itself, so that the id is still its step's) where it is, else put there."""
    steps = record.get("steps")
    head = json.dumps({**record, "steps": _HOLE}, default=str).encode() if isinstance(steps, list) else b""
    if not isinstance(steps, list) or head.count(_HOLE_JSON) != 1:  # or a value holds the hole's text: all at once
        return json.dumps(record, default=str).encode() + b"\n"
    texts = []
    for step in steps:
        part = parts.get(id(step))
        if part is None or part[0] is not step:
            part = parts[id(step)] = (step, json.dumps(step, default=str).encode())
        texts.append(part[1])
    return head.replace(_HOLE_JSON, b"[%s]" % b", ".join(texts)) + b"\n"


def read(path: Path) -> Any:
    """The record a journal file of ours holds (newest); raises as private.read_bytes and newest do."""
    return newest(private.read_bytes(path))


def newest(raw: bytes) -> Any:
    """The record a journal file's bytes hold (see the module's doc): its last line ended by its newline, which must
    be a JSON object (jsonin.last_object)."""
    return jsonin.last_object(raw)


class KeptFile:
    """A journal's file on this machine, as its one writer keeps it (see the module's doc). While the run runs, each
    record is appended to the file this writer wrote (a line each: read() takes the last whole one), which costs a
    write and a sync where a new file, its rename and the folder's sync cost three times the CPU. Otherwise, and at
    the run's end, the file is replaced by the record alone (private.write_bytes, through scratch, this writer's
    temporary name), as it is once the lines appended would pass APPENDED times the record: a long run's file stays
    that small. A failed append is written whole next time: a line it left cut short is never continued. A synced
    record is on disk under path when store returns: a file renamed in unsynced (the run's first record) has its
    folder synced with the next synced record appended. A record written whole over an earlier one is always
    synced, whatever sync says: the records it replaces were on disk."""

    def __init__(self, path: Path, scratch: str) -> None:
        self.path, self.scratch = path, scratch
        self._appends = False  # path holds a record this writer wrote whole
        self._appended = 0  # bytes appended since then
        self._named = True  # path's name is on disk: its folder synced since the file was renamed in

    def store(self, data: bytes, *, running: bool, sync: bool) -> None:
        appends, self._appends = self._appends, False
        if appends and running and self._appended + len(data) <= APPENDED * len(data):
            private.append_bytes(self.path, data, sync=sync)
            self._appended += len(data)
            if sync and not self._named:
                private.sync_folder(self.path.parent)
                self._named = True
        else:
            # over records already there (synced ones among them: an earlier writer's, or this one's past APPENDED),
            # synced first: a rename of an unsynced copy over them may leave an empty file after a power cut
            # (ext4's auto_da_alloc flushes such a copy; XFS and POSIX promise nothing)
            sync = sync or os.path.lexists(self.path)
            private.write_bytes(self.path, data, sync=sync, scratch=self.scratch)
            self._appended, self._named = 0, sync
        self._appends = running


#: What stands for the steps in the record's head as encoded() writes it: text no record holds (it is checked).
_HOLE: Final = f"\x00steps {secrets.token_hex(8)}"
_HOLE_JSON: Final = json.dumps(_HOLE).encode()


@record(frozen=True)
class RunRecord:
    """The head of a journal as read back: checked, so that rollback never acts on a record it misreads."""

    version: int
    run_id: str
    host: str
    playbook: str
    outcome: str
    steps: tuple[dict[str, Any], ...]

    @classmethod
    def parse(cls, record: Any, where: str) -> RunRecord:
        if not isinstance(record, dict):
            raise InputError(f"{where}: not a remediate run journal (not a JSON object)")
        version = record.get("version")
        if version != VERSION:
            raise InputError(f"{where}: run journal version {version!r}; this remediate reads version {VERSION}",
                             hint="roll it back with the remediate version that wrote it" if isinstance(version, int)
                             and version > VERSION else "this file was not written by remediate")
        wanted = {"run_id": str, "host": str, "playbook": str, "outcome": str, "steps": list}
        for key, kind in wanted.items():
            if not isinstance(record.get(key), kind):
                raise InputError(f"{where}: the run journal's {key!r} is missing or not a {kind.__name__}",
                                 hint="the file is damaged; the host's copy is beside the changed file, in .remediate/")
        for index, step in enumerate(record["steps"]):
            if not isinstance(step, dict) or not all(isinstance(step.get(k), str) for k in ("id", "kind", "target", "state")):
                raise InputError(f"{where}: step {index} of the run journal lacks id, kind, target or state")
            _check_undo_fields(step, f"{where}: step {step['id']!r} of the run journal")
        return cls(version, record["run_id"], record["host"], record["playbook"], record["outcome"],
                   tuple(record["steps"]))


#: A file a step changed, as its journal entry must give it for the undo to act on it (kinds/file.py restore_file):
#: each key, and the types its value may have.
_FILE_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "path": (str,), "existed": (bool,), "before_sha256": (str, type(None)), "after_sha256": (str, type(None)),
    "backup": (str, type(None)), "mode": (str, type(None)), "owner": (str, type(None))}


def _check_undo_fields(step: dict[str, Any], where: str) -> None:
    """What the undo reads of a step, checked before anything is undone (InputError): a damaged or crafted record is
    refused whole, never half undone. Its files: a list of entries of _FILE_FIELDS, a file that existed with its
    before-image (backup and sha256) and an octal mode; its folders: a list of paths."""
    files, folders = step.get("files"), step.get("folders")
    hint = "the record is damaged: nothing was undone; look at it before acting on that run"
    if files is not None and not isinstance(files, list):
        raise InputError(f"{where}: its files are not a list", hint=hint)
    for n, entry in enumerate(files or []):
        if not isinstance(entry, dict):
            raise InputError(f"{where}: its file entry {n} is not an object", hint=hint)
        bad = [k for k, kinds in _FILE_FIELDS.items() if not isinstance(entry.get(k), kinds)]
        if not bad and entry["existed"] and not (isinstance(entry["backup"], str) and isinstance(entry["before_sha256"], str)
                                                 and isinstance(entry["mode"], str) and _octal(entry["mode"])):
            bad = ["backup, before_sha256 and mode (it existed before the run)"]
        if bad:
            raise InputError(f"{where}: its file entry {n} has no valid {', '.join(bad)}", hint=hint)
    if folders is not None and not (isinstance(folders, list) and all(isinstance(f, str) for f in folders)):
        raise InputError(f"{where}: its folders are not a list of paths", hint=hint)


def _octal(mode: str) -> bool:
    return mode.isascii() and mode.isdigit() and all(c in "01234567" for c in mode) and len(mode) <= 6


def summary(record: Any) -> dict[str, Any] | None:
    """A journal's row in the run index (runindex.Summarise): what `runs` shows, and the heads the questions below look up (the host's
    newest run that may have changed something; its newest that applied, per playbook and any). None: not a
    journal, as history() skips it."""
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str) \
            or not isinstance(record.get("steps"), list):
        return None
    steps = [s for s in record["steps"] if isinstance(s, dict)]
    host, outcome, book = record.get("host"), record.get("outcome"), record.get("playbook")
    heads = []
    if isinstance(host, str) and not (isinstance(outcome, str) and outcome in NOTHING_CHANGED):
        heads.append(f"changed\x1f{host}\x1f")
    if outcome == "applied":
        heads += [f"applied-any\x1f{host}\x1f"] + ([f"applied\x1f{book}\x1f{host}\x1f"] if isinstance(book, str) else [])
    return {"run_id": record["run_id"], "started": record.get("started"), "finished": record.get("finished"),
            "operator": record.get("operator"), "host": host, "playbook": book, "outcome": outcome,
            "machine": record.get("machine"), "pid": record.get("pid"), "process": record.get("process"),
            "for": record.get("for"),
            "done": sum(s.get("state") in ("verified", "rolled-back") for s in steps), "total": len(record["steps"]),
            "undo": any(s.get("state") in UNDO_STATES for s in steps), "heads": heads}


def live_outcome(record: dict[str, Any]) -> str:
    """The outcome to show: a run still marked running is 'running' while its process lives, else 'interrupted';
    a run whose steps are not all undone is never shown as rolled back, whatever its record says."""
    undo = any(isinstance(s, dict) and s.get("state") in UNDO_STATES for s in record.get("steps") or [])
    return live(record.get("outcome"), undo, record.get("machine"), record.get("pid"), record.get("process"))


def live(outcome: Any, undo: bool, machine: Any, pid: Any, proc: Any = None) -> str:
    """The outcome to show (live_outcome), from the fields a row keeps (proc: the record's `process`)."""
    if outcome == "rolled-back" and undo:
        return "rollback-incomplete"
    if outcome != "running":
        return str(outcome)
    if machine == socket.gethostname():
        try:
            os.kill(int(pid or 0), 0)
        except (ProcessLookupError, ValueError):
            return "interrupted"
        except PermissionError:
            pass
        return "interrupted" if reused(pid, proc) else "running"
    return "interrupted"


def operator() -> str:
    """user@machine: the login name as getpass.getuser gives it (the environment's, read each time, else the password
    database's for this user id, looked up once a process: not again for every host's lock and journal)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # getpass.getuser's order
        user = os.environ.get(name)
        if user:
            return f"{user}@{socket.gethostname()}"
    uid = os.getuid()
    user = _users.get(uid)
    if user is None:
        try:
            user = _users[uid] = getpass.getuser()
        except (KeyError, OSError):  # kept only once found: a database that did not answer is asked again
            user = str(uid)
    return f"{user}@{socket.gethostname()}"


#: The password database's name for each user id, as this process found it.
_users: dict[int, str] = {}


def process(pid: int | None = None) -> str | None:
    """Which process a pid is, beyond its number (this process's when None), from Linux's /proc: this boot's id,
    the process's start time, and the pid and time namespaces it is seen from (start times and pids mean the same
    only within them). A pid reused after a reboot, or by a later process (a restarted container keeps its host
    name), has another. None where that cannot be read, or where /proc is not this process's own.

    This process's own, once read, is kept (per pid: a forked child reads its own): a lock and a journal of every
    host record it, and none of it changes while the process lives. A read that failed (no file descriptor left, a
    /proc of another namespace) is not kept: the next record tries again."""
    global _own
    if pid is None:
        own = _own
        if own is not None and own[0] == os.getpid():
            return own[1]
        found = _process(None)
        if found is not None:
            _own = (os.getpid(), found)
        return found
    return _process(pid)


#: (pid, process(None)) as this process read it.
_own: tuple[int, str] | None = None


def _process(pid: int | None) -> str | None:
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return None  # a /proc of another pid namespace: its pids are not ours
        boot = _boot_id()
        with open(f"/proc/{os.getpid() if pid is None else int(pid)}/stat", "rb") as f:
            stat = f.read()
        started = stat[stat.rindex(b")") + 2:].split()[19].decode("ascii")  # field 22, starttime
        spaces = "+".join(_namespace(kind) for kind in ("pid", "time"))
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return f"{boot}/{started}/{spaces}" if boot is not None else None


def _boot_id() -> str | None:
    """This boot's id (Linux), None where it cannot be read."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read().strip().decode("ascii")
    except (OSError, UnicodeDecodeError):
        return None


def _namespace(kind: str) -> str:
    try:
        return os.readlink(f"/proc/self/ns/{kind}")
    except OSError:
        return "-"  # no such namespace on this kernel (time: before 5.6)


def reused(pid: Any, recorded: Any) -> bool:
    """Whether the live process with this pid is not the one that wrote `recorded` (its process() then). True when
    the machine has booted since; or, seen from the same namespaces, when the pid's start time differs. A record
    without it, one made in other namespaces (another container of the same host name), or a pid that cannot be
    looked at (hidepid) is taken for its own: never judged gone on a guess."""
    if not isinstance(recorded, str) or recorded.count("/") != 2:
        return False
    boot, _, spaces = recorded.split("/")
    now_boot = _boot_id()
    if now_boot is None:
        return False
    if now_boot != boot:
        return True  # that process ended with the boot it ran in
    now = process(pid) if isinstance(pid, int) and pid > 0 else None
    return now is not None and now.split("/")[2] == spaces and now != recorded
