"""The host-side write and backup, run as the one-shot a host without an agent runs (`python3 -I -S -c SOURCE write
...`): what they do to names someone planted beside the file, to a content that did not arrive whole, and to mode and
owner."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from remediate.transport import CHANGED_EXIT, INCOMPLETE_EXIT
from remediate.transport.onhost import SOURCE


def one_shot(operation: str, *args: str) -> list[str]:
    return ["/usr/bin/python3", "-I", "-S", "-c", SOURCE, operation, *args]

NEW = b"relayhost =\nrelay_transport = lmtp:[10.0.0.5]:2525\n"


def write(path: Path, content: bytes, *, plant: str = "", want: str | None = None, expect: str = "") -> subprocess.CompletedProcess[bytes]:
    """Write path; `plant` runs first in the same process (exec keeps $$), to plant its temporary name."""
    digest = hashlib.sha256(content).hexdigest() if want is None else want
    wrapper = f'{plant}\nexec "$@"'
    return subprocess.run(["sh", "-c", wrapper, "sh", *one_shot("write", str(path), "", "", expect, "", digest)],
                          input=content, capture_output=True)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "main.cf"
    path.write_bytes(b"relayhost = [10.0.0.5]:2525\n")
    path.chmod(0o640)
    return path


def test_a_link_planted_on_the_temporary_name_is_never_written_through(conf: Path, tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_bytes(b"precious\n")
    done = write(conf, NEW, plant=f'ln -s {target} "{tmp_path}/.remediate-tmp.$$"')  # the name its pid would give
    assert done.returncode == 0, done.stderr  # the name taken has a random part: the plant does not stop the write
    assert target.read_bytes() == b"precious\n" and oct(target.stat().st_mode)[-3:] != "640"
    assert conf.read_bytes() == NEW
    planted = [p for p in tmp_path.iterdir() if p.name.startswith(".remediate-tmp.")]
    assert len(planted) == 1 and planted[0].is_symlink()  # the link is left alone


def test_a_file_planted_on_the_temporary_name_is_neither_used_nor_removed(conf: Path, tmp_path: Path) -> None:
    done = write(conf, NEW, plant=f'echo theirs > "{tmp_path}/.remediate-tmp.$$"')
    assert done.returncode == 0, done.stderr
    planted = [p for p in tmp_path.iterdir() if p.name.startswith(".remediate-tmp.")]
    assert len(planted) == 1 and planted[0].read_bytes() == b"theirs\n"
    assert conf.read_bytes() == NEW


def test_a_content_that_did_not_arrive_whole_is_never_renamed_into_place(conf: Path, tmp_path: Path) -> None:
    done = write(conf, NEW[:10], want=hashlib.sha256(NEW).hexdigest())
    assert done.returncode == INCOMPLETE_EXIT and b"incomplete" in done.stderr
    assert conf.read_bytes() == b"relayhost = [10.0.0.5]:2525\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".remediate-tmp.")]


def test_mode_and_owner_are_kept_and_the_sha256_is_of_what_landed(conf: Path) -> None:
    if os.geteuid() == 0:
        os.chown(conf, 65534, 65534)  # someone else's file, as root may meet it
    before = conf.stat()
    done = write(conf, NEW)
    assert done.returncode == 0, done.stderr
    after = conf.stat()
    assert conf.read_bytes() == NEW and done.stdout.decode().strip() == hashlib.sha256(NEW).hexdigest()
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced by a rename, never edited in place


def test_a_file_changed_since_the_plan_is_refused(conf: Path) -> None:
    done = write(conf, NEW, expect="0" * 64 + " 640 0 0")
    assert done.returncode == CHANGED_EXIT and conf.read_bytes() == b"relayhost = [10.0.0.5]:2525\n"


def test_the_backup_copy_never_goes_through_a_planted_link_and_keeps_mode_owner_and_time(conf: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(conf, 65534, 65534)
    os.utime(conf, (1_600_000_000, 1_600_000_000))
    digest = hashlib.sha256(conf.read_bytes()).hexdigest()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    run = lambda plant, name: subprocess.run(  # noqa: E731
        ["sh", "-c", f'{plant}\nexec "$@"', "sh", *one_shot("backup", str(conf), digest, str(name))],
        capture_output=True)
    planted = run(f'ln -s {victim} "{tmp_path}/.remediate-tmp.$$"', tmp_path / "main.cf.backup-1")
    assert planted.returncode == 0 and victim.read_bytes() == b"precious\n"  # its own name: the link untouched
    assert (tmp_path / "main.cf.backup-1").read_bytes() == conf.read_bytes()
    made = run(":", tmp_path / "main.cf.backup-2")
    assert made.returncode == 0, made.stderr
    backup, source = (tmp_path / "main.cf.backup-2").stat(), conf.stat()
    assert made.stdout.decode().split() == [str(tmp_path / "main.cf.backup-2"), digest]
    assert (backup.st_mode, backup.st_uid, backup.st_gid, backup.st_mtime) == \
        (source.st_mode, source.st_uid, source.st_gid, source.st_mtime)


def test_the_before_image_is_a_new_file_with_the_mode_owner_and_time_of_the_original(conf: Path, tmp_path: Path) -> None:
    """Copied through its own descriptor (a new file, O_EXCL), never through a name: what cp -p keeps still is."""
    if os.geteuid() == 0:
        os.chown(conf, 65534, 65534)
    os.utime(conf, (1_600_000_000, 1_600_000_000))
    original, source = conf.read_bytes(), conf.stat()
    (tmp_path / "run").mkdir(mode=0o700)
    before = tmp_path / "run" / "main.cf.edit"
    digest = hashlib.sha256(NEW).hexdigest()
    done = subprocess.run(one_shot("write", str(conf), "", "", "", str(before), digest), input=NEW,
                          capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    copy = before.stat()
    assert before.read_bytes() == original and conf.read_bytes() == NEW
    assert (copy.st_mode, copy.st_uid, copy.st_gid, copy.st_mtime) == \
        (source.st_mode, source.st_uid, source.st_gid, source.st_mtime)
    again = subprocess.run(one_shot("write", str(conf), "", "", "", str(before), digest), input=NEW,
                           capture_output=True, check=False)
    assert again.returncode == 2 and b"File exists" in again.stderr  # an existing before-image is never overwritten
    assert before.read_bytes() == original


def test_a_link_to_a_device_on_the_temporary_name_is_never_opened_chmod_ed_or_chown_ed(conf: Path, tmp_path: Path) -> None:
    """dash opens an existing name that is not a regular file for writing even with noclobber (set -C): before #22 a
    link to a device planted on the temporary name had the device chmod-ed, chown-ed to the file's owner, written,
    and the link renamed over the file. The name taken now has a random part: the link planted on the name the pid
    would give is never opened, nor removed, and the write goes through (a name found all the same is refused
    unopened: test_onhost_durable). (As root, a device of our own, /dev/null's twin; otherwise a FIFO with a
    reader, so that an open would not wait.)"""
    device = tmp_path / "device"
    reader = None
    if os.geteuid() == 0:
        os.chown(conf, 65534, 65534)  # the file's owner: what the device would be chown-ed to
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        os.mkfifo(device, 0o666)
        reader = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    device.chmod(0o666)
    before = device.lstat()
    try:
        done = write(conf, NEW, plant=f'ln -s {device} "{tmp_path}/.remediate-tmp.$$"')
    finally:
        if reader is not None:
            os.close(reader)
    assert done.returncode == 0, done.stderr
    after = device.lstat()
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    assert not conf.is_symlink() and conf.read_bytes() == NEW
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".remediate-tmp.") and p.is_symlink()]


def test_a_target_swapped_for_a_link_to_a_folder_at_the_last_moment_is_replaced_not_written_into(
        conf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user in a folder they can write swaps the file for a link to a folder of root's between the write's
    link check and its rename (here at the fsync just before it): `mv -f` would move the new file into that folder;
    the rename replaces the link itself (as `mv -fT`). The host-side code runs in this process, to be hooked."""
    from remediate.transport.onhost import common, files

    victim = tmp_path / "root-only"
    victim.mkdir(mode=0o700)
    fsync, swapped = os.fsync, []

    def swap(fd: int) -> None:
        if not swapped:  # at the new file's fsync; the folder's, after the rename, is left alone
            swapped.append(True)
            conf.unlink()
            conf.symlink_to(victim)
        fsync(fd)

    monkeypatch.setattr(common.os, "fsync", swap)  # what the host side calls os (the built-in posix)
    answer = common.Answer()
    code = files.write([str(conf), "", "", "", "", hashlib.sha256(NEW).hexdigest()], NEW, answer)
    monkeypatch.undo()
    assert swapped, "the swap happened"
    assert code == 0, answer.err
    assert list(victim.iterdir()) == [], "nothing was moved into the folder the link pointed to"
    assert not conf.is_symlink() and conf.read_bytes() == NEW
