"""Host locks held by a lease (#24): the host-side operations run here (onhost.folders, as the agent runs them), and
lock.take's decisions through LocalTransport, which runs the host's own code in a python3 of its own: a lease is alive
while the host's clock says it was renewed less than its seconds ago, a lapsed one is taken over only by the same run
(or --break-lock), a live one by nobody; renewal and release are fenced by the attempt's token; of two takers of one
stale lock, one wins."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from remediate.engine import lock
from remediate.errors import ConflictError, LeaseLost
from remediate.transport import OPERATION
from remediate.transport.local import LocalTransport
from remediate.transport.onhost import common, folders


def doc(run_id: str, token: str | None = None, seconds: float = 30, machine: str = "worker-a") -> bytes:
    """A lock's content: leased when given a token."""
    found = {"run_id": run_id, "operator": "serve@worker-a", "started": "2026-12-01T00:00:00+00:00", "pid": 1,
             "machine": machine}
    if token is not None:
        found["lease"] = {"holder": f"wf-1/{run_id}", "token": token, "seconds": seconds}
    return json.dumps(found).encode()


def host(operation: str, *args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    """One host-side operation, run in this process as the agent runs it."""
    answer = common.Answer()
    code = getattr(folders, operation)(list(args), stdin, answer)
    return code, b"".join(answer.out), b"".join(answer.err)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    made = tmp_path / "state"
    made.mkdir(mode=0o700)
    return made


def held(state: Path, content: bytes, age: float = 0) -> str:
    """A lock of that content whose mtime is `age` seconds ago by this machine's clock (the host's here)."""
    (state / "lock").write_bytes(content)
    then = time.time() - age
    os.utime(state / "lock", (then, then))
    return str(state / "lock")


# --- the host side -------------------------------------------------------------------------------------------------

def test_a_held_lock_shows_its_holder_then_its_age_on_a_line_of_its_own(state: Path) -> None:
    content = doc("R1", "t" * 32) + b"\nage=99999"  # a holder whose bytes look like an age line: still its own
    path = held(state, content, age=120)
    code, out, _ = host("take_lock", path, stdin=doc("R2"))
    assert code == 4
    body, _, last = out.removesuffix(b"\n").rpartition(b"\n")
    assert body == content and last.startswith(b"age=") and 119 <= int(last[4:]) <= 121
    found, age, seen = lock.parse(out.decode())
    assert seen.encode() == content and age is not None and 119 <= age <= 121
    assert host("show_lock", path) == (0, out[:-len(last) - 1] + last + b"\n", b"")


def test_replace_if_same_refuses_bytes_that_changed_and_a_live_lease(state: Path) -> None:
    seen = doc("R1")
    path = held(state, seen)
    (state / "lock").write_bytes(doc("R3"))  # another taker came first
    code, out, _ = host("take_lock", path, seen.hex(), stdin=doc("R2"))
    assert code == 4 and lock.parse(out.decode())[0]["run_id"] == "R3"
    assert (state / "lock").read_bytes() == doc("R3")

    live = doc("R1", "a" * 32, seconds=30)
    held(state, live, age=5)  # seen as it is, but its lease was renewed 5 s ago: never taken
    code, _, _ = host("take_lock", path, live.hex(), stdin=doc("R2"))
    assert code == 4 and (state / "lock").read_bytes() == live

    held(state, live, age=60)  # the same bytes, lapsed: replaced
    assert host("take_lock", path, live.hex(), stdin=doc("R2"))[0] == 0
    assert (state / "lock").read_bytes() == doc("R2") and (state / "lock").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in state.iterdir()) == ["lock"]  # no temporary file left beside it


def test_a_lock_released_meanwhile_is_taken_as_a_free_one(state: Path) -> None:
    path = str(state / "lock")
    assert host("take_lock", path, doc("R1").hex(), stdin=doc("R2"))[0] == 0
    assert (state / "lock").read_bytes() == doc("R2")


def test_renew_and_release_are_fenced_by_the_token(state: Path) -> None:
    ours, theirs = "a" * 32, "b" * 32
    path = held(state, doc("R1", ours), age=100)
    code, out, _ = host("renew_lock", path, theirs)
    assert code == 4 and lock.parse(out.decode())[0]["lease"]["token"] == ours
    assert time.time() - (state / "lock").stat().st_mtime >= 99  # not renewed
    assert host("release_lock", path, theirs)[0] == 4 and (state / "lock").exists()

    assert host("renew_lock", path, ours) == (0, b"", b"")
    assert time.time() - (state / "lock").stat().st_mtime < 5
    assert host("release_lock", path, ours) == (0, b"", b"")
    assert not (state / "lock").exists()
    assert host("release_lock", path, ours)[0] == 3  # absent: the lease is lost, never taken for released
    assert host("renew_lock", path, ours)[0] == 3  # absent: the lease is lost
    assert host("show_lock", path)[0] == 3


def test_a_release_writes_the_journal_it_carries_only_while_the_lock_carries_its_token(state: Path) -> None:
    ours, theirs = "a" * 32, "b" * 32
    (state / "R1").mkdir(mode=0o700)
    copy = state / "R1" / "journal.json"
    copy.write_bytes(b"the taker's copy")
    path = held(state, doc("R1", theirs))
    assert host("release_lock", path, ours, str(copy), stdin=b"applied")[0] == 4  # fenced out: nothing written
    assert copy.read_bytes() == b"the taker's copy" and (state / "lock").exists()
    os.unlink(path)
    assert host("release_lock", path, ours, str(copy), stdin=b"applied")[0] == 3  # gone: lost, nothing written
    assert copy.read_bytes() == b"the taker's copy"
    path = held(state, doc("R1", ours))
    assert host("release_lock", path, ours, str(copy), stdin=b"applied") == (0, b"", b"")
    assert copy.read_bytes() == b"applied" and copy.stat().st_mode & 0o777 == 0o600 and not (state / "lock").exists()
    path = held(state, doc("R1", ours))
    code, _, err = host("release_lock", path, ours, str(state / "none" / "journal.json"), stdin=b"applied")
    assert code == 8 and b"cannot write the journal" in err and (state / "lock").exists()  # the lock kept: said


def test_a_fifo_or_a_folder_at_the_locks_name_is_refused_without_being_opened(state: Path) -> None:
    os.mkfifo(state / "lock", 0o600)  # opened for reading, it would block until someone writes to it
    with ThreadPoolExecutor(max_workers=1) as pool:
        for operation, *args in (("show_lock",), ("renew_lock", "a" * 32), ("release_lock", "a" * 32),
                                 ("take_lock", doc("R1").hex()), ("take_lock",)):
            asked = pool.submit(host, operation, str(state / "lock"), *args, stdin=doc("R2"))
            try:
                code, _, err = asked.result(timeout=20)
            finally:  # a blocked open goes on (reading nothing), so that the test ends either way
                try:
                    os.close(os.open(state / "lock", os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
            assert code == 5 and b"not a regular file" in err, (operation, code, err)
    assert (state / "lock").is_fifo()
    os.unlink(state / "lock")
    (state / "lock").mkdir()
    assert host("show_lock", str(state / "lock"))[0] == 5


def test_the_lease_operations_never_make_the_folder_and_refuse_one_others_could_change(tmp_path: Path) -> None:
    missing = str(tmp_path / "none" / "lock")
    assert host("show_lock", missing)[0] == 3 and host("renew_lock", missing, "a" * 32)[0] == 3
    assert host("release_lock", missing, "a" * 32)[0] == 3
    assert not (tmp_path / "none").exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "lock").write_bytes(doc("R1", "a" * 32))
    link = tmp_path / "link"
    link.symlink_to(shared)
    for folder in (shared, link):
        for operation, *args in (("renew_lock", "a" * 32), ("release_lock", "a" * 32), ("show_lock",)):
            code, out, err = host(operation, str(folder / "lock"), *args)
            assert code == folders.REFUSED and b"refusing to use" in err and not out, (operation, folder)
    assert (shared / "lock").exists()


def test_of_many_takers_of_one_lapsed_lock_one_wins(state: Path) -> None:
    """Eight processes take over the same lapsed lock at once, each having seen it: the flock on its folder lets
    exactly one replace it; the others are shown the winner."""
    stale = doc("R1", "a" * 32, seconds=10)
    path = held(state, stale, age=60)

    def take(n: int) -> int:
        transport = LocalTransport(name="h1")
        return transport.run([OPERATION, "take_lock", path, stale.hex()], stdin=doc(f"T{n}")).exit_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(take, range(8)))
    assert sorted(codes) == [0] + [4] * 7
    winner = json.loads((state / "lock").read_bytes())["run_id"]
    assert winner == f"T{codes.index(0)}"


# --- lock.take, renew and release over LocalTransport ------------------------------------------------------------

def test_a_live_lease_is_never_taken_by_anyone(state: Path) -> None:
    t = LocalTransport(name="h1")
    path = held(state, doc("R1", "a" * 32, seconds=30, machine=os.uname().nodename), age=2)
    for run_id, kwargs in (("R2", {}), ("R2", {"break_lock": True}), ("R1", {"take_over": "R1"}),
                           ("R1", {"take_over": "R1", "break_lock": True})):
        with pytest.raises(ConflictError, match="another remediate run holds .* lease of wf-1/R1 for 30 s"):
            lock.take(t, path, run_id, **kwargs, lease=lock.Lease("wf-1/R1", 30))
    assert json.loads((state / "lock").read_bytes())["lease"]["token"] == "a" * 32


def test_a_lapsed_lease_is_taken_over_by_its_own_run_and_broken_only_when_asked(state: Path) -> None:
    t = LocalTransport(name="h1")
    path = held(state, doc("R1", "a" * 32, seconds=10), age=60)
    with pytest.raises(ConflictError, match="stale lock .* its lease lapsed") as e:
        lock.take(t, path, "R3")
    assert "--break-lock" in str(e.value)
    lease = lock.Lease("wf-1/R1", 10)
    taken = lock.take(t, path, "R1", take_over="R1", lease=lease)
    found = json.loads((state / "lock").read_bytes())
    assert found["lease"] == {"holder": "wf-1/R1", "token": lease.token, "seconds": 10.0} and taken.token == lease.token
    held(state, doc("R1", "a" * 32, seconds=10), age=60)
    lock.take(t, path, "R3", break_lock=True)
    assert json.loads((state / "lock").read_bytes())["run_id"] == "R3"


def test_renew_raises_lease_lost_once_another_attempt_took_over_and_release_leaves_its_lock(state: Path) -> None:
    t = LocalTransport(name="h1")
    first = lock.take(t, str(state / "lock"), "R1", lease=lock.Lease("wf-1/R1", 10))
    first.renew()
    old = time.time() - 60
    os.utime(state / "lock", (old, old))  # the first attempt's worker went silent: its lease lapsed
    second = lock.take(t, str(state / "lock"), "R1", take_over="R1", lease=lock.Lease("wf-1/R1", 10))
    with pytest.raises(LeaseLost, match="lost its lease .* another attempt of the run took it over"):
        first.renew()
    assert first.lost
    first.release()  # a no-op: the lock is the second attempt's
    assert json.loads((state / "lock").read_bytes())["lease"]["token"] == second.token
    second.release()
    assert not (state / "lock").exists()


def test_a_lease_is_released_only_by_the_attempt_that_holds_it(state: Path) -> None:
    t = LocalTransport(name="h1")
    mine = lock.take(t, str(state / "lock"), "R1", lease=lock.Lease("wf-1/R1", 10))
    (state / "lock").write_bytes(doc("R1", "b" * 32))  # taken over meanwhile (here: by hand)
    with pytest.raises(LeaseLost):
        mine.release()
    assert json.loads((state / "lock").read_bytes())["lease"]["token"] == "b" * 32


def test_a_lock_without_a_lease_costs_what_it_did(state: Path) -> None:
    """A CLI run: take and release are one operation each, and renewal none at all."""
    t = LocalTransport(name="h1")
    taken = lock.take(t, str(state / "lock"), "R1")
    assert "lease" not in json.loads((state / "lock").read_bytes())
    taken.renew()
    taken.release()
    assert [r.command for r in t.history] == [f"lock {state}/lock", f"rm -f -- {state}/lock"]


def test_leased_gives_each_block_its_own_token() -> None:
    assert lock.current_lease() is None
    with lock.leased("wf-1/R1", 12) as one:
        assert lock.current_lease() is one and one.seconds == 12.0 and len(one.token) >= 16
    with lock.leased("wf-1/R1", 12) as two:
        assert two.token != one.token
    assert lock.current_lease() is None
