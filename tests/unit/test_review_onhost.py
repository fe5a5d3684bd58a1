"""An adversarial review of the host side (transport/onhost): another local user who can rename entries in a folder
on the path races remediate (root) between its checks and its use of a name. Each swap is made at a fixed point of
the host code, in-process, so the order is the test's, not the scheduler's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from remediate.transport.onhost import backups, files, loop
from remediate.transport.onhost.common import Answer
from remediate.transport.onhost.common import os as host_os  # what the host side calls os (the built-in posix)

NOBODY = 65534


def _swap_folder_for_link(folder: Path, to: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".moved"))
    folder.symlink_to(to)
    os.lchown(folder, NOBODY, NOBODY)


def test_a_folder_swapped_for_a_link_after_the_checks_never_gets_the_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, victim = tmp_path / "shared" / "app", tmp_path / "victim"
    app.mkdir(parents=True)
    victim.mkdir()
    (app / "config").write_text("old\n")
    (victim / "config").write_text("victim\n")
    real_open, swapped = os.open, []

    def racing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & os.O_CREAT and not swapped:  # remediate checked the path: now make its folder lead elsewhere
            swapped.append(True)
            _swap_folder_for_link(app, victim)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(host_os, "open", racing_open)
    files.write([str(app / "config"), "", "", "", "", ""], b"new\n", Answer())
    monkeypatch.undo()
    assert swapped
    assert (victim / "config").read_text() == "victim\n"
    assert not [p.name for p in victim.iterdir() if p.name != "config"]


def test_a_removal_never_follows_a_folder_swapped_after_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, victim = tmp_path / "shared" / "app", tmp_path / "victim"
    app.mkdir(parents=True)
    victim.mkdir()
    (app / "passwd").write_text("made by the run\n")
    (victim / "passwd").write_text("victim\n")
    _swap_folder_for_link(app, victim)
    code = files.remove([str(app / "passwd")], b"", Answer())
    assert (victim / "passwd").read_text() == "victim\n"
    assert code != 0


def test_a_run_folder_swapped_for_another_users_folder_never_gets_the_journal(tmp_path: Path) -> None:
    state = tmp_path / "shared" / ".remediate"
    (state / "run1").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    # the shared folder lets others rename entries: .remediate is moved away and another user's folder put there
    state.rename(state.with_name("ours"))
    (state / "run1").mkdir(parents=True)
    for folder in (state, state / "run1"):
        os.chown(folder, NOBODY, NOBODY)
    answer = Answer()
    code = loop.journal_then([str(state / "run1" / "journal.json"), "7", "true"], b"secrets", answer)
    assert code == 8
    assert list((state / "run1").iterdir()) == []


def test_a_before_image_never_lands_in_another_users_folder(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("old\n")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    code = files.write([str(tmp_path / "config"), "", "", "", str(theirs / "config.orig"), ""], b"new\n", Answer())
    assert code != 0
    assert list(theirs.iterdir()) == []
    assert (tmp_path / "config").read_text() == "old\n"


def test_a_file_swapped_for_a_link_to_a_device_is_pinned_and_refused_never_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read pins the name (O_PATH: nothing is opened), checks what it pinned, and reads only through that pin:
    there is no later open by name to race. The swap comes just before the pin; the device is refused unopened."""
    config = tmp_path / "config"
    config.write_text("old\n")
    real_open, swapped = os.open, []

    def racing_open(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.path.basename(str(path)) == "config" and not swapped:  # found regular: now a link to a device
            swapped.append(True)
            config.unlink()
            config.symlink_to("/dev/zero")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(host_os, "open", racing_open)
    answer = Answer()
    code = files.read([str(config), "4096"], b"", answer)
    monkeypatch.undo()
    assert swapped
    assert code == 6
    assert b"\0" not in b"".join(answer.out)


def test_backups_another_user_planted_are_neither_listed_nor_pruned(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("now\n")
    ours = tmp_path / "config.backup-20260101T000000Z"
    ours.write_text("before\n")
    planted = [tmp_path / f"config.backup-9999999{i}" for i in range(3)]
    for fake in planted:
        fake.write_text("planted\n")
        os.chown(fake, NOBODY, NOBODY)
    answer = Answer()
    assert backups.list_backups([str(config)], b"", answer) == 0
    listed = b"".join(answer.out).decode().splitlines()[1:]
    assert listed == [str(ours)]
    made = str(tmp_path / "config.backup-20270101T000000Z")
    assert backups.backup([str(config), listed and _sha(config) or "", made], b"", Answer()) == 0
    assert backups.prune_backups([str(config), made, *map(str, planted)], b"", Answer()) == 0
    assert all(fake.exists() for fake in planted)


def _sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _EndedChannel:
    """A channel whose command (sudo's `sh -c 'printf MARKER; exec python3...'`) ended at once: python3 is missing."""

    def exec_command(self, command: str) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        raise OSError("Socket is closed")

    def recv(self, size: int) -> bytes:
        return b""

    def settimeout(self, timeout: float | None) -> None:
        pass

    def recv_stderr_ready(self) -> bool:
        return True

    def recv_stderr(self, size: int) -> bytes:
        return b""

    def close(self) -> None:
        pass


def test_an_agent_whose_python_ended_before_its_token_went_never_started() -> None:
    from remediate.transport.agent import Agent

    agent = Agent(_EndedChannel(), "host", "python3 ...")
    assert agent.run(["", "read", "/etc/hostname", "10"], None, 5) is None
    assert agent.why


@pytest.mark.parametrize("operation", ["take_lock", "private_folder"])
def test_no_folder_of_remediates_is_made_through_another_users_link_above_it(tmp_path: Path, operation: str) -> None:
    """The lock's folder and a run's state folder are made when absent: never through a link another user put among
    the folders above them (it led root to make `.remediate` or a lock in a folder of the link owner's choosing)."""
    from remediate.transport.onhost import folders

    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    shared.mkdir()
    elsewhere.mkdir(mode=0o700)
    _swap_folder_for_link(shared, elsewhere)  # the whole of `shared` now leads to a folder remediate did not name
    answer = Answer()
    if operation == "take_lock":
        code = folders.take_lock([str(shared / "state" / "lock")], b"run-1\n", answer)
    else:
        code = folders.private_folder([str(shared / "app" / ".remediate" / "run-1")], b"", answer)
    assert code != 0
    assert list(elsewhere.iterdir()) == []  # nothing made there
