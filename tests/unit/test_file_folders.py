"""A file step's new folders (kind: file into folders that do not exist yet) are made by the host's own operation
make_folders (onhost/files.py), through LocalTransport here, which runs the host's code in a python3 of its own: each
folder 0755 whatever the umask, outermost first, never through a link another user owns, one found there already
refused as mkdir refuses it. That each one's name is synced into its parent before the next is shown in-process, in
tests/unit/test_onhost_durable.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remediate.errors import CommandError
from remediate.transport.local import LocalTransport


def test_the_folders_are_made_0755_outermost_first_whatever_the_umask(tmp_path: Path) -> None:
    base = tmp_path / "etc"
    base.mkdir()
    folders = [str(base / "app"), str(base / "app" / "conf d"), str(base / "app" / "conf d" / "-x")]
    old = os.umask(0o077)
    try:
        LocalTransport(name="h1").operation("make_folders", *folders, check=True, display="mkdir")
    finally:
        os.umask(old)
    assert [oct(Path(f).stat().st_mode & 0o777) for f in folders] == ["0o755"] * 3


def test_a_folder_found_there_already_fails_the_step_as_mkdir_does(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    with pytest.raises(CommandError, match="cannot create directory .*app.: File exists"):
        LocalTransport(name="h1").operation("make_folders", str(tmp_path / "app"), check=True, display="mkdir")


def test_rollback_says_of_each_folder_it_made_whether_removed_gone_already_or_kept(tmp_path: Path) -> None:
    """Through the real sh (LocalTransport): the names go as arguments, whatever they hold, and the answer comes by
    position. A folder already gone (a rollback resumed after one cut short) is said so, never called kept or removed."""
    from types import SimpleNamespace

    from remediate.kinds import REGISTRY, StepSpec

    made = [tmp_path / "gone\nalready", tmp_path / "full of it", tmp_path / "removed"]
    for folder in made[1:]:
        folder.mkdir()
    (made[1] / "someone else's").write_text("kept\n")
    step = REGISTRY["file"](StepSpec(id="f", kind="file", target="host", params={"path": "/x", "content": "x"},
                                     where="t"))
    ctx = SimpleNamespace(transport=lambda target: LocalTransport(name="h1"), force=False)
    said = step.rollback(ctx, {"folders": [str(f) for f in reversed(made)]})  # type: ignore[arg-type]
    assert said == (f"removed the folder(s) it made: {made[2]}; the folder(s) it made were gone already: {made[0]}; "
                    f"kept {made[1]} (not empty: something else is in it now)")
    assert made[1].is_dir() and not made[2].exists()
