"""Attacks on the leased host locks and the cross-machine take-over (#24), against an sshd of this file's own on
127.0.0.26: a holder fenced out at each point, takers racing each other and a release, a lock or a journal copy
swapped or planted under the state folder, a holder's content that pretends to be the age line, clocks, and tokens.

Tests marked xfail(strict=True) document a bug found here: they pass once it is fixed (and then must lose the
mark). The others hold on the current code, and fail if what they guard is broken."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediate import api
from remediate.engine import hostcopy, journal, lock, runrecord
from remediate.errors import CommandError, ConflictError, InputError, LeaseLost, RemediateError
from remediate.inputs import inventory as inventory_mod
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal import takeover
from remediate.transport import Transport
from tests import sshd
from tests.integration.test_lease import gated_book

ADDRESS = "127.0.0.26"  # this file's own sshd: never the suite's 127.0.0.20
PORT = 2226
LOGIN = "rmt-nopw"  # sudo without a password: the host's operations run as root
OTHER = "rmt-other"  # someone else on the host, no sudo
ORIGINAL = b"listen = 25\n"


@dataclass(frozen=True)
class Host:
    """The attack sshd, with this test's inventory and folders on it (the host is this machine)."""

    inventory: Path
    work: Path  # the files the playbooks change
    state: Path  # remediate_state_dir: the lock, and a leased run's journal copy
    tmp: Path

    @property
    def lock(self) -> Path:
        return self.state / "lock"

    def copy(self, run_id: str) -> Path:
        return self.state / run_id / "journal.json"

    def book(self, name: str = "attack") -> Path:
        path = self.tmp / f"{name}.yml"
        path.write_text(f"name: {name}\nsteps:\n  - id: conf\n    kind: file\n"
                        f"    params: {{path: \"{self.work}/app.conf\", content: \"fixed\\n\"}}\n")
        return path


@pytest.fixture(scope="module")
def server() -> Iterator[sshd.Server]:
    why = sshd.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the integration tests cannot run in CI: {why}; scripts/setup installs what they need")
        pytest.skip(why)
    sshd.ensure_user(LOGIN, sudo="nopasswd")
    sshd.ensure_user(OTHER, sudo=None)
    root = Path(tempfile.mkdtemp(prefix="remediate-sshd-attacks-"))
    root.chmod(0o755)  # sshd reads the authorized keys as the login user
    started = sshd.start(root, ADDRESS, PORT, [LOGIN])
    yield started
    started.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def host(server: sshd.Server, tmp_path: Path) -> Host:
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.conf").write_bytes(ORIGINAL)
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts_line())
    inventory = tmp_path / "inventory.yml"
    state = tmp_path / "remediate-state"
    inventory.write_text(
        "all:\n  vars:\n"
        f"    ansible_host: {ADDRESS}\n    ansible_port: {PORT}\n"
        f"    ansible_ssh_private_key_file: {server.client_key}\n    ssh_known_hosts_file: {known}\n"
        f"    remediate_state_dir: {state}\n    ansible_become: true\n"
        f"  hosts:\n    nopw:\n      ansible_user: {LOGIN}\n")
    return Host(inventory, work, state, tmp_path)


@contextmanager
def transport_to(host: Host) -> Iterator[Transport]:
    opts = api.Options(inventory=host.inventory, hosts=("nopw",))
    (found,) = inventory_mod.load(host.inventory).select(("nopw",))
    made = api.ssh_factory(opts, lambda e: None, lambda name: "")(found)
    try:
        yield made
    finally:
        made.close()


def lapse(path: Path) -> None:
    """A lease on the lock at path lapsed by the host's clock (this machine is the host): renewed a day ago."""
    old = time.time() - 86400
    os.utime(path, (old, old))


def until(done: Callable[[], Any], what: str, within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while True:
        found = done()
        if found:
            return found
        assert time.monotonic() < deadline, f"not {what} within {within} s"
        time.sleep(0.05)


def rollback_as_b(host: Host, run_id: str) -> subprocess.CompletedProcess[str]:
    """`remediate rollback --run ID` on machine B: its own state home, never having seen the run."""
    env = dict(os.environ, XDG_STATE_HOME=str(host.tmp / "machine-b"), CI="true")
    return subprocess.run(["remediate", "rollback", "--yes", "--host", "nopw", "-i", str(host.inventory),
                           "--run", run_id], capture_output=True, text=True, env=env, timeout=120)


def apply_as_a(host: Host, run_id: str, seconds: float, notices: list[str], book: Path | None = None) -> api.Outcome:
    """Machine A: serve's leased apply (a lease of its workflow and run, the run id chosen beforehand), in this
    process, under a host name of its own."""
    opts = api.Options(inventory=host.inventory, hosts=("nopw",), playbook=str(book or host.book()))

    def emit(event: Any) -> None:
        if event.name == "notice":
            notices.append(event.message)

    with lock.leased("wf-attack/" + run_id, seconds), journal.chosen_run_id(run_id):
        (outcome,) = api.apply(opts, emit, api.ssh_factory(opts, emit, lambda name: ""), lambda bound: True)
    return outcome


@pytest.fixture
def machine_a(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "machine-a")


def before_release(monkeypatch: pytest.MonkeyPatch, token_of: Callable[[], str | None],
                   meanwhile: Callable[[], None]) -> None:
    """Run `meanwhile` once, just before the leased lock whose token token_of() gives is released: after the run's
    last renewal and its last journal record, as a worker that stalls (a pause, a partition) at that point."""
    release = lock.Lock.release
    done: list[bool] = []

    def stalled(self: lock.Lock) -> None:
        if not done and self.token is not None and self.token == token_of():
            done.append(True)
            meanwhile()
        release(self)

    monkeypatch.setattr(lock.Lock, "release", stalled)


def test_a_stalled_before_its_release_while_b_undid_the_run_neither_writes_the_copy_nor_reports_applied(
        host: Host, machine_a: None, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = journal.new_run_id()
    b_said: list[subprocess.CompletedProcess[str]] = []

    def b_takes_over_and_undoes() -> None:
        lapse(host.lock)  # A stalled longer than its lease
        b_said.append(rollback_as_b(host, run_id))

    before_release(monkeypatch, lambda: json.loads(host.lock.read_bytes())["lease"]["token"], b_takes_over_and_undoes)
    notices: list[str] = []
    outcome = apply_as_a(host, run_id, 5, notices)
    (b,) = b_said
    assert b.returncode == 0, b.stdout + b.stderr
    assert (host.work / "app.conf").read_bytes() == ORIGINAL  # B undid the run
    copy = runrecord.newest(host.copy(run_id).read_bytes())
    a_record = runrecord.read(next((host.tmp / "state").rglob(f"{run_id}.nopw.json")))
    assert (copy["outcome"], outcome.status, a_record["outcome"]) == ("rolled-back", "error", "taken-over"), \
        (copy["outcome"], outcome, notices)


def test_a_stalled_before_its_release_while_b_holds_the_lock_leaves_the_copy_to_b(
        host: Host, machine_a: None, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = journal.new_run_id()
    b_lease = lock.Lease("wf-attack/" + run_id, 600)
    taken: list[lock.Lock] = []
    seen_copy: list[bytes] = []

    def b_takes_over() -> None:
        lapse(host.lock)
        seen_copy.append(host.copy(run_id).read_bytes())
        with transport_to(host) as t:
            taken.append(lock.take(t, str(host.lock), run_id, take_over=run_id, lease=b_lease))

    before_release(monkeypatch, lambda: json.loads(host.lock.read_bytes())["lease"]["token"], b_takes_over)
    notices: list[str] = []
    outcome = apply_as_a(host, run_id, 5, notices)
    assert taken and json.loads(host.lock.read_bytes())["lease"]["token"] == b_lease.token  # not released by A
    after = host.copy(run_id).read_bytes()
    os.unlink(host.lock)
    assert (after == seen_copy[0], outcome.status) == (True, "error"), (runrecord.newest(after)["outcome"], outcome, notices)


def applied_by_a(host: Host, run_id: str, book: Path | None = None) -> None:
    """Machine A's leased run applied and ended: its journal copy on the host, the lock free."""
    outcome = apply_as_a(host, run_id, 600, [], book)
    assert outcome.status == "changed" and not host.lock.exists(), outcome
    assert runrecord.newest(host.copy(run_id).read_bytes())["outcome"] == "applied"


def minimal_copy(run_id: str, outcome: str) -> bytes:
    """A journal copy RunRecord.parse accepts: what someone who can write the copy's folder needs to plant."""
    return json.dumps({"version": journal.VERSION, "run_id": run_id, "host": "nopw", "playbook": "attack",
                       "outcome": outcome, "steps": []}).encode()


def test_a_copy_naming_another_file_as_its_own_path_never_makes_the_rollback_write_that_file(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = journal.new_run_id()
    with monkeypatch.context() as m:
        m.setattr(socket, "gethostname", lambda: "machine-a")
        applied_by_a(host, run_id)
    victim = host.work / "victim.conf"
    victim.write_bytes(b"precious\n")
    copy = runrecord.newest(host.copy(run_id).read_bytes())
    copy["remote_journal"] = f"nopw:{victim}"
    host.copy(run_id).write_bytes(json.dumps(copy).encode())
    b = rollback_as_b(host, run_id)
    assert (host.work / "app.conf").read_bytes() == ORIGINAL, b.stdout + b.stderr  # the run itself was undone
    assert victim.read_bytes() == b"precious\n"


def test_a_copy_that_is_a_link_into_another_users_folder_is_not_read(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = journal.new_run_id()
    with monkeypatch.context() as m:
        m.setattr(socket, "gethostname", lambda: "machine-a")
        m.setenv("XDG_STATE_HOME", str(host.tmp / "machine-a"))  # A's own record, on its own machine
        applied_by_a(host, run_id)
    theirs = Path(tempfile.mkdtemp(prefix="remediate-other-"))
    try:
        shutil.chown(theirs, OTHER, OTHER)
        planted = theirs / "journal.json"
        planted.write_bytes(host.copy(run_id).read_bytes())
        shutil.chown(planted, OTHER, OTHER)
        host.copy(run_id).unlink()
        host.copy(run_id).symlink_to(planted)
        (found,) = inventory_mod.load(host.inventory).select(("nopw",))
        with transport_to(host) as t:
            try:
                kept = hostcopy.fetch(t, found, run_id)
            except RemediateError:  # refused: what we want
                kept = None
        assert kept is None and journal.history("nopw") == []
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


def test_a_copy_planted_in_a_state_folder_another_user_owns_never_becomes_this_machines_record(
        host: Host) -> None:
    run_id = journal.new_run_id()
    (host.state / run_id).mkdir(parents=True)  # made by someone else before remediate first came
    host.copy(run_id).write_bytes(minimal_copy(run_id, "applied"))
    for made in (host.state, host.state / run_id, host.copy(run_id)):
        shutil.chown(made, OTHER, OTHER)
    host.state.chmod(0o777)
    runs = LibraryRuns(host.inventory, lambda opts, emit: api.ssh_factory(opts, emit, lambda name: ""), host.tmp)

    class Log:
        log: list[list[str]] = []

        def __call__(self, event: Any) -> None:
            pass

    with lock.leased("wf-attack/" + run_id, 600):
        for _ in range(2):  # the apply activity, then its retry: the host's folder is refused each time
            with pytest.raises(CommandError, match="refusing to use"):
                takeover.continue_or_undo(runs, "nopw", run_id, Log())  # 2nd: Ran('applied'), never asking
    assert journal.history("nopw") == []  # nothing read from that folder is kept


def test_a_damaged_copy_is_refused_before_anything_is_undone(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = journal.new_run_id()
    book = host.tmp / "two.yml"
    book.write_text(f"name: two\nsteps:\n"
                    f"  - id: conf\n    kind: file\n    params: {{path: \"{host.work}/app.conf\", content: \"fixed\\n\"}}\n"
                    f"  - id: extra\n    kind: file\n    params: {{path: \"{host.work}/app.extra\", content: \"x\\n\"}}\n")
    with monkeypatch.context() as m:
        m.setattr(socket, "gethostname", lambda: "machine-a")
        applied_by_a(host, run_id, book)
    copy = runrecord.newest(host.copy(run_id).read_bytes())
    copy["steps"][0]["files"] = "damaged"  # the older step: the newer one is undone first
    host.copy(run_id).write_bytes(json.dumps(copy).encode())
    b = rollback_as_b(host, run_id)
    assert b.returncode == 1 and "internal error" not in b.stdout + b.stderr, b.stdout + b.stderr
    assert (host.work / "app.extra").exists()  # nothing undone on a copy that was misread


def test_a_copy_too_large_a_fifo_or_of_another_run_is_refused_and_nothing_is_kept(host: Host) -> None:
    (found,) = inventory_mod.load(host.inventory).select(("nopw",))
    with transport_to(host) as t:
        assert lock.take(t, str(host.lock), "maker").token is None  # the state folder, private, as a run makes it
        os.unlink(host.lock)
        huge, fifo, other, wrong_host = (journal.new_run_id() for _ in range(4))
        for run_id in (huge, fifo, other, wrong_host):
            (host.state / run_id).mkdir(mode=0o700)
        with open(host.copy(huge), "wb") as f:
            f.truncate(16 * 1024 * 1024)  # sparse: past what read takes
        os.mkfifo(host.copy(fifo), 0o600)
        host.copy(other).write_bytes(minimal_copy(huge, "rolled-back"))  # another run's journal in this run's folder
        host.copy(wrong_host).write_bytes(minimal_copy(wrong_host, "rolled-back").replace(b'"nopw"', b'"mx"'))
        for run_id in (other, wrong_host):
            host.copy(run_id).chmod(0o600)  # as remediate writes a copy: refused for what it says, not its mode
        for run_id, said in ((huge, "bytes"), (fifo, "not a regular file"), (other, f"of run {huge}"),
                             (wrong_host, "on mx, not of run")):
            with pytest.raises(InputError, match=said):
                hostcopy.fetch(t, found, run_id)
        assert hostcopy.fetch(t, found, "../lock") is None and hostcopy.fetch(t, found, "x/../../etc") is None
    assert journal.history("nopw") == []


@contextmanager
def state_folder(host: Host) -> Iterator[Transport]:
    """A connection to the host, its state folder made private as a run makes it, and no lock in it."""
    with transport_to(host) as t:
        lock.take(t, str(host.lock), "maker")
        os.unlink(host.lock)
        yield t


def unblock(fifo: Path) -> None:
    """Let whatever waits to open the FIFO for reading go on (it reads nothing)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # no reader waits


def test_a_fifo_at_the_locks_name_is_refused_at_once(host: Host) -> None:
    with state_folder(host) as t:
        os.mkfifo(host.lock, 0o600)
        try:
            result = t.operation("show_lock", str(host.lock), timeout=10, display="show the lock")
        finally:
            unblock(host.lock)
    assert result.exit_code == 5, result


def plant(path: Path, doc: dict[str, Any] | bytes, *, age: float = 0) -> bytes:
    """A lock (or anything) at path with these bytes, last renewed `age` seconds ago by the host's clock."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return data


def leased_doc(run_id: str, token: str = "a" * 32, seconds: float = 30, holder: str = "wf-attack") -> dict[str, Any]:
    return {"run_id": run_id, "operator": "root@machine-a", "started": "2026-12-06T00:00:00+00:00", "pid": 1,
            "machine": "machine-a", "lease": {"holder": f"{holder}/{run_id}", "token": token, "seconds": seconds}}


def test_a_link_at_the_locks_name_is_never_followed_nor_replaced(host: Host) -> None:
    theirs = Path(tempfile.mkdtemp(prefix="remediate-other-"))
    try:
        shutil.chown(theirs, OTHER, OTHER)
        target = theirs / "lock"
        data = plant(target, leased_doc("r1"), age=3600)  # a lapsed lease of r1, which r1's retry may take over
        shutil.chown(target, OTHER, OTHER)
        with state_folder(host) as t:
            host.lock.symlink_to(target)
            for attempt in (lambda: lock.take(t, str(host.lock), "r1", take_over="r1", lease=lock.Lease("r1", 30)),
                            lambda: lock.take(t, str(host.lock), "r2", break_lock=True),
                            lambda: lock.peek(t, str(host.lock))):
                with pytest.raises((CommandError, ConflictError)):
                    attempt()
            for operation in ("renew_lock", "release_lock"):
                result = t.operation(operation, str(host.lock), "a" * 32, display=operation)
                assert result.exit_code == 5, result
        assert host.lock.is_symlink() and target.read_bytes() == data and not list(host.state.glob(".*"))
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


def test_a_holder_that_writes_an_age_line_of_its_own_is_still_judged_by_the_hosts_clock(host: Host) -> None:
    with state_folder(host) as t:
        doc = leased_doc("r1")
        plant(host.lock, json.dumps(doc).encode() + b"\nage=99999\n")  # renewed just now, whatever it says
        with pytest.raises(ConflictError, match="another remediate run holds"):
            lock.take(t, str(host.lock), "r1", take_over="r1", lease=lock.Lease("r1", 30))
        held = lock.peek(t, str(host.lock))
        assert held is not None and held.age is not None and held.age < 30 and held.alive is not False
        os.unlink(host.lock)
        spoof = lock.Lease("wf\nage=99999\n", 30)  # a holder's name with the age line in it: escaped in the JSON
        taken = lock.take(t, str(host.lock), "r1", lease=spoof)
        held = lock.peek(t, str(host.lock))
        assert held is not None and held.alive is True and held.lease == spoof.as_dict()
        taken.release()
    assert not host.lock.exists()


def test_a_token_must_match_exactly_to_renew_or_release(host: Host) -> None:
    token = "0123456789abcdef0123456789abcdef"
    with state_folder(host) as t:
        data = plant(host.lock, leased_doc("r1", token), age=3600)
        before = host.lock.stat().st_mtime
        for wrong in (token[:-1], token[1:], token + "0", token.upper(), "", " " + token, f'"{token}"', "None",
                      token[:16]):
            for operation in ("renew_lock", "release_lock"):
                result = t.operation(operation, str(host.lock), wrong, display=operation)
                assert result.exit_code == lock.HELD_EXIT, (operation, wrong, result)
        assert host.lock.read_bytes() == data and host.lock.stat().st_mtime == before  # never renewed: still lapsed
        no_lease = plant(host.lock, {"run_id": "r2", "pid": 1, "machine": "machine-a"}, age=3600)
        for wrong in ("None", "null", ""):
            assert t.operation("renew_lock", str(host.lock), wrong, display="renew").exit_code == lock.HELD_EXIT
        assert host.lock.read_bytes() == no_lease


def test_a_lapsed_lease_is_taken_over_by_a_retry_of_its_run_only(host: Host) -> None:
    with state_folder(host) as t:
        data = plant(host.lock, leased_doc("r1"), age=3600)
        others: tuple[Callable[[], lock.Lock], ...] = (
            lambda: lock.take(t, str(host.lock), "r2", lease=lock.Lease("wf/r2", 30)),
            lambda: lock.take(t, str(host.lock), "r2", take_over="r2", lease=lock.Lease("wf/r2", 30)),
            lambda: lock.take(t, str(host.lock), "r1"))  # the run itself, but not as a take-over
        for other in others:
            with pytest.raises(ConflictError, match="stale lock"):
                other()
        assert host.lock.read_bytes() == data
        live = plant(host.lock, leased_doc("r1"), age=0)
        anyone_at_all: tuple[Callable[[], lock.Lock], ...] = (
            lambda: lock.take(t, str(host.lock), "r1", take_over="r1", lease=lock.Lease("wf/r1", 30)),
            lambda: lock.take(t, str(host.lock), "r2", break_lock=True))
        for anyone in anyone_at_all:
            with pytest.raises(ConflictError, match="another remediate run holds"):
                anyone()
        assert host.lock.read_bytes() == live
        lapse(host.lock)
        retry = lock.Lease("wf-attack/r1", 30)
        taken = lock.take(t, str(host.lock), "r1", take_over="r1", lease=retry)
        assert json.loads(host.lock.read_bytes())["lease"]["token"] == retry.token
        taken.release()


def test_of_two_takers_of_a_lapsed_lease_exactly_one_wins(host: Host) -> None:
    def take(t: Transport, lease: lock.Lease, gate: threading.Barrier, won: list[lock.Lock],
             lost: list[Exception]) -> None:
        gate.wait(10)
        try:
            won.append(lock.take(t, str(host.lock), "r1", take_over="r1", lease=lease))
        except ConflictError as e:
            lost.append(e)

    with transport_to(host) as first, transport_to(host) as second, state_folder(host):
        for _ in range(5):
            plant(host.lock, leased_doc("r1"), age=3600)
            leases = [lock.Lease("wf-attack/r1", 30) for _ in range(2)]
            gate = threading.Barrier(2)
            won: list[lock.Lock] = []
            lost: list[Exception] = []
            threads = [threading.Thread(target=take, args=(t, lease, gate, won, lost))
                       for t, lease in zip((first, second), leases)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert len(won) == 1 and len(lost) == 1, (won, lost)
            assert json.loads(host.lock.read_bytes())["lease"]["token"] == won[0].token
            loser = next(x.token for x in leases if x.token != won[0].token)
            with pytest.raises(LeaseLost):  # the loser never held it: it can neither renew nor release it
                lock.Lock(second, str(host.lock), "r1", loser).renew()
            assert json.loads(host.lock.read_bytes())["lease"]["token"] == won[0].token
            won[0].release()


def test_a_take_over_races_a_renewal_and_a_release(host: Host) -> None:
    with state_folder(host) as t:
        holder = lock.Lock(t, str(host.lock), "r1", "a" * 32)
        seen = plant(host.lock, leased_doc("r1"), age=3600).hex()
        holder.renew()  # the holder came back before the taker's replace: same bytes, a live lease again
        result = t.operation("take_lock", str(host.lock), seen, stdin=b"{}", display="take over")
        assert result.exit_code == lock.HELD_EXIT and json.loads(host.lock.read_bytes())["lease"]["token"] == "a" * 32
        lapse(host.lock)
        holder.release()  # the holder released between the taker's look and its replace: the taker creates it
        b = lock.Lease("wf-attack/r1", 30)
        result = t.operation("take_lock", str(host.lock), seen, stdin=json.dumps(leased_doc("r1", b.token)).encode(),
                             display="take over")
        assert result.ok and json.loads(host.lock.read_bytes())["lease"]["token"] == b.token
        for what in ("renew", "release"):  # and the old holder, late, finds the lock someone else's
            late = lock.Lock(t, str(host.lock), "r1", "a" * 32)
            with pytest.raises(LeaseLost, match="now held by run r1"):
                getattr(late, what)()
            assert late.lost and json.loads(host.lock.read_bytes())["lease"]["token"] == b.token
            late.release()  # lost: never asks the host again
        assert json.loads(host.lock.read_bytes())["lease"]["token"] == b.token


def test_a_lease_renewed_in_the_future_by_the_hosts_clock_is_live_for_everyone(host: Host) -> None:
    with state_folder(host) as t:
        data = plant(host.lock, leased_doc("r1"), age=-86400)  # the host's clock stepped back a day since
        anyone_at_all: tuple[Callable[[], lock.Lock], ...] = (
            lambda: lock.take(t, str(host.lock), "r1", take_over="r1", lease=lock.Lease("wf/r1", 30)),
            lambda: lock.take(t, str(host.lock), "r2", break_lock=True))
        for anyone in anyone_at_all:
            with pytest.raises(ConflictError, match="another remediate run holds"):
                anyone()
        assert host.lock.read_bytes() == data


def test_a_lock_without_a_lease_is_judged_by_its_process_whatever_its_mtime(host: Host) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    with state_folder(host) as t:
        elsewhere = plant(host.lock, {"run_id": "r1", "pid": 1, "machine": "machine-a"}, age=86400)
        with pytest.raises(ConflictError, match="break-lock"):
            lock.take(t, str(host.lock), "r1", take_over="r1", lease=lock.Lease("wf/r1", 30))
        assert host.lock.read_bytes() == elsewhere
        here = plant(host.lock, {"run_id": "r1", "pid": os.getpid(), "machine": socket.gethostname()}, age=86400)
        with pytest.raises(ConflictError, match="another remediate run holds"):
            lock.take(t, str(host.lock), "r1", take_over="r1", break_lock=True)
        assert host.lock.read_bytes() == here
        plant(host.lock, {"run_id": "r1", "pid": gone.pid, "machine": socket.gethostname()}, age=0)
        lock.take(t, str(host.lock), "r1", take_over="r1").release()
        plant(host.lock, {"run_id": "r1", "pid": 1, "machine": "machine-a"}, age=0)
        lock.take(t, str(host.lock), "r2", break_lock=True).release()
    assert not host.lock.exists()


def test_a_step_that_fails_after_the_take_over_makes_the_fenced_out_attempt_undo_nothing(
        host: Host, machine_a: None) -> None:
    run_id = journal.new_run_id()
    book = host.tmp / "fails.yml"
    book.write_text(gated_book("fails", host.work, "fails", "; exit 1"))
    b_lease = lock.Lease("wf-attack/" + run_id, 600)
    copy_at_take_over: list[bytes] = []

    def b_takes_over() -> None:  # while A's step runs on the host, A cut off: B takes the run over
        until(lambda: (host.work / "started").exists(), "A inside its step", 60)
        lapse(host.lock)
        with transport_to(host) as t:
            lock.take(t, str(host.lock), run_id, take_over=run_id, lease=b_lease)
        copy_at_take_over.append(host.copy(run_id).read_bytes())
        (host.work / "go").touch()  # A's step ends, failing: A's failure path would roll back

    b = threading.Thread(target=b_takes_over)
    b.start()
    opts = api.Options(inventory=host.inventory, hosts=("nopw",), playbook=str(book))
    notices: list[str] = []
    with lock.leased("wf-attack/" + run_id, 5), journal.chosen_run_id(run_id):
        (outcome,) = api.apply(opts, lambda e: notices.append(getattr(e, "message", "")),
                               api.ssh_factory(opts, lambda e: None, lambda name: ""), lambda bound: True)
    b.join(60)
    assert outcome.status == "error" and "lost its lease" in outcome.message, outcome
    assert (host.work / "app.conf").read_bytes() == b"fixed\n"  # nothing undone: the run is B's
    assert json.loads(host.lock.read_bytes())["lease"]["token"] == b_lease.token  # nor released
    assert host.copy(run_id).read_bytes() == copy_at_take_over[0]  # nor its journal copy written
    (record,) = [r for r in journal.history("nopw") if r["run_id"] == run_id]
    assert record["outcome"] == "taken-over" and record["steps"][0]["state"] == "verified", record


def test_a_rollback_taken_over_between_two_undos_stops_at_once(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = journal.new_run_id()
    book = host.tmp / "two.yml"
    book.write_text(f"name: two\nsteps:\n"
                    f"  - id: conf\n    kind: file\n    params: {{path: \"{host.work}/app.conf\", content: \"fixed\\n\"}}\n"
                    f"  - id: extra\n    kind: file\n    params: {{path: \"{host.work}/app.extra\", content: \"x\\n\"}}\n")
    opts = api.Options(inventory=host.inventory, hosts=("nopw",), playbook=str(book))
    factory = api.ssh_factory(opts, lambda e: None, lambda name: "")
    with lock.leased("wf-attack/" + run_id, 600), journal.chosen_run_id(run_id):
        (applied,) = api.apply(opts, lambda e: None, factory, lambda bound: True)
    assert applied.status == "changed" and not host.lock.exists(), applied
    b_lease = lock.Lease("wf-attack/" + run_id, 600)
    renew = lock.Lock.renew
    renewals: list[str] = []

    def b_between_the_undos(self: lock.Lock) -> None:
        renewals.append(self.run_id)
        if len(renewals) == 2:  # the first undo (extra, the newest) done: A stalls, B takes the rollback over
            lapse(host.lock)
            with transport_to(host) as t:
                lock.take(t, str(host.lock), run_id, take_over=run_id, lease=b_lease)
        renew(self)

    monkeypatch.setattr(lock.Lock, "renew", b_between_the_undos)
    with lock.leased("wf-attack/" + run_id, 600):
        (undone,) = api.rollback(api.Options(inventory=host.inventory, hosts=("nopw",)), run_id, lambda e: None,
                                 api.ssh_factory(opts, lambda e: None, lambda name: ""), lambda record: True)
    assert undone.status == "error" and "lost its lease" in undone.message, undone
    assert not (host.work / "app.extra").exists() and (host.work / "app.conf").read_bytes() == b"fixed\n"
    assert json.loads(host.lock.read_bytes())["lease"]["token"] == b_lease.token
    (record,) = [r for r in journal.history("nopw") if r["run_id"] == run_id]
    assert record["outcome"] == "taken-over"
    assert [s["state"] for s in record["steps"]] == ["verified", "rolled-back"], record["steps"]


def test_a_lease_reaches_only_the_runs_made_inside_its_block_whatever_the_thread(host: Host) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from remediate.engine.undo import Undo

    def made() -> lock.Lease | None:
        return Undo(pool=None, emit=lambda e: None).lease  # type: ignore[arg-type]

    inside = threading.Event()
    leave = threading.Event()

    def leased_then_not() -> tuple[lock.Lease | None, lock.Lease | None]:
        with lock.leased("wf-attack/r1", 30) as lease:
            within = made()
            assert within is lease
            inside.set()
            leave.wait(30)
        return within, made()

    with ThreadPoolExecutor(max_workers=1) as pool:  # serve's worker threads: one thread, one task after another
        first = pool.submit(leased_then_not)
        assert inside.wait(30)
        assert made() is None and lock.current_lease() is None  # another thread meanwhile: a CLI run's lock
        leave.set()
        within, after = first.result(30)
        assert within is not None and after is None
        assert pool.submit(made).result(30) is None and pool.submit(lock.current_lease).result(30) is None
    with pytest.raises(RuntimeError), lock.leased("wf-attack/r2", 30):
        raise RuntimeError("the activity failed inside its block")
    assert lock.current_lease() is None and made() is None



def test_a_rollback_fenced_out_at_its_release_leaves_the_copy_to_the_taker(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = journal.new_run_id()
    with monkeypatch.context() as m:
        m.setattr(socket, "gethostname", lambda: "machine-a")
        applied_by_a(host, run_id)
    b_lease = lock.Lease("wf-attack/" + run_id, 600)
    seen_copy: list[bytes] = []

    def b_takes_over() -> None:
        lapse(host.lock)
        with transport_to(host) as t:
            lock.take(t, str(host.lock), run_id, take_over=run_id, lease=b_lease)
        seen_copy.append(host.copy(run_id).read_bytes())

    with lock.leased("wf-attack/" + run_id, 600) as a_lease:
        before_release(monkeypatch, lambda: a_lease.token, b_takes_over)
        opts = api.Options(inventory=host.inventory, hosts=("nopw",))
        (undone,) = api.rollback(opts, run_id, lambda e: None, api.ssh_factory(opts, lambda e: None, lambda name: ""),
                                 lambda record: True)
    assert seen_copy and json.loads(host.lock.read_bytes())["lease"]["token"] == b_lease.token, undone
    assert host.copy(run_id).read_bytes() == seen_copy[0], (runrecord.newest(host.copy(run_id).read_bytes())["outcome"],
                                                           undone)
