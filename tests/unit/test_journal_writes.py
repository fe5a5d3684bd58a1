"""The local journal's writes: each whole and private, through the writer's own temporary name, which is never shared
and never left behind; a record shipped to the host is the same bytes as the local copy, serialised once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediate import private
from remediate.engine import journal

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
    first.update_step("s", state="applying")
    second.save(remote=False)
    first.finish("applied")
    assert used[0] == used[1] == used[3] != used[2] and str(used[0]).startswith(f".{first.path.name}.")
    assert leftovers(first.path.parent) == []
    assert json.loads(first.path.read_bytes())["outcome"] == "applied"


def test_a_shipped_record_is_serialised_once_and_the_host_gets_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    j, host = fresh_journal(), FakeTransport(name="h1")
    j.attach(host, "/var/lib/remediate/r/journal.json")
    dumps, calls = journal.json.dumps, []
    monkeypatch.setattr(journal.json, "dumps", lambda *a, **kw: (calls.append(1), dumps(*a, **kw))[1])
    j.update_step("s", durable=True, via=host, state="applying", undo=["rm x"])
    assert host.pending_journal is not None
    path, shipped = host.pending_journal()
    assert len(calls) == 1 and shipped == j.path.read_bytes() and path.endswith("journal.json")
    j.update_step("s", later=True, state="applied")  # after the mutation: the host's next copy says so
    assert json.loads(host.pending_journal()[1])["steps"][0]["state"] == "applied" and len(calls) == 2
    assert json.loads(j.path.read_bytes())["steps"][0]["state"] == "applying"

