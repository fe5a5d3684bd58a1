"""A file step's new folders (kind: file into folders that do not exist yet): made 0755, outermost first, and each
one's name synced into its parent before the file written in them is answered for. fsync(2) promises a file, not its
folder's entry: without it a power cut could leave the journal saying written while the folders, and so the file, are
gone. Run through LocalTransport: the step's own shell text, with a `sync` on PATH that notes its arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remediate.kinds.file import make_folders
from remediate.transport.local import LocalTransport


def noting_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, refuse_files: bool = False) -> Path:
    """A `sync` first on PATH that notes each call's arguments (a line each) and then syncs; refuse_files: it fails
    when given any, as a sync that cannot open a folder does."""
    bin_dir, notes = tmp_path / "bin", tmp_path / "sync.notes"
    bin_dir.mkdir()
    refuse = 'if [ "$#" -gt 0 ]; then exit 1; fi\n' if refuse_files else ""
    (bin_dir / "sync").write_text(f'#!/bin/sh\necho "$*" >> {notes}\n{refuse}exec /bin/sync "$@"\n')
    (bin_dir / "sync").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return notes


def test_each_folder_made_is_synced_into_its_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = noting_sync(tmp_path, monkeypatch)
    base = tmp_path / "etc"
    base.mkdir()
    folders = [str(base / "app"), str(base / "app" / "conf.d")]
    make_folders(LocalTransport(name="h1"), folders)
    assert [oct(Path(f).stat().st_mode & 0o777) for f in folders] == ["0o755", "0o755"]
    assert notes.read_text().splitlines() == [f"-- {base} {base / 'app'}"]


def test_a_sync_that_cannot_open_a_folder_syncs_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = noting_sync(tmp_path, monkeypatch, refuse_files=True)
    make_folders(LocalTransport(name="h1"), [str(tmp_path / "new")])
    assert (tmp_path / "new").is_dir()
    assert notes.read_text().splitlines() == [f"-- {tmp_path}", ""]
