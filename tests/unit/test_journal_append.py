"""A running run's journal grows by a line per record (runrecord.KeptFile) and is written whole, as one line, at the
run's end: the newest whole line is the record, a line a kill cut short is never read as one nor continued, the file
stays small however long the run, and the run index sees every line appended without the runs folder changing."""

from __future__ import annotations

import errno
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from remediate import private
from remediate.engine import journal, runindex, runrecord
from remediate.errors import InputError

from .fakes import FakeTransport

RUN_ID = "20261206T120000Z-abcdef"


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(private, "_trusted", set())


def started(steps: int = 3) -> journal.Journal:
    j = journal.Journal.start(run_id=RUN_ID, host="h1", address="127.0.0.1", playbook="p", playbook_path="/p.yml",
                              variables={}, steps=[journal.StepRecord(f"s{n}", "file", "host", {}, "planned")
                                                   for n in range(steps)])
    j.save(remote=False)
    return j


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_a_running_run_appends_a_line_per_record_and_its_end_writes_one() -> None:
    j = started()
    j.update_step("s0", state="applying")
    j.update_step("s0", durable=True, state="applied")
    assert [[s["state"] for s in r["steps"]][0] for r in lines(j.path)] == ["planned", "applying", "applied"]  # type: ignore[index]
    assert journal.Journal.load(j.path).step("s0")["state"] == "applied"
    j.finish("applied")
    assert [r["outcome"] for r in lines(j.path)] == ["applied"]
    assert sorted(p.name for p in j.path.parent.iterdir()) == [j.path.name]


def test_a_line_cut_short_is_not_the_record_and_is_never_continued(monkeypatch: pytest.MonkeyPatch) -> None:
    j = started()
    j.update_step("s0", state="applying")
    whole = j.path.read_bytes()
    with open(j.path, "ab") as f:  # what a kill in the middle of the next append leaves
        f.write(whole.splitlines(keepends=True)[-1][:-40])
    assert runrecord.read(j.path)["steps"][0]["state"] == "applying"
    assert journal.Journal.load(j.path).step("s0")["state"] == "applying"
    assert [r["run_id"] for r in journal.history("h1")] == [RUN_ID]
    assert journal.summaries("h1")[0]["steps"] == "0/3"

    real = private.os.write
    def half(fd: int, data: bytes) -> int:  # a full disk, part of the way through the next line
        real(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")
    j2 = started()
    j2.update_step("s1", state="applying")
    monkeypatch.setattr(private.os, "write", half)
    with pytest.raises(OSError, match="No space"):
        j2.update_step("s1", state="applied")
    monkeypatch.undo()
    j2.update_step("s2", state="applying")  # written whole, not after the half line
    assert [s["state"] for s in runrecord.read(j2.path)["steps"]] == ["planned", "applied", "applying"]
    assert len(j2.path.read_bytes().splitlines()) == 1


def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path of each fdatasync and fsync (a file's, or a folder's) from now on, in order."""
    seen: list[str] = []
    for name in ("fdatasync", "fsync"):
        real = getattr(private.os, name)
        monkeypatch.setattr(private.os, name, lambda fd, real=real: (
            seen.append(private.os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1])
    return seen


def test_a_record_appended_before_a_mutation_is_on_disk_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's first record was renamed in unsynced: the first record synced before a mutation syncs the folder
    too, so that after a power cut the run's journal is there, under its name. Later records sync the file alone."""
    j, host = started(), FakeTransport(name="h1")
    j.attach(host, "/var/lib/remediate/r/journal.json")
    seen = synced(monkeypatch)
    j.update_step("s0", durable=True, via=host, state="applying", undo=["rm x"])
    assert seen == [str(j.path), str(j.path.parent)] and host.pending_journal is not None
    assert lines(j.path)[-1]["steps"][0]["state"] == "applying"  # type: ignore[index]
    j.update_step("s0", later=True, state="applied")
    assert len(seen) == 2  # what happened after the mutation waits for the next record, as before
    j.update_step("s1", durable=True, via=host, state="applying", undo=["rm y"])
    assert seen[2:] == [str(j.path)]


def test_a_first_record_written_whole_unsynced_has_its_name_synced_with_the_next_synced_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = runrecord.KeptFile(tmp_path / "r.json", ".r.json.mine")
    line = b'{"n": 1}\n'
    seen = synced(monkeypatch)
    kept.store(line, running=True, sync=False)  # nothing there before: nothing to lose
    assert seen == []
    kept.store(line, running=True, sync=True)
    assert seen == [str(tmp_path / "r.json"), str(tmp_path)]


def test_a_record_written_whole_over_synced_ones_is_synced_before_its_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the APPENDED bound a record is written whole and renamed over the file, whose earlier records were
    synced: the new copy is synced first, even for a record not asked to be, or a power cut could leave an empty file
    where they were (XFS; ext4 flushes such a rename of its own accord). Before, it was renamed in unsynced."""
    path = tmp_path / "r.json"
    kept = runrecord.KeptFile(path, ".r.json.mine")
    line = b'{"n": 1}\n'
    kept.store(line, running=True, sync=True)
    seen = synced(monkeypatch)
    for _ in range(journal.APPENDED):  # appended, unsynced: the synced record before them stays on disk
        kept.store(line, running=True, sync=False)
    assert seen == [] and len(path.read_bytes().splitlines()) == journal.APPENDED + 1
    kept.store(line, running=True, sync=False)  # past the bound: written whole, over them
    assert seen == [str(tmp_path / ".r.json.mine"), str(tmp_path)] and len(path.read_bytes().splitlines()) == 1
    kept.store(line, running=True, sync=True)
    assert seen[2:] == [str(path)]  # appended again; its name was synced with the whole write


def test_rollbacks_first_record_over_an_interrupted_runs_journal_is_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollback of an interrupted run keeps that run's journal through a writer of its own: its first record is
    written whole over the run's synced ones, and so is synced before the rename, whatever sync says."""
    path = tmp_path / "r.json"
    path.write_bytes(b'{"n": 0}\n')
    seen = synced(monkeypatch)
    runrecord.KeptFile(path, ".r.json.mine").store(b'{"n": 1}\n', running=True, sync=False)
    assert seen == [str(tmp_path / ".r.json.mine"), str(tmp_path)] and path.read_bytes() == b'{"n": 1}\n'


def test_a_damaged_whole_line_is_refused_and_a_journal_edited_by_hand_is_read() -> None:
    j = started()
    j.update_step("s0", state="applying")
    whole = j.path.read_bytes()
    j.path.write_bytes(whole[:-30] + b"#" + whole[-29:])  # one byte of the newest line, which ends with its newline
    with pytest.raises(ValueError):
        runrecord.read(j.path)
    with pytest.raises(InputError, match="cannot read the run journal"):
        journal.Journal.load(j.path)
    j.path.write_bytes(json.dumps(json.loads(whole.splitlines()[-1]), indent=2).encode())  # `jq .` of it
    assert journal.Journal.load(j.path).step("s0")["state"] == "applying"


def test_a_long_run_keeps_its_journal_small() -> None:
    j = started(steps=8)
    for n in range(400):
        j.update_step(f"s{n % 8}", state="applying", count=n)
        size = len(j._bytes())
        assert j.path.stat().st_size <= (journal.APPENDED + 1) * size
    assert runrecord.read(j.path)["steps"][399 % 8]["count"] == 399


def test_the_index_sees_a_running_journal_grow_though_the_folder_does_not_change() -> None:
    j = started()
    long_ago = datetime.now(UTC).timestamp() - 60
    os.utime(j.path, (long_ago, long_ago))
    os.utime(j.path.parent, (long_ago, long_ago))
    assert journal.summaries("h1")[0]["steps"] == "0/3"
    found = runindex.read(journal.state_home() / runindex.NAME)
    assert found is not None
    header, _ = found.header, found.close()
    assert not header["racy"] and list(header["open"]) == [j.path.name]  # current, and this run still running
    folder = os.stat(j.path.parent).st_mtime_ns
    j.update_step("s0", durable=True, state="verified")  # appended: the folder keeps its stamp
    assert os.stat(j.path.parent).st_mtime_ns == folder
    assert journal.summaries("h1")[0]["steps"] == "1/3"
    j.finish("applied")
    assert journal.summaries("h1")[0]["outcome"] == "applied"
    found = runindex.read(journal.state_home() / runindex.NAME)
    assert found is not None
    assert found.header["open"] == {}
    found.close()


def test_the_folders_a_first_run_makes_are_on_disk_with_its_journal(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh state home: each folder made for it has its name synced in its parent, or the journal synced in
    runs/ could be lost with the folder after a power cut."""
    home = tmp_path / "fresh"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "state"))
    seen: list[Path] = []
    real = private.sync_folder
    monkeypatch.setattr(private, "sync_folder", lambda folder: (seen.append(folder), real(folder))[1])
    assert journal.runs_dir() == home / "state" / "remediate" / "runs"
    assert set(seen) == {home, home / "state", home / "state" / "remediate"}
    seen.clear()
    private._trusted.clear()
    journal.runs_dir()  # all there already: nothing made, nothing synced
    assert seen == []
