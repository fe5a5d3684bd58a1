"""The host side's copies are on disk before the change they guard: a write's before-image (what rollback restores)
is fsynced before the new file is renamed over the old, and a backup's copy before its name appears. ext4 with
delayed allocation may otherwise keep, after a power cut, the new file and an empty copy. Each file system call is
recorded in-process, in the order the host code makes it."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from remediate.transport.onhost import backups, files, folders, loop
from remediate.transport.onhost.common import Answer
from remediate.transport.onhost.common import os as host_os  # what the host side calls os (the built-in posix)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """("fsync", path) for each fsync, by the path its descriptor is open on (a folder's too); ("rename" | "link" |
    "unlink" | "mkdir", the name)."""
    seen: list[tuple[str, str]] = []
    fsync, rename, link, unlink, mkdir = os.fsync, os.rename, os.link, os.unlink, os.mkdir

    def synced(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def renamed(src: str, dst: str, **kw: int) -> None:
        seen.append(("rename", dst))
        rename(src, dst, **kw)

    def linked(src: str, dst: str, **kw: object) -> None:
        seen.append(("link", dst))
        link(src, dst, **kw)  # type: ignore[arg-type]

    def unlinked(path: str, **kw: int) -> None:
        seen.append(("unlink", path))
        unlink(path, **kw)  # type: ignore[arg-type]

    def made(path: str, mode: int = 0o777, **kw: int) -> None:
        seen.append(("mkdir", path))
        mkdir(path, mode, **kw)

    monkeypatch.setattr(host_os, "fsync", synced)
    monkeypatch.setattr(host_os, "rename", renamed)
    monkeypatch.setattr(host_os, "mkdir", made)
    monkeypatch.setattr(host_os, "link", linked)
    monkeypatch.setattr(host_os, "unlink", unlinked)
    return seen


def folder_syncs_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from every fsync of a folder, from now on (a file's still syncs)."""
    fsync = os.fsync

    def failing(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        fsync(fd)
    monkeypatch.setattr(host_os, "fsync", failing)


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


def test_a_writes_before_image_is_named_on_disk_before_the_file_is_replaced(tmp_path: Path,
                                                                         calls: list[tuple[str, str]]) -> None:
    """The before-image's folder (the run's) is synced too before the rename: a synced file whose name is not on
    disk may be gone after a power cut, leaving the new file and nothing for rollback to restore."""
    config, image = tmp_path / "config", tmp_path / ".remediate" / "run1" / "config.relay"
    config.write_text("old\n")
    image.parent.mkdir(parents=True, mode=0o700)
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", Answer()) == 0
    named = [i for i, (what, path) in enumerate(calls) if what == "fsync" and path == str(image.parent)]
    assert named and named[0] < calls.index(("rename", "config")), calls


def test_a_backups_name_is_on_disk_before_the_answer_says_it_is_there(tmp_path: Path,
                                                                      calls: list[tuple[str, str]]) -> None:
    """Its folder is synced after the link (and after the private copy's temporary name is gone): a run whose backup
    is its last change in that folder still has the backup after a power cut."""
    config = tmp_path / "config"
    config.write_text("before\n")
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    named = tmp_path / "config.backup-20270101T000000Z"
    assert backups.backup([str(config), digest, str(named)], b"", Answer()) == 0
    linked = calls.index(("link", named.name))
    dropped = max(i for i, (what, path) in enumerate(calls) if what == "unlink" and path.startswith(".remediate-tmp."))
    assert ("fsync", str(tmp_path)) in calls[max(linked, dropped):], calls


def test_a_backup_whose_name_cannot_reach_the_disk_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from the folder's sync after the link: exit 1 with `sync: <backup>: <why>`, never the name as made (the
    step fails before any change); the file is as it was."""
    config = tmp_path / "config"
    config.write_text("before\n")
    digest = hashlib.sha256(config.read_bytes()).hexdigest()
    named = tmp_path / "config.backup-20270101T000000Z"
    folder_syncs_fail(monkeypatch)
    answer = Answer()
    assert backups.backup([str(config), digest, str(named)], b"", answer) == 1
    assert b"".join(answer.out) == b""
    assert b"".join(answer.err) == f"sync: {named}: Input/output error\n".encode()
    assert config.read_text() == "before\n"


def test_each_folder_made_is_named_on_disk_before_anything_is_kept_in_it(tmp_path: Path,
                                                                         calls: list[tuple[str, str]]) -> None:
    """The state folder, the folders above it that were absent, and the run folder: each one's parent is synced
    after its mkdir, before the journal copy and before-images kept in it are answered for."""
    state = tmp_path / "a" / "state"
    assert folders.private_folder([str(state / "run1")], b"", Answer()) == 0
    for parent, name in ((tmp_path, "a"), (tmp_path / "a", "state"), (state, "run1")):
        made = calls.index(("mkdir", name))
        assert ("fsync", str(parent)) in calls[made:], (name, calls)
    calls.clear()
    assert folders.private_folder([str(state / "run2")], b"", Answer()) == 0  # the folders found: only the new one
    assert [c for c in calls if c[0] == "fsync"] == [("fsync", str(state))], calls
    calls.clear()  # asked again (a new connection, or a retry after an agent killed before its sync): synced again
    assert folders.private_folder([str(state / "run2")], b"", Answer()) == 0
    assert [c for c in calls if c[0] == "fsync"] == [("fsync", str(state))], calls


def test_a_file_steps_folders_are_each_named_on_disk_before_the_next_is_made(tmp_path: Path,
                                                                            calls: list[tuple[str, str]]) -> None:
    outer, inner = tmp_path / "app", tmp_path / "app" / "conf.d"
    assert files.make_folders([str(outer), str(inner)], b"", Answer()) == 0
    assert [c for c in calls if c[0] in ("mkdir", "fsync")] == [
        ("mkdir", "app"), ("fsync", str(tmp_path)), ("mkdir", "conf.d"), ("fsync", str(outer))], calls


@pytest.mark.parametrize("maker", ["make_folders", "private_folder"])
def test_a_folder_whose_name_cannot_reach_the_disk_is_removed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    maker: str) -> None:
    """EIO syncing the parent after a mkdir: the folder is removed again and the failure said as `sync` says it
    (not as a mkdir that failed), so that the retry makes it, and syncs it, anew; before, a retry found it there and
    answered for a name that was never synced."""
    folder = tmp_path / "new"
    folder_syncs_fail(monkeypatch)
    answer = Answer()
    if maker == "make_folders":
        assert files.make_folders([str(folder)], b"", answer) == 1
    else:
        assert folders.private_folder([str(folder / "run1")], b"", answer) == 1
    assert not folder.exists() and b"".join(answer.err) == f"sync: {folder}: Input/output error\n".encode()
    monkeypatch.undo()
    if maker == "make_folders":
        assert files.make_folders([str(folder)], b"", Answer()) == 0 and folder.is_dir()
    else:
        assert folders.private_folder([str(folder / "run1")], b"", Answer()) == 0 and (folder / "run1").is_dir()


def test_a_before_image_whose_name_cannot_reach_the_disk_is_removed_and_the_write_can_be_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO syncing the run folder after the before-image was made: the write fails with the file as it was and the
    copy is removed (no journal names it); before, it stayed, and the same write again failed on it (File exists)."""
    config, image = tmp_path / "config", tmp_path / ".remediate" / "run1" / "config.relay"
    config.write_text("old\n")
    image.parent.mkdir(parents=True, mode=0o700)
    folder_syncs_fail(monkeypatch)
    answer = Answer()
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", answer) == 1
    assert b"Input/output error" in b"".join(answer.err) and not image.exists() and config.read_text() == "old\n"
    monkeypatch.undo()
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", Answer()) == 0
    assert config.read_text() == "new\n" and image.read_text() == "old\n"


def test_a_copy_that_cannot_reach_the_disk_stops_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from the before-image's fsync: the file is left as it was and the write says why (a file system with no
    fsync at all, EINVAL, is written as before: the replaced file's own fsync is not asked of it either)."""
    config, image = tmp_path / "config", tmp_path / "private" / "config.relay"
    config.write_text("old\n")
    image.parent.mkdir(mode=0o700)

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(host_os, "fsync", failing)
    answer = Answer()
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", answer) == 1
    assert config.read_text() == "old\n"
    assert b"Input/output error" in b"".join(answer.err)

    def unsupported(fd: int) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(host_os, "fsync", unsupported)
    assert not image.exists()  # the copy that failed is not left behind to stop the next write
    assert files.write([str(config), "", "", "", str(image), ""], b"new\n", Answer()) == 0
    assert config.read_text() == "new\n" and image.read_text() == "old\n"


def test_a_write_answers_only_once_its_new_name_is_on_disk(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    """The folder is synced after the rename: a restore the host said was done (and rollback marked rolled back) is
    still done after a power cut, wherever the folder is."""
    config = tmp_path / "config"
    config.write_text("new\n")
    assert files.write([str(config), "", "", "", "", ""], b"old\n", Answer()) == 0
    replaced = calls.index(("rename", "config"))
    assert ("fsync", str(tmp_path)) in calls[replaced:], calls


def test_a_removal_answers_only_once_it_is_on_disk(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    made = tmp_path / "made.conf"
    made.write_text("x\n")
    assert files.remove([str(made)], b"", Answer()) == 0
    assert not made.exists()
    assert calls[-2:] == [("unlink", "made.conf"), ("fsync", str(tmp_path))], calls


def test_the_hosts_journal_copy_is_on_disk_before_the_command_runs(tmp_path: Path,
                                                                    calls: list[tuple[str, str]]) -> None:
    """journal_then: the copy's content, then its folder (the rename), before the command: on another file system
    than the file the command changes, the command's own syncs would not carry it."""
    run = tmp_path / "state" / "run1"
    run.mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    marker = tmp_path / "ran"
    assert loop.journal_then([str(run / "journal.json"), "6", "touch", str(marker)], b"record", Answer()) == 0
    assert (run / "journal.json").read_bytes() == b"record" and marker.exists()
    renamed = calls.index(("rename", "journal.json"))
    assert calls[renamed - 1][0] == "fsync" and calls[renamed - 1][1].startswith(str(run / "journal.json.tmp"))
    assert calls[renamed + 1] == ("fsync", str(run)), calls


def test_a_lock_is_whole_on_disk_before_its_name_appears(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    """The lock is written and synced under a name of its own, then linked: a power cut never leaves an empty lock
    (a serve run's lease token lost with it); its folder is synced before the take answers."""
    state = tmp_path / "state"
    answer = Answer()
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', answer) == 0, answer.err
    assert (state / "lock").read_bytes() == b'{"run_id": "r1"}'
    assert [p.name for p in state.iterdir()] == ["lock"]  # the taker's own name is gone
    linked = calls.index(("link", "lock"))
    assert calls[linked - 1][0] == "fsync" and calls[linked - 1][1].startswith(str(state / ".lock.")), calls
    assert ("fsync", str(state)) in calls[linked:], calls
    taken = Answer()
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r2"}', taken) == 4  # held: its holder is shown
    assert b'"r1"' in b"".join(taken.out) and sorted(p.name for p in state.iterdir()) == ["lock"]


def test_a_lock_that_cannot_be_written_whole_is_not_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No space for the lock's bytes: no lock at all (before, an empty one was left, which only --break-lock
    cleared), and the reason said."""
    state = tmp_path / "state"

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(host_os, "write", full)
    answer = Answer()
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', answer) == 5
    monkeypatch.undo()
    assert list(state.iterdir()) == []
    assert b"No space left on device" in b"".join(answer.err)


def test_an_io_error_syncing_the_new_file_or_the_journal_changes_nothing(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from fsync was swallowed: the new file was renamed in, and the journal taken for written (its command
    then ran). Now the write fails with the file as it was, and journal_then runs no command (8)."""
    config = tmp_path / "config"
    config.write_text("old\n")
    run = tmp_path / "state" / "run1"
    run.mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    marker = tmp_path / "ran"

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(host_os, "fsync", failing)
    answer = Answer()
    assert files.write([str(config), "", "", "", "", ""], b"new\n", answer) == 1
    assert loop.journal_then([str(run / "journal.json"), "6", "touch", str(marker)], b"record", Answer()) == 8
    monkeypatch.undo()
    assert config.read_text() == "old\n" and b"Input/output error" in b"".join(answer.err)
    assert not marker.exists() and not (run / "journal.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".remediate-tmp")] == []


def test_a_name_found_where_the_temporary_file_goes_is_refused_unopened(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary name has a random part (nobody can plant it first); were it found there all the same, a link to
    a FIFO, it is refused before any open (O_EXCL, O_NOFOLLOW): the write fails with the file as it was, and the
    link is left as it is."""
    config, fifo = tmp_path / "config", tmp_path / "fifo"
    config.write_text("old\n")
    os.mkfifo(fifo, 0o644)
    monkeypatch.setattr(host_os, "urandom", lambda n: b"\x01" * n)
    planted = tmp_path / f".remediate-tmp.{os.getpid()}.{'01' * 6}"
    planted.symlink_to(fifo)
    answer = Answer()
    assert files.write([str(config), "", "", "", "", ""], b"new\n", answer) == 2
    assert b"File exists" in b"".join(answer.err)
    assert config.read_text() == "old\n" and planted.is_symlink() and oct(fifo.lstat().st_mode & 0o777) == "0o644"


def test_a_name_found_on_the_journals_temporary_name_is_refused_unopened(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the random temporary name there all the same (a link to a FIFO), the journal copy is refused before any
    open: no journal, the command never runs (exit 8), the link left as it is."""
    run, fifo = tmp_path / "run", tmp_path / "fifo"
    run.mkdir(mode=0o700)
    (tmp_path / "c").write_text("old\n")
    os.mkfifo(fifo, 0o644)
    monkeypatch.setattr(host_os, "urandom", lambda n: b"\x02" * n)
    planted = run / f"journal.json.tmp.{os.getpid()}.{'02' * 6}"
    planted.symlink_to(fifo)
    answer = Answer()
    code = loop.journal_then([str(run / "journal.json"), "3", loop.OPERATION, "remove", str(tmp_path / "c")],
                             b"{}\n", answer)
    assert code == 8 and b"File exists" in b"".join(answer.err), answer.err
    assert (tmp_path / "c").read_text() == "old\n" and not (run / "journal.json").exists() and planted.is_symlink()


def test_a_lock_taken_over_is_synced_too(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    """A takeover (the bytes seen given, as a lapsed lease's retry does) replaces the lock through a synced file and
    folder: on a file system that does not flush a rename over a file (XFS), it could come back empty."""
    state = tmp_path / "state"
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', Answer()) == 0
    calls.clear()
    answer = Answer()
    assert folders.take_lock([f"{state}/lock", b'{"run_id": "r1"}'.hex()], b'{"run_id": "r2"}', answer) == 0, answer.err
    assert (state / "lock").read_bytes() == b'{"run_id": "r2"}'
    renamed = calls.index(("rename", "lock"))
    assert calls[renamed - 1][0] == "fsync" and ("fsync", str(state)) in calls[renamed:], calls


def test_a_leased_lock_released_is_released_on_disk(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    """A leased release answers only once its folder is synced: after a power cut the lock must not come back, which
    would stop the next run as a stale lock until --break-lock."""
    state, token = tmp_path / "state", "c" * 32
    lease = b'{"run_id": "r1", "lease": {"token": "%s", "seconds": 60}}' % token.encode()
    assert folders.take_lock([f"{state}/lock"], lease, Answer()) == 0
    calls.clear()
    answer = Answer()
    assert folders.release_lock([f"{state}/lock", token], b"", answer) == 0, answer.err
    assert not (state / "lock").exists()
    assert calls[calls.index(("unlink", "lock")) + 1:] == [("fsync", str(state))], calls


def test_a_leased_release_whose_folder_sync_fails_says_so_as_remove_does(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO from the folder's sync: exit 1 with `sync: <lock>: <why>`, as the ordinary release (remove) says it, not
    the agent's bare exception."""
    state, token = tmp_path / "state", "d" * 32
    lease = b'{"run_id": "r1", "lease": {"token": "%s", "seconds": 60}}' % token.encode()
    assert folders.take_lock([f"{state}/lock"], lease, Answer()) == 0
    folder_syncs_fail(monkeypatch)
    answer = Answer()
    assert folders.release_lock([f"{state}/lock", token], b"", answer) == 1
    assert b"".join(answer.err) == f"sync: {state}/lock: Input/output error\n".encode()


def test_a_removal_of_what_is_already_gone_still_syncs(tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    """A retry after an agent was killed between the unlink and its sync: the answer still waits for the disk."""
    assert files.remove([str(tmp_path / "gone.conf")], b"", Answer()) == 0
    assert calls[-1] == ("fsync", str(tmp_path)), calls


def test_a_lock_where_hard_links_cannot_be_made_is_created_in_place(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """vfat and some FUSE mounts refuse hard links (EPERM): the lock is then created in place, written and synced,
    and a second taker still finds it held."""
    state = tmp_path / "state"

    def no_links(*args: object, **kw: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(host_os, "link", no_links)
    answer = Answer()
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', answer) == 0, answer.err
    assert (state / "lock").read_bytes() == b'{"run_id": "r1"}' and [p.name for p in state.iterdir()] == ["lock"]
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r2"}', Answer()) == 4


@pytest.mark.parametrize("fails", ["write", "folder sync"])
def test_a_lock_created_in_place_that_cannot_be_made_whole_is_not_left_behind(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch,
                                                                              fails: str) -> None:
    """Where hard links cannot be made, a lock that cannot be written or whose folder cannot be synced is removed
    again, as on the hard-link path: before, the take said it failed (5) and left the lock, which then stopped every
    run as held until --break-lock."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write = os.write

    def no_links(*args: object, **kw: object) -> None:
        raise OSError(1, "Operation not permitted")

    def full(fd: int, data: bytes) -> int:  # the lock's own bytes (its private temporary file was written)
        if os.readlink(f"/proc/self/fd/{fd}") == str(state / "lock"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(fd, data)

    monkeypatch.setattr(host_os, "link", no_links)
    if fails == "write":
        monkeypatch.setattr(host_os, "write", full)
    else:
        folder_syncs_fail(monkeypatch)
    answer = Answer()
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', answer) == 5
    monkeypatch.undo()
    assert list(state.iterdir()) == [], list(state.iterdir())
    assert (b"No space left" if fails == "write" else b"Input/output error") in b"".join(answer.err)
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r2"}', Answer()) == 0


def test_a_link_that_says_exists_of_itself_is_taken_for_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NFS may answer a retried link with EEXIST when the first try made it: the taker's own file, with two names,
    is the lock, not another holder's."""
    state = tmp_path / "state"
    link = os.link

    def retried(src: str, dst: str, **kw: object) -> None:
        link(src, dst, **kw)  # type: ignore[arg-type]
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(host_os, "link", retried)
    answer = Answer()
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', answer) == 0, answer.err
    assert (state / "lock").read_bytes() == b'{"run_id": "r1"}' and [p.name for p in state.iterdir()] == ["lock"]


def test_a_lock_whose_folder_cannot_be_synced_is_not_left_behind(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)  # found: the sync that fails is the lock's
    folder_syncs_fail(monkeypatch)
    answer = Answer()
    assert folders.take_lock([f"{state}/lock"], b'{"run_id": "r1"}', answer) == 5
    monkeypatch.undo()
    assert list(state.iterdir()) == [] and b"Input/output error" in b"".join(answer.err)


@pytest.mark.parametrize("theirs", ["saved", "removed", "link", "folder"])
def test_an_edit_saved_while_a_write_synced_is_refused_not_overwritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       theirs: str) -> None:
    """Someone saves the file (or removes it, puts a link or a folder there) after the write checked it and while the
    before-image and the new content were synced, milliseconds on a slow disk: the file is checked again the moment
    before the rename, so what they did stays, and the write says the file changed (9) and what it is now, as when it
    changed before the write began: the controller then records nothing of it for rollback. The before-image it made
    meanwhile is removed (no journal names it), and no temporary file is left."""
    config, image = tmp_path / "config", tmp_path / ".remediate" / "run1" / "config.relay"
    config.write_text("old\n")
    image.parent.mkdir(parents=True, mode=0o700)
    st = config.stat()
    expect = f"{hashlib.sha256(b'old' + bytes([10])).hexdigest()} {st.st_mode & 0o7777:o} {st.st_uid} {st.st_gid}"
    synced = files._synced

    def meanwhile(fd: int) -> None:
        synced(fd)
        if os.readlink(f"/proc/self/fd/{fd}") in (str(image), str(image.parent)):
            return  # the before-image or its folder: the new content is not written yet
        if theirs == "saved":  # an editor's save: a new file renamed over the name
            (tmp_path / "theirs").write_text("their edit\n")
            os.replace(tmp_path / "theirs", config)
            return
        config.unlink()
        if theirs == "link":
            config.symlink_to(tmp_path / "elsewhere")
        elif theirs == "folder":
            config.mkdir()
    monkeypatch.setattr(files, "_synced", meanwhile)
    answer = Answer()
    before = {p.name for p in tmp_path.iterdir()}
    code = files.write([str(config), "", "", expect, str(image), ""], b"new\n", answer)
    said = b"".join(answer.err).decode().splitlines()
    assert code == 9 and said, said
    if theirs == "saved":
        assert config.read_text() == "their edit\n" and said[-1] != expect
    elif theirs == "removed":
        assert not config.exists() and said[-1] == "absent"
    elif theirs == "link":
        assert config.is_symlink() and said[-1] == "a symbolic link"
    else:
        assert config.is_dir()
    assert not image.exists() and list(image.parent.iterdir()) == []  # the unused before-image removed
    assert {p.name for p in tmp_path.iterdir()} - before == set()  # no temporary file left


def test_a_link_put_there_while_a_step_wrote_leaves_nothing_for_rollback_to_restore(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's side of the second check: a link someone puts over the file while the step's write synced is
    "changed since the plan", so the step's journal entry drops the file (it was never written) and a rollback has
    nothing of it to restore; before, rollback read through the link and refused, or --force failed, every time."""
    from remediate.contract.plan import FileChange
    from remediate.errors import ConflictError
    from remediate.kinds.file import write_file
    from remediate.transport import OPERATION
    from remediate.transport.local import LocalTransport

    class InProcess(LocalTransport):  # the host's operations run here, so that the file can change mid-write
        def _exec(self, argv: Any, *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
            assert argv[0] == OPERATION
            answer = Answer()
            code = getattr(files, argv[1])(list(argv[2:]), stdin or b"", answer)
            return code, b"".join(answer.out), b"".join(answer.err)

    journal: list[list[dict[str, Any]]] = []

    class Ctx:
        def transport(self, target: str) -> LocalTransport:
            return host

        def backup_dir(self, target: str, path: str) -> str:
            return str(image_dir)

        def record(self, step_id: str, via: Any = None, **fields: Any) -> None:
            journal.append([dict(f) for f in fields.get("files", [])])

    class Step:
        id, target = "relay", "h1"

    config, secret, image_dir = tmp_path / "config", tmp_path / "secret", tmp_path / ".remediate" / "run1"
    config.write_text("old\n")
    secret.write_text("root-only line\n")
    image_dir.mkdir(parents=True, mode=0o700)
    st = config.stat()
    host = InProcess(name="h1")
    synced = files._synced

    def meanwhile(fd: int) -> None:
        synced(fd)
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path / ".remediate-tmp")):
            config.unlink()
            config.symlink_to(secret)
    monkeypatch.setattr(files, "_synced", meanwhile)
    change = FileChange(str(config), "h1", b"old\n", b"new\n", st.st_mode & 0o7777, (st.st_uid, st.st_gid))
    with pytest.raises(ConflictError, match="changed since the plan .now a symbolic link"):
        write_file(Ctx(), Step(), change, [])  # type: ignore[arg-type]
    assert journal[0] and journal[-1] == []  # recorded before the write, dropped once it was refused
    assert config.is_symlink() and secret.read_text() == "root-only line\n" and list(image_dir.iterdir()) == []


def test_a_file_of_mode_000_is_written_when_it_is_as_planned(tmp_path: Path) -> None:
    """A file nobody but root reads (mode 000, as /etc/shadow on some systems): what the plan expects of it says 0,
    not 644, so the write goes through instead of always calling the file changed since the plan."""
    from remediate.contract.plan import FileChange

    config = tmp_path / "config"
    config.write_text("old\n")
    config.chmod(0)
    st = config.stat()
    change = FileChange(str(config), "h1", b"old\n", b"new\n", 0, (st.st_uid, st.st_gid))
    assert change.expect.split()[1] == "0"
    answer = Answer()
    assert files.write([str(config), "", "", change.expect, "", ""], b"new\n", answer) == 0, answer.err
    assert config.read_bytes() == b"new\n" and config.stat().st_mode & 0o7777 == 0
