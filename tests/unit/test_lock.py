from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from remediate.engine import lock
from remediate.errors import ConflictError
from remediate.transport.onhost.common import os as host_os  # what the host side calls os (the built-in posix)

from .fakes import FakeTransport

PATH = "/opt/app/.remediate/lock"


def holder(pid: int, machine: str | None = None) -> bytes:
    return json.dumps({"run_id": "R1", "operator": "alice@box", "started": "2026-11-28T03:00:00+00:00",
                       "pid": pid, "machine": machine or socket.gethostname()}).encode()


def dead_pid() -> int:
    return 2**22 + 12345  # above pid_max's default: never a live process


def test_second_run_refuses_and_names_the_holder() -> None:
    t = FakeTransport(name="h1")
    first = lock.take(t, PATH, "R1")
    with pytest.raises(ConflictError) as e:
        lock.take(t, PATH, "R2")
    message = str(e.value)
    assert "another remediate run holds" in message and "run R1 by" in message and "since 20" in message
    first.release()
    lock.take(t, PATH, "R2").release()


def test_stale_lock_is_reported_and_broken_only_when_asked() -> None:
    t = FakeTransport(name="h1")
    t.put(PATH, holder(dead_pid()))
    with pytest.raises(ConflictError, match="stale lock .* that process is gone") as e:
        lock.take(t, PATH, "R2")
    assert "--break-lock" in str(e.value)
    held = lock.take(t, PATH, "R2", break_lock=True)
    assert json.loads(t.files[PATH].content)["run_id"] == "R2"
    held.release()
    assert PATH not in t.files


def test_a_live_holder_on_this_machine_is_never_broken() -> None:
    import os
    t = FakeTransport(name="h1")
    t.put(PATH, holder(os.getpid()))
    with pytest.raises(ConflictError, match="wait for it to finish"):
        lock.take(t, PATH, "R2", break_lock=True)


def test_a_holder_elsewhere_can_be_broken_explicitly() -> None:
    t = FakeTransport(name="h1")
    t.put(PATH, holder(1, machine="other-laptop"))
    with pytest.raises(ConflictError, match="if that run is gone, run again with --break-lock"):
        lock.take(t, PATH, "R2")
    lock.take(t, PATH, "R2", break_lock=True)


def test_rollback_takes_over_the_lock_of_the_run_it_undoes() -> None:
    t = FakeTransport(name="h1")
    t.put(PATH, holder(dead_pid()))
    lock.take(t, PATH, "R1", take_over="R1")
    with pytest.raises(ConflictError):
        lock.take(t, PATH, "R3")


def test_rollback_never_takes_over_a_live_run_even_its_own() -> None:
    import os
    t = FakeTransport(name="h1")
    t.put(PATH, holder(os.getpid()))
    for kwargs in ({"take_over": "R1"}, {"take_over": "R1", "break_lock": True}):
        with pytest.raises(ConflictError, match="wait for it to finish"):
            lock.take(t, PATH, "R1", **kwargs)
    assert json.loads(t.files[PATH].content)["pid"] == os.getpid()


def test_the_lock_folder_swapped_for_a_link_after_it_was_made_is_never_read_or_written_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user renames the lock's folder away and puts a link to a folder of theirs in its place, holding a link
    named `lock` to a file only root may read, between the look at the folder and the use of the lock (here: at the
    check of the open folder). The lock is taken in the folder that was opened and checked, not through the name: the
    secret is neither shown as a holder nor written. The host-side code runs in this process, to be hooked."""
    from remediate.transport.onhost import common, folders

    state, theirs = tmp_path / "state", tmp_path / "theirs"
    state.mkdir(mode=0o700)
    theirs.mkdir(mode=0o777)
    secret = tmp_path / "root-only"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    (theirs / "lock").symlink_to(secret)
    fstat = os.fstat

    def swap(fd: int) -> os.stat_result:
        if not state.is_symlink():
            state.rename(tmp_path / "moved")
            state.symlink_to(theirs)
        return fstat(fd)

    monkeypatch.setattr(host_os, "fstat", swap)
    answer = common.Answer()
    code = folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', answer)
    monkeypatch.undo()
    assert state.is_symlink(), "the swap happened"
    assert b"root's secret" not in b"".join(answer.out + answer.err)
    assert secret.read_text() == "root's secret\n"
    assert code == 0 and (tmp_path / "moved" / "lock").read_bytes() == b'{"run_id": "r1"}', answer.err


def test_a_holder_whose_pid_now_belongs_to_another_process_is_gone() -> None:
    """A lock (or a journal) written before a reboot, or before a container restarted with the same host name, whose
    pid a live process has since taken: by the recorded process identity (boot id and start time) the holder is
    gone, so the stale lock is reported as such and --break-lock takes it; the live process itself is left alone."""
    from remediate.engine import runrecord
    me = runrecord.process()
    assert me is not None and me.count("/") == 2  # this machine is Linux: /proc answers
    boot, started, spaces = me.split("/")
    t = FakeTransport(name="h1")
    doc = json.loads(holder(os.getpid()))
    alive = [me, f"{boot}/{int(started) + 1}/other-namespaces", "a-record-of-another-form"]
    for seen in alive:  # itself; a process of another container of the same host name (not comparable); unknown
        t.put(PATH, json.dumps({**doc, "process": seen}).encode())
        with pytest.raises(ConflictError, match="wait for it to finish"):  # a live holder: never broken
            lock.take(t, PATH, "R2", break_lock=True)
        assert runrecord.live("running", False, socket.gethostname(), os.getpid(), seen) == "running"
    for gone in (f"another-boot/{started}/{spaces}", f"{boot}/{int(started) + 1}/{spaces}"):  # rebooted; pid reused
        t.put(PATH, json.dumps({**doc, "process": gone}).encode())
        with pytest.raises(ConflictError, match="stale lock .* that process is gone"):
            lock.take(t, PATH, "R2")
        assert runrecord.live("running", False, socket.gethostname(), os.getpid(), gone) == "interrupted"
    lock.take(t, PATH, "R2", break_lock=True).release()
    assert runrecord.live("running", False, socket.gethostname(), os.getpid(), None) == "running"  # an older record


def test_a_lock_and_a_journal_record_which_process_wrote_them() -> None:
    from remediate.engine import journal, runrecord
    t = FakeTransport(name="h1")
    held = lock.take(t, PATH, "R1")
    assert json.loads(t.files[PATH].content)["process"] == runrecord.process()
    held.release()
    record = journal.Journal.start(run_id="R1", host="h1", address="127.0.0.1", playbook="p", playbook_path="/p.yml",
                                   variables={}, steps=[]).record
    assert record["process"] == runrecord.process() and record["pid"] == os.getpid()
    assert runrecord.summary(record)["process"] == record["process"]  # the run index keeps it for `runs`
