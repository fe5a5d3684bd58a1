"""The host side's copies are on disk before the change they guard: a write's before-image (what rollback restores)
is fsynced before the new file is renamed over the old, and a backup's copy before its name appears. ext4 with
delayed allocation may otherwise keep, after a power cut, the new file and an empty copy. Each file system call is
recorded in-process, in the order the host code makes it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from remediate.transport.onhost import backups, files
from remediate.transport.onhost.common import Answer


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """("fsync", path) for each fsync, by the path its descriptor is open on; ("rename" | "link", new name)."""
    seen: list[tuple[str, str]] = []
    fsync, rename, link = os.fsync, os.rename, os.link

    def synced(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def renamed(src: str, dst: str, **kw: int) -> None:
        seen.append(("rename", dst))
        rename(src, dst, **kw)

    def linked(src: str, dst: str, **kw: object) -> None:
        seen.append(("link", dst))
        link(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "rename", renamed)
    monkeypatch.setattr(os, "link", linked)
    return seen


def test_a_writes_before_image_is_on_disk_before_the_file_is_replaced(tmp_path: Path,
                                                                        calls: list[tuple[str, str]]) -> None:
    config, image = tmp_path / "config", tmp_path / ".remediate" / "run1" / "config.relay"
    config.write_text("old\n")
    image.parent.mkdir(parents=True, mode=0o700)
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", Answer()) == 0
    assert config.read_text() == "new\n" and image.read_text() == "old\n"
    synced = [i for i, (what, path) in enumerate(calls) if what == "fsync" and path == str(image)]
    replaced = calls.index(("rename", "config"))
    assert synced and synced[0] < replaced, calls


def test_a_backups_copy_is_on_disk_before_its_name_appears(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    config = tmp_path / "config"
    config.write_text("before\n")
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    named = tmp_path / "config.backup-20270101T000000Z"
    assert backups.backup([str(config), digest, str(named)], b"", Answer()) == 0
    assert named.read_text() == "before\n"
    linked = calls.index(("link", named.name))
    copies = [i for i, (what, path) in enumerate(calls[:linked]) if what == "fsync" and path.startswith(str(tmp_path))]
    assert copies, calls  # the private copy (a temporary name, linked then removed) was synced before the link


def test_a_copy_that_cannot_reach_the_disk_stops_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from the before-image's fsync: the file is left as it was and the write says why (a file system with no
    fsync at all, EINVAL, is written as before: the replaced file's own fsync is not asked of it either)."""
    config, image = tmp_path / "config", tmp_path / "private" / "config.relay"
    config.write_text("old\n")
    image.parent.mkdir(mode=0o700)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing)
    answer = Answer()
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", answer) == 1
    assert config.read_text() == "old\n"
    assert b"Input/output error" in b"".join(answer.err)

    def unsupported(fd: int) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "fsync", unsupported)
    image.unlink()
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", Answer()) == 0
    assert config.read_text() == "new\n" and image.read_text() == "old\n"
