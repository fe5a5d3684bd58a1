"""A retried attempt on another machine (#24), at the transport seam: it finds the run in the host's copy of its journal
(never in its own, which never saw it), waits while the run's lease is live, and once it lapses takes the lock over and
undoes the run; an unrelated run is refused meanwhile. The host's copy is checked before anything acts on it."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from remediate.engine import hostcopy, journal, lock, runrecord
from remediate.engine.context import TransportPool
from remediate.engine.runner import Runner
from remediate.errors import ConflictError, InputError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal import activities, takeover

from .test_lease_runner import BOOK, LOCK, LeaseFake, host_fake

H1 = Host(name="h1", address="127.0.0.1")


class Log:
    def __init__(self) -> None:
        self.log: list[list[str]] = []
        self.events: list[Any] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)


def cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LeaseFake, str, dict[str, Any]]:
    """Machine A (its own state home) applies a leased run and dies inside its second step: the host keeps its
    journal copy and its lock. Returns the host, the run id and A's lock document."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "machine-a"))
    fake = host_fake()

    def dies(stdin: bytes | None) -> tuple[int, str, str]:
        raise SystemExit("SIGKILL")  # nothing of A runs after this: no undo (the lock's release is put back below)

    fake.expect(["make-marker"], dies)
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    with lock.leased("wf-1/RUN", 10):
        run = Runner(playbook=playbook.load(book), pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    with journal.chosen_run_id("20261201T000000Z-abc123"):
        bound = run.bind(H1, {})
    run.run(bound, mode="apply")
    with pytest.raises(SystemExit):
        run.apply(bound)
    taken = fake.asked[0][1]
    fake.put(LOCK, json.dumps(taken))  # as a SIGKILL leaves it: held
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "machine-b"))
    monkeypatch.setattr(socket, "gethostname", lambda: "machine-b")
    return fake, bound.ctx.run_id, taken


def library(tmp_path: Path, fake: LeaseFake) -> LibraryRuns:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    return LibraryRuns(inventory, lambda opts, emit: (lambda host: fake), tmp_path)


def test_the_retry_waits_while_the_lease_lives_then_takes_over_and_undoes(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fake, run_id, _ = cut_off(tmp_path, monkeypatch)
    assert journal.history("h1") == []  # machine B never saw the run
    runs = library(tmp_path, fake)
    fake.ages[LOCK] = 3  # renewed 3 s ago by A's last step: live
    with lock.leased("wf-1/RUN", 10), pytest.raises(ApplicationError, match="still in flight on .* lease") as e:
        takeover.continue_or_undo(runs, "h1", run_id, Log())
    assert not e.value.non_retryable
    with pytest.raises(ConflictError, match="another remediate run holds"):  # an unrelated run waits too
        lock.take(fake, LOCK, "20261201T010000Z-def456")
    assert fake.files["/etc/app.conf"].content == b"new\n"

    fake.ages[LOCK] = 11  # A never renewed it again: lapsed
    steps = Log()
    with lock.leased("wf-1/RUN", 10):
        ran = takeover.continue_or_undo(runs, "h1", run_id, steps)
    assert ran is not None and ran.status == "rolled_back", ran
    assert ran.log[0][0] == "retried" and "interrupted" in ran.log[0][1]
    assert fake.files["/etc/app.conf"].content == b"old\n" and "/etc/marker" not in fake.files
    assert LOCK not in fake.files
    (record,) = journal.history("h1")
    assert record["outcome"] == "rolled-back" and record["machine"] != "machine-b"  # A's run, on B's disk
    copy = runrecord.newest(fake.files[hostcopy.host_path(H1, run_id)].content)
    assert copy["outcome"] == "rolled-back"
    with lock.leased("wf-1/RUN", 10):  # a later retry finds it ended
        again = takeover.continue_or_undo(runs, "h1", run_id, Log())
    assert again is not None and again.status == "rolled_back" and fake.files["/etc/app.conf"].content == b"old\n"


def test_a_run_nowhere_is_started_and_an_ended_one_is_reported(tmp_path: Path) -> None:
    fake = host_fake()
    runs = library(tmp_path, fake)
    with lock.leased("wf-1/RUN", 10):
        assert takeover.continue_or_undo(runs, "h1", "20261201T000000Z-abc123", Log()) is None
    assert fake.asked == [("show_lock", [])]  # looked, took nothing


def test_the_hosts_copy_is_checked_before_it_is_kept(tmp_path: Path) -> None:
    fake = host_fake()
    assert hostcopy.fetch(fake, H1, "../../etc/passwd") is None and not fake.history  # never a path of its own
    where = hostcopy.host_path(H1, "R1")
    assert where == "/var/lib/remediate/R1/journal.json"
    fake.put(where, "{not json", mode=0o600)
    with pytest.raises(InputError, match="h1:/var/lib/remediate/R1/journal.json: cannot read the run journal"):
        hostcopy.fetch(fake, H1, "R1")
    fake.put(where, json.dumps({"version": 1, "run_id": "R2", "host": "h1", "playbook": "p", "outcome": "running",
                                "steps": []}), mode=0o600)
    with pytest.raises(InputError, match="that journal is of run R2 on h1, not of run R1"):
        hostcopy.fetch(fake, H1, "R1")
    assert journal.history("h1") == []
    fake.put(where, json.dumps({"version": 1, "run_id": "R1", "host": "h1", "playbook": "p", "outcome": "applied",
                                "steps": []}), mode=0o600)
    found = hostcopy.fetch(fake, H1, "R1")
    assert found is not None and found.record["outcome"] == "applied"
    assert found.path.stat().st_mode & 0o777 == 0o600 and journal.history("h1")[0]["run_id"] == "R1"
    head = {"version": 1, "run_id": "R1", "host": "h1", "playbook": "p", "steps": []}
    fake.put(where, "\n".join([json.dumps({**head, "outcome": "running"}), json.dumps({**head, "outcome": "failed"}),
                               '{"version": 1, "run_id": "R1", "outc']), mode=0o600)  # appended; the last cut short
    found = hostcopy.fetch(fake, H1, "R1")
    assert found is not None and found.record["outcome"] == "failed"
    assert len(found.path.read_bytes().splitlines()) == 1  # kept here as one line


def test_a_copy_that_is_a_link_not_0600_or_behind_a_refused_folder_is_never_read_nor_kept(tmp_path: Path) -> None:
    from remediate.errors import CommandError
    from remediate.transport import FileState

    fake = host_fake()
    where = hostcopy.host_path(H1, "R1")
    good = json.dumps({"version": 1, "run_id": "R1", "host": "h1", "playbook": "p", "outcome": "applied", "steps": []})
    fake.files[where] = FileState(where, good.encode(), 0o600, 0, 0, "/home/other/journal.json")
    with pytest.raises(InputError, match="is a symbolic link"):
        hostcopy.fetch(fake, H1, "R1")
    for mode in (0o644, 0o640, 0o4600):
        fake.put(where, good, mode=mode)
        with pytest.raises(InputError, match="not 0600"):
            hostcopy.fetch(fake, H1, "R1")
    fake.put(where, good, mode=0o600)
    refused = (11, b"", b"remediate: refusing to use /var/lib/remediate: it is owned by other (uid 1001), not by ...\n")
    original = fake._lock
    fake._lock = lambda operation, args, stdin: refused if operation == "show_lock" else original(  # type: ignore
        operation, args, stdin)
    seen = len(fake.history)
    for asked in (hostcopy.fetch, hostcopy.look):
        with pytest.raises(CommandError, match="refusing to use"):
            asked(fake, H1, "R1")
    assert not [r for r in fake.history[seen:] if r.command.startswith("read")]  # the folder first: never read
    assert journal.history("h1") == []


def test_the_hosts_copy_is_kept_where_it_was_read_whatever_it_names_as_its_own_path(tmp_path: Path) -> None:
    fake = host_fake()
    where = hostcopy.host_path(H1, "R1")
    fake.put(where, json.dumps({"version": 1, "run_id": "R1", "host": "h1", "playbook": "p", "outcome": "applied",
                                "remote_journal": "h1:/etc/shadow", "steps": []}), mode=0o600)
    found = hostcopy.fetch(fake, H1, "R1")
    assert found is not None and found.record["remote_journal"] == f"h1:{where}"
    assert journal.history("h1")[0]["remote_journal"] == f"h1:{where}"  # as stored: the rollback attaches there


GOOD_FILE = {"path": "/etc/app.conf", "target": "h1", "existed": True, "before_sha256": "a" * 64,
             "after_sha256": "b" * 64, "backup": "/etc/.remediate/R1/app.conf.conf", "mode": "644", "owner": "0:0"}


@pytest.mark.parametrize(("files", "said"), [
    ("damaged", "its files are not a list"),
    (["x"], "file entry 0 is not an object"),
    ([{**GOOD_FILE, "path": None}], "no valid path"),
    ([{k: v for k, v in GOOD_FILE.items() if k != "existed"}], "no valid existed"),
    ([GOOD_FILE, {**GOOD_FILE, "backup": 7}], "file entry 1 has no valid backup"),
    ([{**GOOD_FILE, "backup": None}], "backup, before_sha256 and mode"),
    ([{**GOOD_FILE, "mode": "rw-r--r--"}], "backup, before_sha256 and mode"),
    ([{**GOOD_FILE, "before_sha256": {"x": 1}}], "no valid before_sha256"),
])
def test_a_copy_whose_files_the_undo_could_misread_is_refused_and_not_kept(files: Any, said: str) -> None:
    fake = host_fake()
    step = {"id": "conf", "kind": "file", "target": "h1", "state": "verified", "files": files}
    fake.put(hostcopy.host_path(H1, "R1"), json.dumps({"version": 1, "run_id": "R1", "host": "h1", "playbook": "p",
                                                       "outcome": "applied", "steps": [step]}), mode=0o600)
    with pytest.raises(InputError, match=f"step 'conf' of the run journal: .*{said}"):
        hostcopy.fetch(fake, H1, "R1")
    assert journal.history("h1") == []
    fake.put(hostcopy.host_path(H1, "R1"), json.dumps({"version": 1, "run_id": "R1", "host": "h1", "playbook": "p",
                                                       "outcome": "applied", "steps": [{**step, "files": [GOOD_FILE, {
                                                           **GOOD_FILE, "existed": False, "backup": None,
                                                           "before_sha256": None, "mode": None, "owner": None}]}]}),
             mode=0o600)
    assert hostcopy.fetch(fake, H1, "R1") is not None  # as a run writes them: kept


def test_a_run_with_a_step_of_a_kind_unknown_here_is_refused_before_the_lock_is_taken() -> None:
    fake = host_fake()
    steps = [{"id": "conf", "kind": "file", "target": "h1", "state": "verified", "files": [GOOD_FILE]},
             {"id": "odd", "kind": "no-such-kind", "target": "h1", "state": "verified"}]
    fake.put(hostcopy.host_path(H1, "R1"), json.dumps({"version": 1, "run_id": "R1", "host": "h1", "playbook": "p",
                                                       "outcome": "applied", "steps": steps}), mode=0o600)
    found = hostcopy.fetch(fake, H1, "R1")
    assert found is not None
    undo = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    with pytest.raises(InputError, match="a kind this remediate does not know: no-such-kind"):
        undo.rollback(H1, found)
    assert fake.asked == [("show_lock", [])] and found.record["outcome"] == "applied"  # no lock taken, nothing undone


@pytest.mark.parametrize(("heartbeat", "seconds"), [(60.0, 120.0), (2.0, 10.0), (None, 10.0)])
def test_an_activitys_lease_outlives_its_heartbeat_timeout(monkeypatch: pytest.MonkeyPatch, heartbeat: float | None,
                                                           seconds: float) -> None:
    info = SimpleNamespace(workflow_id="remediate-incident-7",
                           heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None)
    monkeypatch.setattr(activities.activity, "info", lambda: info)
    assert activities.lease("R1") == ("remediate-incident-7/R1", seconds)


class HostClock:
    """takeover's clock, as the host's: sleeping here ages the lock on the fake host (unless its holder renews it)."""

    def __init__(self, fake: LeaseFake, renewing: bool = False) -> None:
        self.fake, self.renewing, self.now, self.slept = fake, renewing, 1000.0, 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        self.fake.ages[LOCK] = 0 if self.renewing else self.fake.ages.get(LOCK, 0) + seconds


def activity_info(monkeypatch: pytest.MonkeyPatch) -> None:
    info = SimpleNamespace(workflow_id="remediate-incident-7", heartbeat_timeout=timedelta(seconds=2), attempt=2)
    monkeypatch.setattr(activities.activity, "info", lambda: info)
    monkeypatch.setattr(activities.activity, "heartbeat", lambda *details: None)


def test_the_rollback_activity_outlasts_an_earlier_attempts_lease_then_undoes(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The incident's rollback is retried only 3 times, quickly: it waits for a dead attempt's lease to lapse within
    one attempt, heartbeating, rather than spend its retries on it."""
    fake, run_id, _ = cut_off(tmp_path, monkeypatch)
    fake.ages[LOCK] = 0
    clock = HostClock(fake)
    monkeypatch.setattr(takeover, "time", clock)
    activity_info(monkeypatch)
    acts = activities.Activities(library(tmp_path, fake), SimpleNamespace(), lambda: True)  # type: ignore[arg-type]
    ran = acts.rollback(activities.RunInput(7, "app", "h1", run_id))
    assert ran.status == "done", ran
    assert 10 <= clock.slept <= 15  # the lease's 10 s, and not much more
    assert fake.files["/etc/app.conf"].content == b"old\n" and LOCK not in fake.files


def test_an_attempt_still_renewing_its_lease_is_waited_for_by_a_retry(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake, run_id, _ = cut_off(tmp_path, monkeypatch)
    clock = HostClock(fake, renewing=True)  # its worker lives (cut off from Temporal, not from the host)
    monkeypatch.setattr(takeover, "time", clock)
    with lock.leased("wf-1/RUN", 10), pytest.raises(ApplicationError, match="still in flight") as e:
        takeover.outlast(library(tmp_path, fake), "h1", run_id, Log())
    assert not e.value.non_retryable and clock.slept >= 20
    assert fake.files["/etc/app.conf"].content == b"new\n"  # nothing undone under a live run


def test_a_refused_attempt_here_does_not_hide_the_run_another_attempt_applied(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two attempts of one run: this machine's met the other's lock and recorded `refused`; the other applied it.
    A later retry here reports the run applied, from the host's copy, rather than `failed, nothing changed`."""
    fake = host_fake()
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    attempts = []
    for _ in range(2):  # both plan the run before either applies it
        with lock.leased("wf-1/RUN", 10), journal.chosen_run_id("20261201T000000Z-abc123"):
            run = Runner(playbook=playbook.load(book), pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
            bound = run.bind(H1, {})
        run.run(bound, mode="apply")
        attempts.append((run, bound))
    (first, bound), (second, planned) = attempts
    assert first.apply(bound).exit_code == 0  # the other attempt, on another machine: its record is not here
    journal.Journal.load(Path(journal.history("h1")[0]["_path"])).path.unlink()
    fake.put(LOCK, json.dumps({"run_id": bound.ctx.run_id, "lease": {"holder": "wf-1/RUN", "token": "e" * 32,
                                                                      "seconds": 10}}))
    with pytest.raises(ConflictError):  # this machine's attempt met the other's lock while it ran
        second.apply(planned)
    assert journal.history("h1")[0]["outcome"] == "refused"
    del fake.files[LOCK]
    monkeypatch.setattr(socket, "gethostname", lambda: "machine-b")
    with lock.leased("wf-1/RUN", 10):
        ran = takeover.continue_or_undo(library(tmp_path, fake), "h1", bound.ctx.run_id, Log())
    assert ran is not None and ran.status == "applied", ran
