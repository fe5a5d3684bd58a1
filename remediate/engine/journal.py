"""The run record: written locally and on the host before every mutation, read back by rollback."""

from __future__ import annotations

import itertools
import os
import posixpath
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from remediate import private, redact
from remediate.engine import runindex, runrecord
from remediate.engine.runrecord import APPENDED as APPENDED
from remediate.engine.runrecord import NOTHING_CHANGED as NOTHING_CHANGED
from remediate.engine.runrecord import ROLLBACKABLE as ROLLBACKABLE
from remediate.engine.runrecord import UNDO_STATES as UNDO_STATES
from remediate.engine.runrecord import VERSION as VERSION
from remediate.engine.runrecord import RunRecord as RunRecord
from remediate.engine.runrecord import StepRecord as StepRecord
from remediate.engine.runrecord import encoded, live, process, summary
from remediate.engine.runrecord import live_outcome as live_outcome
from remediate.engine.runrecord import operator as operator
from remediate.errors import InputError, RemediateError, RunFolderError
from remediate.records import record

if TYPE_CHECKING:
    from remediate.transport import Transport

T = TypeVar("T")
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


#: Who each run about to start is for (attributed), by run id: the run's threads need not be the caller's.
_FOR: dict[str, dict[str, Any]] = {}
_FOR_GUARD = threading.Lock()


@contextmanager
def attributed(run_ids: Iterable[str], attribution: Mapping[str, Any] | None) -> Iterator[None]:
    """Within the block, the journal each of these runs starts records `for`: who the run is for (serve: its
    incident, the verified approvers, who asked for it, the incident's URL). None: nothing is recorded."""
    ids = list(run_ids) if attribution is not None else []
    with _FOR_GUARD:
        _FOR.update({run_id: dict(attribution or {}) for run_id in ids})
    try:
        yield
    finally:
        with _FOR_GUARD:
            for run_id in ids:
                _FOR.pop(run_id, None)


def state_home() -> Path:
    """$XDG_STATE_HOME/remediate (private.state_base: ~/.local/state), private to the operator."""
    base = private.state_base()
    return private.folder(base / "remediate")


def runs_dir() -> Path:
    return private.folder(state_home() / "runs")


@record
class Journal:
    """One host's run record, persisted locally (0600) and, when attached, on the host itself."""

    record: dict[str, Any]
    path: Path
    remote: tuple[Transport, str] | None = None
    _steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    _failing: bool = False
    _data: bytes | None = None  # the record serialised, until it changes: a shipped record's copies share it
    #: Each step's JSON (runrecord.encoded), until update_step changes that step: nothing else changes one.
    _parts: dict[int, tuple[dict[str, Any], bytes]] = field(default_factory=dict)
    _file: runrecord.KeptFile = field(init=False, repr=False, compare=False)  # path, as this writer writes it
    _begun: bool = False  # what begin recorded is not on disk yet

    @classmethod
    def start(cls, *, run_id: str, host: str, address: str, playbook: str, playbook_path: str,
              variables: dict[str, Any], steps: list[StepRecord]) -> Journal:
        record = {
            "version": VERSION, "run_id": run_id,
            "operator": operator(), "machine": socket.gethostname(), "pid": os.getpid(), "process": process(),
            "host": host, "address": address, "playbook": playbook, "playbook_path": playbook_path,
            "vars": redact.without_secret_values(variables),
            "started": now(), "finished": None, "outcome": "running", "remote_journal": None,
            "steps": [step.as_dict() for step in steps],
        }
        with _FOR_GUARD:
            if run_id in _FOR:
                record["for"] = _FOR[run_id]
        return cls(record, runs_dir() / f"{run_id}.{host}.json")

    @classmethod
    def load(cls, path: Path) -> Journal:
        try:
            record = runrecord.read(path)
        except (OSError, ValueError, RecursionError) as e:
            raise InputError(f"{path}: cannot read the run journal: {e}") from None
        RunRecord.parse(record, str(path))
        return cls(record, path)

    def __post_init__(self) -> None:
        self._steps = {s["id"]: s for s in self.record["steps"]}
        self._file = runrecord.KeptFile(self.path, f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}")

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    def step(self, step_id: str) -> dict[str, Any]:
        return self._steps[step_id]

    def attach(self, transport: Transport, path: str) -> None:
        """Keep a copy on the host from now on."""
        self.remote = (transport, path)
        self.record["remote_journal"] = f"{transport.name}:{path}"
        self._data = None

    def update_step(self, step_id: str, *, durable: bool = False, later: bool = False, via: Transport | None = None,
                    **fields: Any) -> None:
        """Record fields of a step, exactly as given (rollback replays them). Saved locally at once; on the host
        too when durable, which ctx.record asks for before every mutation, so the host's copy never lags one.

        later: what happened after a mutation (applied, verified), which undo does not need: kept in memory and
        saved with the next record that must be (the next step's, or the run's end).
        via: the transport the mutation will run on. When it is the one holding the host's copy, that copy is
        written by its next command, in the same round trip as the mutation, and before it."""
        self._steps[step_id].update(fields)
        self._parts.pop(id(self._steps[step_id]), None)  # this step's JSON, and so the record's, is written anew
        self._data = None
        if later and not durable:
            return
        if not (durable and self._ship(via)):
            self.save(remote=durable)

    def begin(self, step_id: str, **fields: Any) -> None:
        """A step's mutation begins (applying): saved with its first record, or before_command, whichever comes first.
        Until then the host is as it was, and the journal one a kill before this leaves: a local write a step fewer."""
        self.update_step(step_id, later=True, **fields)
        self._begun = True

    def before_command(self) -> None:
        """Called before each command on the run's thread (transport.BEFORE_COMMAND): what begin left, saved."""
        if self._begun:
            self.save(remote=False)

    def _ship(self, via: Transport | None, *, last: bool = False) -> bool:
        """Leave the host's copy to via's next command (see Transport.run), when via holds it; saved locally now.

        Both copies are on disk before the mutation: the host's, by the command before it runs; the local one here
        (rollback reads it, and writes it back to the host). last: the run's last record, shipped even while
        rolling back (the lock's release carries it: see finish)."""
        if via is None or self.remote is None or self.remote[0] is not via or (self._failing and not last):
            return False
        self._file.store(self._bytes(), running=self.record["outcome"] == "running", sync=True)
        self._begun = False
        path = self.remote[1]
        via.pending_journal = lambda: (path, self._bytes())  # the newest record, when the command goes
        return True

    def _bytes(self) -> bytes:  # one line, by the C encoder (indent= takes the pure-Python one), once per change
        if self._data is None:
            self._data = encoded(self.record, self._parts)
        return self._data

    def finish(self, outcome: str, *, via: Transport | None = None) -> None:
        """via: the transport of the run's last command (the lock's release), which then carries the host's copy: a
        leased lock's release writes it only while the lock is still the run's (Undo.fenced)."""
        if self.remote is not None and self.remote[0].pending_folder == posixpath.dirname(self.remote[1]):
            self.detach()  # none of its records reached the host: its folder there is not made for the end alone
        self.record["outcome"] = outcome
        self.record["finished"] = now()
        self._data = None
        if not self._ship(via, last=True):
            self.save()

    def save(self, *, remote: bool = True) -> None:
        data = self._bytes()  # flushed to disk when the host's copy is written here too, and at the end
        running = self.record["outcome"] == "running"
        self._file.store(data, running=running, sync=remote or not running)
        self._begun = False
        if remote and self.remote is not None:
            transport, path = self.remote
            transport.pending_journal = None  # this write carries the newest record
            try:
                transport.write(path, data, mode=0o600)
            except RemediateError:
                if self.record["outcome"] == "running" and not self._failing:
                    raise  # before a mutation: better not to mutate than to mutate unrecorded
                self.remote = None  # rolling back: the local record carries on

    def note(self, **fields: Any) -> None:  # more of how the run ended (lock_left), saved on this machine
        self.record.update(fields)
        self._data = None
        self.save(remote=False)

    def failing(self, error: BaseException | None = None) -> None:
        """From now on (rollback), a lost host copy must not stop the local record; after a refused run folder
        (RunFolderError) nothing more is written on the host, not even the run's end."""
        self._failing = True
        if isinstance(error, RunFolderError):
            self.detach()

    def detach(self) -> None:  # no copy on the host from now on: its folder there was refused, or never made
        if self.remote is not None:
            self.remote[0].pending_journal = self.remote[0].pending_folder = None
        self.remote, self._data = None, None
        self.record["remote_journal"] = None


def history(host: str | None = None) -> list[dict[str, Any]]:
    """Every recorded run, newest first, optionally for one host: every journal read (the truth the index caches;
    the questions plan, apply, `runs` and rollback ask go through index())."""
    records = []
    for path in runs_dir().glob("*.json"):
        try:
            record = runrecord.read(path)
        except (OSError, ValueError, RecursionError, InputError):
            continue  # not ours: another user's file, a link, or not JSON
        if not isinstance(record, dict) or not isinstance(record.get("run_id"), str) \
                or not isinstance(record.get("steps"), list):
            continue  # not one of ours
        if host is None or record.get("host") == host:
            record["_path"] = str(path)
            records.append(record)
    return sorted(records, key=lambda r: (r.get("started") or "", r.get("run_id") or ""), reverse=True)


def index(*, rebuild: bool = False) -> runindex.Index:
    """The run index (runindex.py), current with the journals in runs_dir(); close() it when done (ask() does)."""
    return runindex.current(runs_dir(), state_home() / runindex.NAME, summary, rebuild=rebuild)


def ask(question: Callable[[runindex.Index], T]) -> T:
    """question's answer from the run index; asked again of an index rebuilt from every journal when a row of it
    is damaged. question must read what it needs before it returns (the index is closed then)."""
    for rebuild in (False, True):
        found = index(rebuild=rebuild)
        try:
            return question(found)
        except runindex.Damaged:
            if rebuild:
                raise RemediateError(f"{state_home() / runindex.NAME}: the run index is damaged and could not "
                                     "be rebuilt", hint="remove it: it is rebuilt from the run journals") from None
        finally:
            found.close()
    raise AssertionError("unreachable")


def run_ids(host: str | None, start: str) -> list[str]:
    """The ids of the recorded runs (host's) that start with `start`, newest first."""
    return ask(lambda found: [str(r["run_id"]) for r in found.rows(host=host, needle=start)
                              if str(r["run_id"]).startswith(start)])


def count(host: str | None = None) -> int:
    """How many runs are recorded (on host)."""
    return ask(lambda found: found.count(host))


def _record_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """The journal a row names, read now (with _path, as history() gives it); None when it no longer says what the
    row says (edited in place since the index read it: its callers refresh the index, then ask the journals)."""
    path = runs_dir() / str(row["file"])
    try:
        record: dict[str, Any] = runrecord.read(path)
    except (OSError, ValueError, RecursionError, InputError):
        return None
    now_row = summary(record)
    if now_row is None or any(now_row[k] != row.get(k) for k in ("run_id", "host", "playbook", "outcome", "started")):
        return None
    record["_path"] = str(path)
    return record


def _heads(prefix: str, hosts: frozenset[str] | None = None) -> list[dict[str, Any]] | None:
    """The journals of the heads whose key starts with prefix (and ends with a host of hosts), read now; None when
    one no longer says what the index says, even once the index is rebuilt (the caller then reads every journal)."""
    for rebuild in (False, True):
        found = index(rebuild=rebuild)
        try:
            rows = list(found.heads(prefix, hosts).values())
        except runindex.Damaged:
            continue
        finally:
            found.close()
        records = [_record_of(row) for row in rows]
        if all(r is not None for r in records):
            return [r for r in records if r is not None]
    return None


def records(host: str | None, *, run_id: str | None = None, since: str | None = None) -> list[dict[str, Any]]:
    """The journals (host's) of run `run_id`, or of the runs started at `since` or later, newest first, as history()
    gives them but through the run index: only those are read, unless one disagrees with the index (then all are)."""
    def question(found: runindex.Index) -> list[dict[str, Any]]:
        rows = (r for r in found.rows(host=host, needle=run_id) if run_id in (None, r.get("run_id")))
        return list(itertools.takewhile(lambda r: since is None or str(r.get("started") or "") >= since, rows))
    read = [_record_of(row) for row in ask(question)]
    return [r for r in read if r is not None] if None not in read else [
        r for r in history(host) if run_id in (None, r.get("run_id")) and str(r.get("started") or "") >= (since or "")]


def newest_changed(host: str) -> dict[str, Any] | None:
    """The host's newest run whose outcome is not refused or failed (it may have changed something), or None."""
    found = _heads(f"changed\x1f{host}\x1f")  # each key ends with \x1f: this host alone
    if found is None:  # the journals say
        return next((r for r in history(host) if r.get("outcome") not in NOTHING_CHANGED), None)
    return found[0] if found else None


def newest_applied(playbook: str | None, hosts: frozenset[str] | None = None) -> dict[str, dict[str, Any]]:
    """For each host (of hosts, when given), the record of the newest run of this playbook (any, for None) that
    applied."""
    prefix = "applied-any\x1f" if playbook is None else f"applied\x1f{playbook}\x1f"
    found = _heads(prefix, hosts)
    if found is None:  # the journals say
        found = list({str(r.get("host")): r for r in reversed(history()) if r.get("outcome") == "applied"
                      and playbook in (None, r.get("playbook"))}.values())
    return {str(r.get("host")): r for r in found if hosts is None or str(r.get("host")) in hosts}


def find(host: str, run_id: str | None) -> Journal:
    """The named run on host, or else its last run that changed something, if that one can be rolled back.

    Never an older run by default: a second `rollback` must not quietly undo yesterday's work."""
    if run_id is not None:
        return named(host, run_id)
    record = newest_changed(host)
    if record is None:
        raise InputError(f"{host}: no run that can be rolled back in {runs_dir()}",
                         hint="`remediate runs --host HOST` lists the recorded runs")
    if record.get("outcome") in ROLLBACKABLE:
        return Journal.load(Path(record["_path"]))
    raise InputError(f"{host}: the last run that changed something, {record['run_id']}, is {record.get('outcome')}; "
                     "nothing to roll back", hint="name an older run with --run ID (`remediate runs` lists them)")


def named(host: str | None, run_id: str) -> Journal:
    """The run with exactly this id, or the one run whose id starts with it (at least MIN_PREFIX characters)."""
    rows = ask(lambda found: list(found.rows(host=host, needle=run_id)))
    exact = [r for r in rows if r.get("run_id") == run_id]
    if exact:
        return Journal.load(runs_dir() / exact[0]["file"])
    if len(run_id) < MIN_PREFIX:
        raise InputError(f"--run {run_id!r}: give a whole run id, or at least {MIN_PREFIX} characters of one",
                         hint="`remediate runs --host HOST` lists them")
    matches = [r for r in rows if str(r.get("run_id", "")).startswith(run_id)]
    if len(matches) > 1:
        raise InputError(f"--run {run_id!r} matches {len(matches)} runs{' on ' + host if host else ''}: "
                         f"{', '.join(str(r['run_id']) for r in matches[:5])}", hint="give more of the run id")
    if not matches:
        raise InputError(f"{host + ': ' if host else ''}no run {run_id} in {runs_dir()}",
                         hint="`remediate runs` lists the recorded runs")
    return Journal.load(runs_dir() / matches[0]["file"])


def summaries(host: str | None = None, limit: int | None = None) -> list[dict[str, object]]:
    """One row per recorded run, newest first (the newest `limit`): id, time, operator, host, playbook, steps done,
    outcome, and whom it was for (`for`: serve's attribution, or None)."""
    return [{"run_id": row["run_id"], "started": row["started"], "operator": row["operator"], "host": row["host"],
             "playbook": row["playbook"], "steps": f"{row['done']}/{row['total']}",
             "outcome": live(row["outcome"], row["undo"], row["machine"], row["pid"], row.get("process")), "for": row["for"]}
            for row in ask(lambda found: list(itertools.islice(found.rows(host=host), limit)))]
