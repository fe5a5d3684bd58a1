"""Host locks held by a lease across machines (#24), against a real sshd: two "machines" are two state homes and two
host names on this one. Machine A applies a leased run in a process of its own and is SIGKILLed, or cut off, inside a
step; machine B, which never saw the run, finds it in the host's copy of its journal, waits while A's lease is live,
then takes the lock over and undoes the run; an unrelated run is refused meanwhile; A, fenced out, stops without
undoing anything; and `remediate rollback --run ID` on B fetches the host's copy."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.exceptions import ApplicationError

from remediate import api
from remediate.engine import journal, lock, runrecord
from remediate.errors import ConflictError
from remediate.inputs import inventory as inventory_mod
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal import takeover
from remediate.transport import Transport

from .conftest import SshLab

T = TypeVar("T")
ORIGINAL = b"listen = 25\r\nrelay = \xe2\x80\xa3 broken\n"  # odd bytes, CRLF: byte-identical means byte-identical
#: Machine A: a leased apply (serve's way: a lease of its workflow and run, the run id chosen beforehand), as a
#: process of its own on a host name of its own; it prints its outcome when it gets to the end.
MACHINE_A = r"""
import json, socket, sys
from pathlib import Path
socket.gethostname = lambda: "machine-a"
from remediate import api
from remediate.engine import journal, lock
inventory, book, run_id, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
notices = []
def emit(event):
    if event.name == "notice":
        notices.append(event.message)
opts = api.Options(inventory=Path(inventory), hosts=("nopw",), playbook=book)
with lock.leased("wf-lease/" + run_id, seconds), journal.chosen_run_id(run_id):
    outcomes = api.apply(opts, emit, api.ssh_factory(opts, emit, lambda host: ""), lambda bound: True)
print(json.dumps({"outcomes": [[o.status.value, o.message] for o in outcomes], "notices": notices}))
"""


@dataclass
class Setup:
    inventory: Path
    work: Path
    book: Path
    run_id: str
    state: Path  # the host's state folder: the lock and the leased run's journal copy

    @property
    def lock(self) -> Path:
        return self.state / "lock"



def gated_book(name: str, work: Path, step: str, then: str, extra: str = "") -> str:
    """A playbook: conf fixed, then a command step `step` that touches work/started and waits for work/go (at most a
    minute) before `then` (shell, e.g. "; exit 1"), then `extra` steps: what leases are raced on."""
    return f"""\
name: {name}
steps:
  - id: conf
    kind: file
    params: {{path: "{work}/app.conf", content: "fixed\\n"}}
  - id: {step}
    kind: command
    params:
      command: [sh, -c, 'touch "$0/started"; i=0; while [ ! -e "$0/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done{then}', "{work}"]
      undo: ["true"]  # it only waits: nothing to reverse (a command without undo is reported not reversed)
{extra}"""

@pytest.fixture
def setup(ssh_lab: SshLab, tmp_path: Path) -> Setup:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.conf").write_bytes(ORIGINAL)
    (work / "app.conf").chmod(0o640)
    book = tmp_path / "lease.yml"
    book.write_text(gated_book("lease", work, "slow", "", extra=f"""\
  - id: extra
    kind: file
    params: {{path: "{work}/app.extra", content: "fixed\\n"}}
"""))
    return Setup(ssh_lab.inventory(tmp_path), work, book, journal.new_run_id(), tmp_path / "remediate-state")


@pytest.fixture
def machine_b(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is machine B: another host name (its state home is the test's own, tests/conftest.py)."""
    monkeypatch.setattr(socket, "gethostname", lambda: "machine-b")


def start_a(setup: Setup, tmp_path: Path, seconds: float) -> subprocess.Popen[str]:
    """Machine A's apply, its own state home; returns once it is inside its slow step (the step's marker)."""
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "machine-a"))
    a = subprocess.Popen([sys.executable, "-c", MACHINE_A, str(setup.inventory), str(setup.book), setup.run_id,
                          str(seconds)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until(lambda: (setup.work / "started").exists() or a.poll() is not None, "machine A inside its slow step", 60)
    assert a.poll() is None, a.communicate()
    return a


def until(done: Callable[[], T], what: str, within: float) -> T:
    """Wait for a condition, with a deadline that names it."""
    deadline = time.monotonic() + within
    while True:
        found = done()
        if found:
            return found
        assert time.monotonic() < deadline, f"not {what} within {within} s"
        time.sleep(0.1)


def retried(attempt: Callable[[], T], refused: type[Exception], says: str, within: float) -> T:
    """attempt() until it does not raise `refused`; every refusal must say `says` (nothing else may stop it)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return attempt()
        except refused as e:
            assert says in str(e), e
            assert time.monotonic() < deadline, f"still refused after {within} s: {e}"
            time.sleep(0.2)


@contextmanager
def transport_to(setup: Setup) -> Iterator[Transport]:
    opts = api.Options(inventory=setup.inventory, hosts=("nopw",))
    (host,) = inventory_mod.load(setup.inventory).select(("nopw",))
    made = api.ssh_factory(opts, lambda e: None, lambda host: "")(host)
    try:
        yield made
    finally:
        made.close()


class Log:
    def __init__(self) -> None:
        self.log: list[list[str]] = []

    def __call__(self, event: Any) -> None:
        pass


def test_a_retry_elsewhere_waits_for_the_lease_then_takes_over_and_undoes(setup: Setup, tmp_path: Path,
                                                                          machine_b: None) -> None:
    a = start_a(setup, tmp_path, seconds=5)
    a.send_signal(signal.SIGKILL)
    a.wait(30)
    (setup.work / "go").touch()  # the host-side loop of A's step ends; A is gone and does nothing more
    os.utime(setup.lock)  # as if A renewed it just now: its lease is live for 5 s from here
    assert (setup.work / "app.conf").read_bytes() == b"fixed\n" and journal.history("nopw") == []
    runs = LibraryRuns(setup.inventory, lambda opts, emit: api.ssh_factory(opts, emit, lambda host: ""), tmp_path)

    def retry() -> Any:
        with lock.leased("wf-lease/" + setup.run_id, 5):
            return takeover.continue_or_undo(runs, "nopw", setup.run_id, Log())

    with pytest.raises(ApplicationError, match="still in flight on machine-a .* waiting for it") as e:
        retry()
    assert not e.value.non_retryable
    third = tmp_path / "third.yml"  # an unrelated run meanwhile: refused, nothing changed
    third.write_text(f"name: third\nsteps:\n  - id: t\n    kind: file\n    params: {{path: \"{setup.work}/third\", "
                     "content: \"x\\n\"}\n")
    opts = api.Options(inventory=setup.inventory, hosts=("nopw",), playbook=str(third))
    os.utime(setup.lock)  # still live, however long the above took
    (other,) = api.apply(opts, lambda e: None, api.ssh_factory(opts, lambda e: None, lambda host: ""), lambda b: True)
    assert other.status == "error" and "another remediate run holds" in other.message, other.message
    assert "lease of wf-lease/" in other.message and not (setup.work / "third").exists()

    ran = retried(retry, ApplicationError, "still in flight on machine-a", within=60)  # the lease lapses
    assert ran is not None and ran.status == "rolled_back", ran
    assert (setup.work / "app.conf").read_bytes() == ORIGINAL
    assert (setup.work / "app.conf").stat().st_mode & 0o777 == 0o640 and not (setup.work / "app.extra").exists()
    assert not setup.lock.exists()
    (record,) = [r for r in journal.history("nopw") if r["run_id"] == setup.run_id]  # A's, found on the host, kept
    assert record["machine"] == "machine-a" and record["outcome"] == "rolled-back"
    copy = runrecord.newest((setup.state / setup.run_id / "journal.json").read_bytes())
    assert copy["outcome"] == "rolled-back"
    a_record = runrecord.read(next((tmp_path / "machine-a").rglob(f"{setup.run_id}.nopw.json")))
    assert a_record["outcome"] == "running"  # A was killed: its own record stops where it did


def test_a_holder_fenced_out_by_a_take_over_stops_without_undoing_anything(setup: Setup, tmp_path: Path,
                                                                          machine_b: None) -> None:
    a = start_a(setup, tmp_path, seconds=3)  # A is cut off inside its step: it renews nothing meanwhile
    with transport_to(setup) as t:
        path = str(setup.lock)
        b_lease = lock.Lease("wf-lease/" + setup.run_id, 600)
        b = retried(lambda: lock.take(t, path, setup.run_id, take_over=setup.run_id, lease=b_lease),
                    ConflictError, "another remediate run holds", within=60)
        (setup.work / "go").touch()  # A's step ends; its next renewal finds the lock B's
        out, err = a.communicate(timeout=60)
        said = json.loads(out.splitlines()[-1])
        assert said["outcomes"][0][0] == "error" and "lost its lease" in said["outcomes"][0][1], said
        assert any("this one stopped, undoing nothing" in n for n in said["notices"]), said
        assert (setup.work / "app.conf").read_bytes() == b"fixed\n"  # nothing undone
        assert not (setup.work / "app.extra").exists()  # nothing more applied
        assert json.loads(setup.lock.read_bytes())["lease"]["token"] == b_lease.token  # not released
        a_record = runrecord.read(next((tmp_path / "machine-a").rglob(f"{setup.run_id}.nopw.json")))
        assert a_record["outcome"] == "taken-over"
        assert runrecord.newest((setup.state / setup.run_id / "journal.json").read_bytes())["outcome"] == "running"
        b.release()
    assert not setup.lock.exists()


def test_rollback_on_a_machine_that_never_saw_the_run_fetches_the_hosts_copy(setup: Setup, tmp_path: Path) -> None:
    a = start_a(setup, tmp_path, seconds=5)
    a.send_signal(signal.SIGKILL)
    a.wait(30)
    (setup.work / "go").touch()
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "machine-b"), CI="true")
    rollback = ["remediate", "rollback", "--yes", "--host", "nopw", "-i", str(setup.inventory), "--run", setup.run_id]
    os.utime(setup.lock)  # A's lease is live: B's rollback waits for it
    live = subprocess.run(rollback, capture_output=True, text=True, env=env, timeout=120)
    assert live.returncode == 1 and "another remediate run holds" in live.stdout + live.stderr, live
    assert (setup.work / "app.conf").read_bytes() == b"fixed\n"
    old = time.time() - 60
    os.utime(setup.lock, (old, old))  # and once it has lapsed, B takes it over
    done = subprocess.run(rollback, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (setup.work / "app.conf").read_bytes() == ORIGINAL and not setup.lock.exists()
    kept = runrecord.read(tmp_path / "machine-b" / "remediate" / "runs" / f"{setup.run_id}.nopw.json")
    assert kept["outcome"] == "rolled-back" and kept["machine"] == "machine-a"
    unknown = subprocess.run([*rollback[:-1], "20261201T000000Z-000000"], capture_output=True, text=True, env=env,
                             timeout=120)
    assert unknown.returncode == 1 and "nor on the host at" in unknown.stdout + unknown.stderr, unknown


def test_a_rollback_killed_after_its_file_undos_is_finished_elsewhere(setup: Setup, tmp_path: Path) -> None:
    """A's apply fails and A rolls back; it is SIGKILLed after undoing both edits of one file, before any of those
    undos reached the host's copy of the journal (a rollback's records stay local until its end). B, which never saw
    the run, undoes it again from that copy: the later edit's file is as before the earlier edit, not changed by
    anyone, and the rollback ends whole (it ended "ROLLBACK INCOMPLETE" in CI's chaos test of serve)."""
    work = setup.work
    setup.book.write_text(f"""\
name: resumed
steps:
  - id: gate
    kind: command
    params:
      command: ["true"]
      undo: [sh, -c, 'touch "$0/undoing"; i=0; while [ ! -e "$0/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done', "{work}"]
  - id: transport
    kind: file
    params: {{path: "{work}/app.conf", content: "first\\n"}}
  - id: domains
    kind: file
    params: {{path: "{work}/app.conf", content: "second\\n"}}
  - id: fails
    kind: command
    params: {{command: [sh, -c, "exit 3"], undo: ["true"]}}
""")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "machine-a"))
    a = subprocess.Popen([sys.executable, "-c", MACHINE_A, str(setup.inventory), str(setup.book), setup.run_id, "5"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until(lambda: (work / "undoing").exists() or a.poll() is not None, "machine A undoing its first step", 60)
    assert a.poll() is None, a.communicate()
    assert (work / "app.conf").read_bytes() == ORIGINAL  # both edits undone by A
    a.send_signal(signal.SIGKILL)
    a.wait(30)
    (work / "go").touch()
    copy = runrecord.newest((setup.state / setup.run_id / "journal.json").read_bytes())
    assert {s["id"]: s["state"] for s in copy["steps"]}["domains"] == "verified"  # what B goes by
    old = time.time() - 60
    os.utime(setup.lock, (old, old))  # A's lease has lapsed
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "machine-b"), CI="true")
    done = subprocess.run(["remediate", "rollback", "--yes", "--host", "nopw", "-i", str(setup.inventory), "--run",
                           setup.run_id], capture_output=True, text=True, env=env, timeout=120)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "already as before step transport, earlier in this run" in said, said
    assert (work / "app.conf").read_bytes() == ORIGINAL and (work / "app.conf").stat().st_mode & 0o777 == 0o640
    assert runrecord.newest((setup.state / setup.run_id / "journal.json").read_bytes())["outcome"] == "rolled-back"
