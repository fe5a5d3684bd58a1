"""The run record: written locally and on the host before every mutation, read back by rollback."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from remediate import private, redact
from remediate.errors import InputError, RemediateError

if TYPE_CHECKING:
    from remediate.transport import Transport

VERSION: Final = 1
# Step states whose mutation may have begun, and so must be undone on rollback.
# Step states whose mutation may have begun and is not undone yet: a failed or blocked undo stays pending, so a
# retried rollback undoes exactly what is left, until it succeeds or the operator skips it (rollback --skip).
UNDO_STATES: Final = frozenset({"applying", "applied", "verified", "failed", "rollback-failed", "rollback-blocked"})
ROLLBACKABLE: Final = frozenset({"applied", "running", "rollback-incomplete"})
NOTHING_CHANGED: Final = frozenset({"refused", "failed"})
#: The shortest run-id prefix --run accepts (the date and hour of the run).
MIN_PREFIX: Final = 11


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


#: A run id chosen by the caller for the next run started on this thread (chosen_run_id): serve's Temporal backend
#: names the run before its apply activity begins, so that a retried activity finds that run in the journal.
_CHOSEN: ContextVar[str | None] = ContextVar("remediate_chosen_run_id", default=None)


def new_run_id() -> str:
    chosen = _CHOSEN.get()
    if chosen is not None:
        return chosen
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@contextmanager
def chosen_run_id(run_id: str) -> Iterator[None]:
    """Within the block, the run started (one host's apply) gets `run_id` rather than a new one."""
    token = _CHOSEN.set(run_id)
    try:
        yield
    finally:
        _CHOSEN.reset(token)


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def state_home() -> Path:
    """$XDG_STATE_HOME/remediate (default ~/.local/state/remediate), private to the operator."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return private.folder(base / "remediate")


def runs_dir() -> Path:
    return private.folder(state_home() / "runs")


@dataclass
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


@dataclass(frozen=True)
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


@dataclass
class Journal:
    """One host's run record, persisted locally (0600) and, when attached, on the host itself."""

    record: dict[str, Any]
    path: Path
    remote: tuple[Transport, str] | None = None
    _steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    _failing: bool = False

    @classmethod
    def start(cls, *, run_id: str, host: str, address: str, playbook: str, playbook_path: str,
              variables: dict[str, Any], steps: list[StepRecord]) -> Journal:
        record = {
            "version": VERSION,
            "run_id": run_id,
            "operator": operator(),
            "machine": socket.gethostname(),
            "pid": os.getpid(),
            "host": host,
            "address": address,
            "playbook": playbook,
            "playbook_path": playbook_path,
            "vars": redact.without_secret_values(variables),
            "started": now(),
            "finished": None,
            "outcome": "running",
            "remote_journal": None,
            "steps": [step.as_dict() for step in steps],
        }
        return cls(record, runs_dir() / f"{run_id}.{host}.json")

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            record = json.loads(private.read_bytes(path))
        except (OSError, ValueError, RecursionError) as e:
            raise InputError(f"{path}: cannot read the run journal: {e}") from None
        RunRecord.parse(record, str(path))
        return cls(record, path)

    def __post_init__(self) -> None:
        self._steps = {s["id"]: s for s in self.record["steps"]}

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def step(self, step_id: str) -> dict[str, Any]:
        return self._steps[step_id]

    def attach(self, transport: Transport, path: str) -> None:
        """Keep a copy on the host from now on."""
        self.remote = (transport, path)
        self.record["remote_journal"] = f"{transport.name}:{path}"

    def update_step(self, step_id: str, *, durable: bool = False, later: bool = False, via: Transport | None = None,
                    **fields: Any) -> None:
        """Record fields of a step, exactly as given (rollback replays them). Saved locally at once; on the host
        too when durable, which ctx.record asks for before every mutation, so the host's copy never lags one.

        later: what happened after a mutation (applied, verified), which undo does not need: kept in memory and
        saved with the next record that must be (the next step's, or the run's end).
        via: the transport the mutation will run on. When it is the one holding the host's copy, that copy is
        written by its next command, in the same round trip as the mutation, and before it."""
        self._steps[step_id].update(fields)
        if later and not durable:
            return
        if not (durable and self._ship(via)):
            self.save(remote=durable)

    def _ship(self, via: Transport | None, *, sync: bool = False, last: bool = False) -> bool:
        """Leave the host's copy to via's next command (see Transport.run), when via holds it; saved locally now.

        The host's copy is the durable one before the mutation (the command fsyncs it first); the local copy is
        written now and flushed to disk at the run's end, or whenever it is the only copy. last: the run's last
        record, shipped even while rolling back (the lock's release carries it: see finish)."""
        if via is None or self.remote is None or self.remote[0] is not via or (self._failing and not last):
            return False
        private.write_bytes(self.path, self._bytes(), sync=sync)
        path = self.remote[1]
        via.pending_journal = lambda: (path, self._bytes())  # the newest record, when the command goes
        return True

    def _bytes(self) -> bytes:
        # One line, by the C encoder (indent= would take the pure-Python one: a tenth of a fleet's CPU).
        return json.dumps(self.record, sort_keys=False, default=str).encode() + b"\n"

    def finish(self, outcome: str, *, via: Transport | None = None) -> None:
        """via: the transport of the run's last command (the lock's release), which then carries the host's copy: a
        leased lock's release writes it only while the lock is still the run's (Undo.fenced)."""
        self.record["outcome"] = outcome
        self.record["finished"] = now()
        if not self._ship(via, sync=True, last=True):
            self.save()

    def save(self, *, remote: bool = True) -> None:
        # Flushed to disk when the host's copy is written here too, and at the end.
        data = self._bytes()
        private.write_bytes(self.path, data, sync=remote or self.record["outcome"] != "running")
        if remote and self.remote is not None:
            transport, path = self.remote
            transport.pending_journal = None  # this write carries the newest record
            try:
                transport.write(path, data, mode=0o600)
            except RemediateError:
                if self.record["outcome"] == "running" and not self._failing:
                    raise  # before a mutation: better not to mutate than to mutate unrecorded
                self.remote = None  # rolling back: the local record carries on

    def failing(self) -> None:
        """From now on (rollback), a lost host copy must not stop the local record."""
        self._failing = True


def history(host: str | None = None) -> list[dict[str, Any]]:
    """Every recorded run, newest first, optionally for one host."""
    records = []
    for path in runs_dir().glob("*.json"):
        try:
            record = json.loads(private.read_bytes(path))
        except (OSError, ValueError, RecursionError, InputError):
            continue  # not ours: another user's file, a link, or not JSON
        if not isinstance(record, dict) or not isinstance(record.get("run_id"), str) \
                or not isinstance(record.get("steps"), list):
            continue  # not one of ours
        if host is None or record.get("host") == host:
            record["_path"] = str(path)
            records.append(record)
    return sorted(records, key=lambda r: (r.get("started") or "", r.get("run_id") or ""), reverse=True)


def find(host: str, run_id: str | None) -> Journal:
    """The named run on host, or else its last run that changed something, if that one can be rolled back.

    Never an older run by default: a second `rollback` must not quietly undo yesterday's work."""
    if run_id is not None:
        return named(host, run_id)
    for record in history(host):
        outcome = record.get("outcome")
        if outcome in NOTHING_CHANGED:
            continue
        if outcome in ROLLBACKABLE:
            return Journal.load(Path(record["_path"]))
        raise InputError(f"{host}: the last run that changed something, {record['run_id']}, is {outcome}; "
                         "nothing to roll back", hint="name an older run with --run ID (`remediate runs` lists them)")
    raise InputError(f"{host}: no run that can be rolled back in {runs_dir()}", hint="`remediate runs --host HOST` lists the recorded runs")


def named(host: str | None, run_id: str) -> Journal:
    """The run with exactly this id, or the one run whose id starts with it (at least MIN_PREFIX characters)."""
    records = history(host)
    exact = [r for r in records if r.get("run_id") == run_id]
    if exact:
        return Journal.load(Path(exact[0]["_path"]))
    if len(run_id) < MIN_PREFIX:
        raise InputError(f"--run {run_id!r}: give a whole run id, or at least {MIN_PREFIX} characters of one",
                         hint="`remediate runs --host HOST` lists them")
    matches = [r for r in records if str(r.get("run_id", "")).startswith(run_id)]
    if len(matches) > 1:
        raise InputError(f"--run {run_id!r} matches {len(matches)} runs{' on ' + host if host else ''}: "
                         f"{', '.join(str(r['run_id']) for r in matches[:5])}", hint="give more of the run id")
    if not matches:
        raise InputError(f"{host + ': ' if host else ''}no run {run_id} in {runs_dir()}",
                         hint="`remediate runs` lists the recorded runs")
    return Journal.load(Path(matches[0]["_path"]))


def live_outcome(record: dict[str, Any]) -> str:
    """The outcome to show: a run still marked running is 'running' while its process lives, else 'interrupted';
    a run whose steps are not all undone is never shown as rolled back, whatever its record says."""
    if record.get("outcome") == "rolled-back" and any(
            isinstance(s, dict) and s.get("state") in UNDO_STATES for s in record.get("steps") or []):
        return "rollback-incomplete"
    if record.get("outcome") != "running":
        return str(record.get("outcome"))
    if record.get("machine") == socket.gethostname():
        try:
            os.kill(int(record.get("pid") or 0), 0)
            return "running"
        except (ProcessLookupError, ValueError):
            return "interrupted"
        except PermissionError:
            return "running"
    return "interrupted"


def summaries(host: str | None = None) -> list[dict[str, object]]:
    """One row per recorded run, newest first: id, time, operator, host, playbook, steps done, outcome."""
    rows = []
    for record in history(host):
        steps = record.get("steps") or []
        done = sum(s.get("state") in ("verified", "rolled-back") for s in steps)
        rows.append({"run_id": record["run_id"], "started": record.get("started"), "operator": record.get("operator"),
                     "host": record.get("host"), "playbook": record.get("playbook"), "steps": f"{done}/{len(steps)}",
                     "outcome": live_outcome(record)})
    return rows
