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


def test_a_failed_read_of_this_process_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of file descriptors for a moment: that record says nothing of the process, and the next one does."""
    real = runrecord._process
    answers = iter([None])
    monkeypatch.setattr(runrecord, "_process", lambda pid: next(answers, real(pid)))
    monkeypatch.setattr(runrecord, "_own", None)
    assert runrecord.process() is None
    assert runrecord.process() == real(None) is not None


def test_the_operator_is_the_environments_name_else_the_databases_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    asked: list[str] = []
    answers = iter([OSError("the database did not answer")])

    def getuser() -> str:
        asked.append("x")
        failure = next(answers, None)
        if failure is not None:
            raise failure
        return "ops"
    monkeypatch.setattr(getpass, "getuser", getuser)
    monkeypatch.setattr(runrecord, "_users", {})
    assert runrecord.operator().startswith(f"{os.getuid()}@")  # not found: the uid, and asked again next time
    assert runrecord.operator().startswith("ops@") and runrecord.operator().startswith("ops@")
    assert asked == ["x", "x"]  # found once, then kept
    monkeypatch.setenv("USER", "alice")
    assert runrecord.operator().startswith("alice@")
    monkeypatch.setenv("LOGNAME", "bob")  # the environment is read each time, in getpass's order
    assert runrecord.operator().startswith("bob@") and asked == ["x", "x"]
