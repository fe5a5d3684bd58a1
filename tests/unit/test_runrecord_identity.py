"""Who and which process a lock and a journal name: read once a process (a lock and a journal of every host each
record them), and anew in a forked child, which is another process."""

from __future__ import annotations

import getpass
import os

import pytest

from remediate.engine import runrecord


def test_this_process_is_read_once_and_a_forked_child_reads_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int | None] = []
    real = runrecord._process
    monkeypatch.setattr(runrecord, "_process", lambda pid: (reads.append(pid), real(pid))[1])
    monkeypatch.setattr(runrecord, "_own", None)
    mine = runrecord.process()
    assert mine is not None and runrecord.process() == mine == real(None) and reads == [None]
    assert runrecord.process(os.getpid()) == mine and reads == [None, os.getpid()]  # another pid: read each time
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # the child's own identity, not its parent's kept one
        try:
            os.write(w, f"{runrecord.process()}|{real(None)}".encode())
        finally:
            os._exit(0)
    os.close(w)
    seen, fresh = os.read(r, 4096).decode().split("|")
    os.close(r)
    os.waitpid(child, 0)
    assert seen == fresh != mine and runrecord.process() == mine


def test_the_operator_is_looked_up_once_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(getpass, "getuser", lambda: (asked.append("x"), "ops")[1])
    runrecord._user.cache_clear()
    try:
        assert runrecord.operator().startswith("ops@") and runrecord.operator().startswith("ops@") and asked == ["x"]
    finally:
        runrecord._user.cache_clear()
