"""The local journal's writes: each whole and private, through the writer's own temporary name, which is never shared
and never left behind; a record shipped to the host is the same bytes as the local copy, serialised once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remediate import private
from remediate.engine import journal, runrecord

from .fakes import FakeTransport


def fresh_journal() -> journal.Journal:
    return journal.Journal.start(run_id="20261206T120000Z-abcdef", host="h1", address="127.0.0.1", playbook="p",
                                 playbook_path="/p.yml", variables={},
                                 steps=[journal.StepRecord("s", "file", "host", {}, "planned")])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_write_through_the_scratch_name_replaces_the_file_whole_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_bytes(b"old\n")
    for data in (b"first\n", b"second, longer\n" * 1000, b"third\n"):
        private.write_bytes(target, data, scratch=".r.json.mine")
        assert target.read_bytes() == data and target.stat().st_mode & 0o777 == 0o600
    assert leftovers(tmp_path) == []


def test_a_scratch_name_in_use_is_never_shared_and_a_planted_link_never_followed(tmp_path: Path) -> None:
    target, victim = tmp_path / "r.json", tmp_path / "victim"
    victim.write_bytes(b"keep me\n")
    (tmp_path / ".r.json.busy").write_bytes(b"another writer's, half written")
    (tmp_path / ".r.json.link").symlink_to(victim)
    private.write_bytes(target, b"one\n", scratch=".r.json.busy")
    private.write_bytes(target, b"two\n", scratch=".r.json.link", sync=True)
    assert target.read_bytes() == b"two\n" and victim.read_bytes() == b"keep me\n"
    assert (tmp_path / ".r.json.busy").read_bytes() == b"another writer's, half written"
    assert leftovers(tmp_path) == [".r.json.busy", ".r.json.link"]


def test_a_write_that_fails_keeps_the_old_file_and_removes_its_scratch(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.json"
    target.write_bytes(b"old\n")

    def full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(private.os, "replace", full)
    with pytest.raises(OSError, match="No space"):
        private.write_bytes(target, b"new\n", scratch=".r.json.mine")
    assert target.read_bytes() == b"old\n" and leftovers(tmp_path) == []


def test_every_journal_write_goes_through_its_own_scratch_name(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = fresh_journal(), fresh_journal()
    used: list[str | None] = []
    real = private.write_bytes
    monkeypatch.setattr(journal.private, "write_bytes",
                        lambda path, data, **kw: (used.append(kw.get("scratch")), real(path, data, **kw))[1])
    first.save(remote=False)
    first.update_step("s", state="applying")  # appended to the file the first write made (test_journal_append.py)
    second.save(remote=False)
    first.finish("applied")
    assert used[0] == used[2] != used[1] and len(used) == 3 and str(used[0]).startswith(f".{first.path.name}.")
    assert leftovers(first.path.parent) == []
    assert json.loads(first.path.read_bytes())["outcome"] == "applied"


def test_a_shipped_record_is_serialised_once_and_the_host_gets_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    j, host = fresh_journal(), FakeTransport(name="h1")
    j.attach(host, "/var/lib/remediate/r/journal.json")
    encode, calls = journal.encoded, []
    monkeypatch.setattr(journal, "encoded", lambda *a: (calls.append(1), encode(*a))[1])
    j.update_step("s", durable=True, via=host, state="applying", undo=["rm x"])
    assert host.pending_journal is not None
    path, shipped = host.pending_journal()
    assert len(calls) == 1 and shipped == j.path.read_bytes() and path.endswith("journal.json")
    j.update_step("s", later=True, state="applied")  # after the mutation: the host's next copy says so
    assert json.loads(host.pending_journal()[1])["steps"][0]["state"] == "applied" and len(calls) == 2
    assert json.loads(j.path.read_bytes())["steps"][0]["state"] == "applying"



def test_a_record_shipped_before_a_mutation_is_on_this_machines_disk_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local copy, file and then folder, is fsynced before the host's command can go: after a power cut of this
    machine, rollback (which reads the local copy, and writes it back to the host) never sees a record without the
    step whose mutation ran."""
    j, host = fresh_journal(), FakeTransport(name="h1")
    j.attach(host, "/var/lib/remediate/r/journal.json")
    synced: list[str] = []
    fsync = private.os.fsync
    monkeypatch.setattr(private.os, "fsync",
                        lambda fd: (synced.append(private.os.readlink(f"/proc/self/fd/{fd}")), fsync(fd))[1])
    j.update_step("s", durable=True, via=host, state="applying", undo=["rm x"])
    assert host.pending_journal is not None  # the host's copy goes with the command, after this
    assert len(synced) == 2 and synced[1] == str(j.path.parent), synced
    assert json.loads(j.path.read_bytes())["steps"][0]["state"] == "applying"
    j.update_step("s", later=True, state="applied")
    assert len(synced) == 2  # what happened after the mutation waits for the next record: undo does not need it


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(head=st.dictionaries(st.text(max_size=8), json_values, max_size=5), at=st.integers(0, 5),
       steps=st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=4),
       changes=st.lists(st.tuples(st.integers(0, 3), st.text(max_size=4), json_values), max_size=4))
def test_a_record_is_written_as_json_dumps_writes_it_whatever_changes(
        head: dict[str, Any], at: int, steps: list[dict[str, Any]], changes: list[tuple[int, str, Any]]) -> None:
    items = list(head.items())
    record = dict(items[:at] + [("steps", steps)] + items[at:])
    parts: dict[int, tuple[dict[str, Any], bytes]] = {}
    assert runrecord.encoded(record, parts) == json.dumps(record, default=str).encode() + b"\n"
    for n, key, value in changes:  # as update_step changes a step: its part is dropped
        if steps:
            step = steps[n % len(steps)]
            step[key] = value
            parts.pop(id(step), None)
            assert runrecord.encoded(record, parts) == json.dumps(record, default=str).encode() + b"\n"


def test_a_value_holding_the_steps_placeholder_is_written_exactly() -> None:
    record = {"vars": {"x": runrecord._HOLE}, "steps": [{"id": "s", "note": runrecord._HOLE}], "for": runrecord._HOLE}
    assert runrecord.encoded(record, {}) == json.dumps(record, default=str).encode() + b"\n"
    assert runrecord.encoded({"steps": None}, {}) == b'{"steps": null}\n'


def test_a_write_serialises_only_the_step_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    j = journal.Journal.start(run_id="20261206T120000Z-abcdef", host="h1", address="127.0.0.1", playbook="p",
                              playbook_path="/p.yml", variables={"v": "x" * 1000},
                              steps=[journal.StepRecord(f"s{n}", "file", "host", {}, "planned", diffs=["d" * 2000])
                                     for n in range(5)])
    j.save(remote=False)
    dumps, sizes = runrecord.json.dumps, []
    monkeypatch.setattr(runrecord.json, "dumps", lambda value, **kw: (lambda text: (sizes.append(len(text)), text)[1])(
        dumps(value, **kw)))
    j.update_step("s3", state="applying")
    assert runrecord.read(j.path)["steps"][3]["state"] == "applying"
    assert sum(sizes) < 2 * 2100 + 1200  # the head and step s3, not the other four steps' diffs again
