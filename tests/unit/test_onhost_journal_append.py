"""The host's journal copy, as journal_then writes it before each command: whole the first time, then each newer
record a line added to the copy this agent wrote, synced before the command runs; written whole again when the copy
is not as this agent left it, when an append failed, or before the lines pass APPENDED times the record. A leased
lock's release always writes it whole. The controller reads its newest whole line (hostcopy)."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.engine import runrecord
from remediate.transport.onhost import common, folders, loop
from remediate.transport.onhost.common import Answer
from remediate.transport.onhost.common import os as host_os  # what the host side calls os (the built-in posix)


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    common._WHOLE.clear()  # what an agent wrote is its own: each test is a fresh agent
    yield
    common._WHOLE.clear()


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "state" / "run1"
    folder.mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    return folder


def record(n: int, pad: int = 40) -> bytes:
    return json.dumps({"run_id": "r1", "n": n, "pad": "x" * pad}).encode() + b"\n"


def then(run: Path, data: bytes, *command: str) -> int:
    return loop.journal_then([str(run / "journal.json"), str(len(data)), *(command or ("true",))], data, Answer())


def test_each_newer_record_is_a_line_synced_before_the_command(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert then(run, record(1)) == 0
    seen: list[str] = []
    fsync = os.fsync
    monkeypatch.setattr(host_os, "fsync", lambda fd: (seen.append(os.readlink(f"/proc/self/fd/{fd}")), fsync(fd))[1])
    marker = run.parent.parent / "ran"
    assert then(run, record(2), "touch", str(marker)) == 0 and marker.exists()
    assert seen == [str(run / "journal.json")]  # the copy itself, no new file, no rename, no folder sync
    assert (run / "journal.json").read_bytes() == record(1) + record(2)
    assert runrecord.newest((run / "journal.json").read_bytes())["n"] == 2


def test_a_copy_not_as_this_agent_left_it_is_written_whole(run: Path) -> None:
    copy = run / "journal.json"
    assert then(run, record(1)) == 0
    with open(copy, "ab") as f:
        f.write(b'{"run_id": "r1", "n": 9')  # another writer's line, or one cut short
    assert then(run, record(2)) == 0 and copy.read_bytes() == record(2)
    replaced = run / "other"
    replaced.write_bytes(record(3))
    os.chmod(replaced, 0o600)
    os.replace(replaced, copy)  # another agent's copy, of the same size as ours
    assert then(run, record(4)) == 0 and copy.read_bytes() == record(4)


def test_a_failed_append_is_never_continued(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = run / "journal.json"
    assert then(run, record(1)) == 0
    real = os.write
    failed: list[int] = []

    def half_then_full(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}") == str(copy) and not failed:
            failed.append(real(fd, bytes(data)[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)
    monkeypatch.setattr(host_os, "write", half_then_full)
    assert then(run, record(2)) == 0 and failed  # written whole instead, over the half line
    assert copy.read_bytes() == record(2)
    assert then(run, record(3)) == 0 and copy.read_bytes() == record(2) + record(3)


def test_the_copy_stays_small_and_the_release_writes_it_whole(run: Path) -> None:
    copy = run / "journal.json"
    for n in range(60):
        assert then(run, record(n)) == 0
        assert copy.stat().st_size <= (common.APPENDED + 1) * len(record(n))
        assert runrecord.newest(copy.read_bytes())["n"] == n
    state, token = run.parent, "c" * 32
    lease = b'{"run_id": "r1", "lease": {"token": "%s", "seconds": 60}}' % token.encode()
    assert folders.take_lock([f"{state}/lock"], lease, Answer()) == 0
    answer = Answer()
    assert folders.release_lock([f"{state}/lock", token, str(copy)], record(99), answer) == 0, answer.err
    assert copy.read_bytes() == record(99)  # what a retried release compares byte for byte (lock._released_before)
