"""Incidents in SQLite: one row per alert firing (fingerprint + startsAt), its state, and an audit log of every
decision. Every write is committed before serve answers or acts, so a SIGKILL loses nothing it reported."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from remediate.errors import RemediateError
from remediate.serve.models import FINAL, State

__all__ = ["FINAL", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "STATES", "Incident", "Store", "iso"]

LOG = logging.getLogger(__name__)

#: Every state, in the order the page counts them.
STATES: Final = tuple(State)
#: What rate limits do not count: incidents that never were, nor will be, a run.
NOT_RUN: Final = (State.IGNORED, State.DENIED)
Echo = Callable[[int, str, str], None]

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT,
    host TEXT,
    rule TEXT,
    playbook TEXT,
    labels TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    plan_diff TEXT,
    plans TEXT,
    plan TEXT,
    run_id TEXT,
    approved_by TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    deadline REAL,
    alert_resolved REAL,
    approvals TEXT,
    requested_by TEXT,
    silence_id TEXT,
    planned_at REAL,
    evidence TEXT,
    UNIQUE (fingerprint, starts_at)
);
CREATE TABLE IF NOT EXISTS history (
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    at REAL NOT NULL,
    what TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS history_incident ON history (incident_id);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT);
"""
# `plans` held the per-host plans alone (serve before the plan was frozen whole): read never, written never. An
# incident that has only that is planned again. `plan` is the whole saved plan document (planfile.py).
#: The schema's version, kept in SQLite's user_version; MIGRATIONS[n] takes a database from version n to n + 1.
SCHEMA_VERSION: Final = 2
MIGRATIONS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("each incident keeps its whole saved plan (playbook text, variables, identity)",
     ("ALTER TABLE incidents ADD COLUMN plan TEXT",)),
    ("each incident keeps its approvals (verified identities), who asked for it, its Alertmanager silence, when its "
     "plan was made and the evidence of its resolution",
     tuple(f"ALTER TABLE incidents ADD COLUMN {c}" for c in
           ("approvals TEXT", "requested_by TEXT", "silence_id TEXT", "planned_at REAL", "evidence TEXT"))),
)


@dataclass
class Incident:
    id: int
    fingerprint: str
    starts_at: str
    alertname: str | None
    host: str | None
    rule: str | None
    playbook: str | None
    labels: dict[str, str]
    state: State
    reason: str | None
    plan_diff: str | None
    #: The saved plan document (planfile.py): the playbook's text, the variables (secrets masked), the selection and
    #: the host's plan. What an approval approves, and what is applied: never the playbook file as it is later.
    plan: dict[str, Any] | None
    run_id: str | None
    approved_by: str | None
    created: float
    updated: float
    started: float | None
    deadline: float | None
    alert_resolved: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    #: Each approval: {"by", "via", "at", "plan"} (a verified identity, when, and the plan identity approved).
    approvals: list[dict[str, Any]] = field(default_factory=list)
    #: The person who asked for this run (a manual trigger or a re-plan), who may not approve it; None for an alert's.
    requested_by: str | None = None
    #: The Alertmanager silence serve holds while the fix runs.
    silence_id: str | None = None
    #: When the plan now held was made (what "applying exactly the plan of ..." names).
    planned_at: float | None = None
    #: How the incident ended, from each source: {"webhook": ..., "api": ..., "verify": ...}.
    evidence: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """The JSON the API returns: the fields docs/serve.md promises."""
        return {"id": self.id, "state": self.state, "reason": self.reason, "fingerprint": self.fingerprint,
                "starts_at": self.starts_at, "alertname": self.alertname, "host": self.host, "rule": self.rule,
                "playbook": self.playbook, "plan_diff": self.plan_diff, "run_id": self.run_id,
                "approved_by": self.approved_by, "labels": self.labels, "created": iso(self.created),
                "updated": iso(self.updated), "deadline": iso(self.deadline) if self.deadline else None,
                "history": [{"at": iso(h["at"]), "what": h["what"], "detail": h["detail"]} for h in self.history],
                "approvals": [{**a, "at": iso(a["at"])} if isinstance(a.get("at"), (int, float)) else a
                              for a in self.approvals],
                "requested_by": self.requested_by, "silence_id": self.silence_id,
                "planned_at": iso(self.planned_at) if self.planned_at else None, "evidence": self.evidence}


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class Store:
    """Thread-safe: one connection, one lock; WAL, and synchronous=FULL so a committed decision survives a SIGKILL.

    The folder is 0700 and the database 0600 before SQLite opens it: SQLite gives its -wal and -shm files the
    database's mode, so they are 0600 too, whatever the umask."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time, echo: Echo | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.chmod(0o700)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for made in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if made.exists():  # an older serve left them as its umask made them
                made.chmod(0o600)
        self.path = path
        self.clock = clock
        #: Told each decision as it is committed (a test's ear); every one is also logged at info, with its incident.
        self.echo: Echo = echo or (lambda incident_id, what, detail: None)
        #: Told each committed decision after `echo`, outside the store's lock, in the committing thread: what acts on
        #: an incident's moves (chat messages, Alertmanager silences). One that raises is logged and the rest go on.
        self.watchers: list[Echo] = []
        self._lock = threading.RLock()
        #: Commits made (each one fsync): what a batch saves, for tests to count.
        self.commits = 0
        #: While a batch is open: the thread that holds it, and the decisions it will tell once committed.
        self._batch: tuple[int, list[tuple[int, str, str, State | None]]] | None = None
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def _migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION, one recorded migration at a time, in one transaction; refuse one a
        newer serve made. A new database gets the schema whole."""
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RemediateError(f"{self.path}: made by a newer remediate serve (schema {version}; this one reads "
                                 f"{SCHEMA_VERSION})", hint="run that serve, or give this one another --state-dir")
        fresh = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'incidents'").fetchone() is None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if fresh:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    self._db.execute(statement)
            else:
                have = {r["name"] for r in self._db.execute("PRAGMA table_info(incidents)")}
                for number, (why, statements) in enumerate(MIGRATIONS[version:], start=version):
                    for statement in statements:
                        column = statement.split("ADD COLUMN ")[1].split()[0] if "ADD COLUMN" in statement else None
                        if column is None or column not in have:  # an unversioned database may have it already
                            self._db.execute(statement)
                    LOG.info("%s: schema %d -> %d: %s", self.path, number, number + 1, why)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- incidents -------------------------------------------------------------------------------------------------

    def create(self, *, fingerprint: str, starts_at: str, alertname: str | None, labels: dict[str, str],
               host: str | None, rule: str | None, playbook: str | None, state: State, reason: str | None,
               what: str, detail: str) -> tuple[Incident, bool]:
        """A new incident, or the one this firing already has (created False): the dedupe key is unique."""
        now = self.clock()
        with self._writing():
            row = self._db.execute("SELECT id FROM incidents WHERE fingerprint=? AND starts_at=?",
                                   (fingerprint, starts_at)).fetchone()
            if row is None:
                cursor = self._db.execute(
                    "INSERT INTO incidents (fingerprint, starts_at, alertname, host, rule, playbook, labels, state, "
                    "reason, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (fingerprint, starts_at, alertname, host, rule, playbook, json.dumps(labels, sort_keys=True),
                     state.value, reason, now, now))
                incident_id = int(cursor.lastrowid or 0)
                self._db.execute("INSERT INTO history VALUES (?,?,?,?)", (incident_id, now, what, detail))
        if row is not None:
            return self.get(row["id"]), False
        self._said(incident_id, what, detail, state)
        return self.get(incident_id), True

    def get(self, incident_id: int) -> Incident:
        with self._lock:
            row = self._db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone()
            if row is None:
                raise KeyError(incident_id)
            history = self._db.execute("SELECT at, what, detail FROM history WHERE incident_id=? ORDER BY rowid",
                                       (incident_id,)).fetchall()
        return _incident(row, [dict(h) for h in history])

    def find(self, fingerprint: str, starts_at: str) -> Incident | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM incidents WHERE fingerprint=? AND starts_at=?",
                                   (fingerprint, starts_at)).fetchone()
        return self.get(row["id"]) if row else None

    def known(self, fingerprint: str, starts_at: str) -> tuple[int, State] | None:
        """The incident of this firing, if any: its id and state alone (a repeat needs no history read)."""
        with self._lock:
            row = self._db.execute("SELECT id, state FROM incidents WHERE fingerprint=? AND starts_at=?",
                                   (fingerprint, starts_at)).fetchone()
        return (int(row["id"]), State(row["state"])) if row else None

    def all(self, states: Iterable[State | str] | None = None) -> list[Incident]:
        """Newest first."""
        with self._lock:
            if states is None:
                ids = [r["id"] for r in self._db.execute("SELECT id FROM incidents ORDER BY id DESC")]
            else:
                wanted = [State(s).value for s in states]
                ids = [r["id"] for r in self._db.execute(
                    f"SELECT id FROM incidents WHERE state IN ({','.join('?' * len(wanted))}) ORDER BY id DESC", wanted)]
            return [self.get(i) for i in ids]

    def transition(self, incident_id: int, allowed: Iterable[State | str], to: State | str, what: str, detail: str = "",
                   **columns: Any) -> Incident | None:
        """Move an incident from one of `allowed` to `to`, atomically, logging why; None if it was in none of them
        (so two approvals, or an approval racing a deny, act once). A state given as its value is checked (ValueError)."""
        wanted = [State(s).value for s in allowed]
        state = State(to)
        now = self.clock()
        sets = {"state": state.value, "updated": now, **{k: _column(v) for k, v in columns.items()}}
        with self._writing():
            moved = self._db.execute(
                f"UPDATE incidents SET {', '.join(f'{k}=?' for k in sets)} WHERE id=? AND state IN "
                f"({','.join('?' * len(wanted))})", [*sets.values(), incident_id, *wanted]).rowcount == 1
            if moved:  # else nothing was written: the transaction commits empty
                self._db.execute("INSERT INTO history VALUES (?,?,?,?)", (incident_id, now, what, detail))
        if not moved:
            return None
        self._said(incident_id, what if what == state.said else f"{what} -> {state.value}", detail)
        return self.get(incident_id)

    def update(self, incident_id: int, what: str, detail: str = "", **columns: Any) -> None:
        """Set columns without a state change, logging why."""
        now = self.clock()
        sets = {"updated": now, **{k: _column(v) for k, v in columns.items()}}
        with self._writing():
            self._db.execute(f"UPDATE incidents SET {', '.join(f'{k}=?' for k in sets)} WHERE id=?",
                             [*sets.values(), incident_id])
            self._db.execute("INSERT INTO history VALUES (?,?,?,?)", (incident_id, now, what, detail))
        self._said(incident_id, what, detail)

    def log(self, incident_id: int, what: str, detail: str = "") -> None:
        with self._writing():
            self._db.execute("INSERT INTO history VALUES (?,?,?,?)", (incident_id, self.clock(), what, detail))
        self._said(incident_id, what, detail)

    # --- transactions ----------------------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write of this thread inside is one transaction: committed (one fsync) when the block ends, rolled
        back whole when it raises. The decisions are told (logged, `echo`, watchers) after the commit, outside the
        lock; other threads' reads and writes wait for it. Nested, the inner one is part of the outer."""
        with self._lock:
            if self._batch is not None:
                yield
                return
            told: list[tuple[int, str, str, State | None]] = []
            with self._writing():  # one transaction: committed as the block ends, rolled back whole if it raises
                self._batch = (threading.get_ident(), told)
                try:
                    yield
                finally:
                    self._batch = None
        for said in told:
            self._said(*said)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write's transaction, under the lock; inside a batch, part of the batch's."""
        with self._lock:
            if self._batch is not None:
                yield
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
                self.commits += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _said(self, incident_id: int, what: str, detail: str, state: State | None = None) -> None:
        """A committed decision, to the log (info, with its incident and a new incident's state: serve's stderr shows
        it) and to `echo`; inside this thread's batch, once the batch has committed."""
        batch = self._batch
        if batch is not None and batch[0] == threading.get_ident():
            batch[1].append((incident_id, what, detail, state))
            return
        LOG.info("incident %d: %s%s%s", incident_id, what, f" -> {state.value}" if state else "",
                 f": {detail}" if detail else "", extra={"incident": incident_id})
        self.echo(incident_id, what, detail)
        for watcher in list(self.watchers):
            try:
                watcher(incident_id, what, detail)
            except Exception:  # a watcher's bug must not undo or hide the decision, which is committed
                LOG.exception("incident %d: a watcher failed on %r", incident_id, what, extra={"incident": incident_id})

    def runs_since(self, since: float, *, rule: str | None = None, host: str | None = None) -> int:
        """Incidents that were (or will be, once approved) a run, created since `since`: what rate limits count."""
        query = f"SELECT COUNT(*) FROM incidents WHERE created >= ? AND state NOT IN ({','.join('?' * len(NOT_RUN))})"
        args: list[Any] = [since, *(s.value for s in NOT_RUN)]
        if rule is not None:
            query, args = query + " AND rule=?", [*args, rule]
        if host is not None:
            query, args = query + " AND host=?", [*args, host]
        with self._lock:
            return int(self._db.execute(query, args).fetchone()[0])

    def counts(self) -> dict[State, int]:
        with self._lock:
            found = {r[0]: r[1] for r in self._db.execute("SELECT state, COUNT(*) FROM incidents GROUP BY state")}
        return {state: int(found.get(state, 0)) for state in STATES}

    # --- settings --------------------------------------------------------------------------------------------------

    def setting(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return row["value"] if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                             (key, value))


def _column(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _incident(row: sqlite3.Row, history: list[dict[str, Any]]) -> Incident:
    data = dict(row)
    data["labels"] = json.loads(data["labels"])
    data.pop("plans", None)  # an older serve's partial plan: never applied (the incident is planned again)
    data["plan"] = json.loads(data["plan"]) if data["plan"] else None
    data["approvals"] = json.loads(data["approvals"]) if data.get("approvals") else []
    data["evidence"] = json.loads(data["evidence"]) if data.get("evidence") else None
    data["state"] = State(data["state"])
    return Incident(**data, history=history)
