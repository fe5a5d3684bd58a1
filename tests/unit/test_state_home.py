"""The local state home is trusted only when nobody else can change it, as ssh trusts ~/.ssh."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from click.testing import CliRunner

from remediate import private
from remediate.cli import main as cli
from remediate.engine import journal
from remediate.errors import EXIT_ERROR, EXIT_OK, InputError

NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(private, "_trusted", set())


def state(tmp_path: Path) -> Path:
    return Path(os.environ["XDG_STATE_HOME"])


def runs() -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, ["runs", "--json"])
    return result.exit_code, result.output


def test_a_private_state_home_is_made_0700_and_used(tmp_path: Path) -> None:
    assert runs()[0] == EXIT_OK
    home = state(tmp_path) / "remediate"
    assert (home.stat().st_mode & 0o777) == 0o700 and ((home / "runs").stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("how, said", [
    ("another owner", "owned by"),
    ("group-writable", "writable by others"),
    ("a link", "symbolic link"),
])
def test_a_state_home_another_user_could_change_is_refused(tmp_path: Path, how: str, said: str) -> None:
    home = state(tmp_path) / "remediate"
    if how == "a link":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        state(tmp_path).mkdir(mode=0o700)
        home.symlink_to(elsewhere)
    else:
        home.mkdir(parents=True, mode=0o700)
        if how == "another owner":
            os.chown(home, NOBODY, -1)
        else:
            home.chmod(0o770)
    code, out = runs()
    assert code == EXIT_ERROR and said in out and str(home) in out and "XDG_STATE_HOME" in out, out


def test_a_folder_above_it_that_others_can_write_without_the_sticky_bit_is_refused(tmp_path: Path) -> None:
    shared = state(tmp_path)
    shared.mkdir(mode=0o700)
    shared.chmod(0o777)
    code, out = runs()
    assert code == EXIT_ERROR and "above the state home" in out, out
    shared.chmod(0o1777)  # as /tmp: nobody can rename what is ours
    assert runs()[0] == EXIT_OK


def test_a_planted_run_journal_is_never_picked_for_rollback(tmp_path: Path) -> None:
    folder = journal.runs_dir()
    forged = {"version": journal.VERSION, "run_id": "20990101T000000Z-aaaaaa", "host": "h1", "playbook": "p",
              "outcome": "applied", "started": "2099-01-01T00:00:00Z", "steps": []}
    path = folder / "20990101T000000Z-aaaaaa.h1.json"
    path.write_text(json.dumps(forged))
    os.chown(path, NOBODY, -1)  # written there by someone else (the folder is private: only through a bug or root)
    assert journal.history("h1") == []
    with pytest.raises(InputError, match="no run that can be rolled back"):
        journal.find("h1", None)
    target = tmp_path / "victim"
    target.write_text("root's\n")
    path.unlink()
    path.symlink_to(target)  # a link is never followed either
    assert journal.history("h1") == []


def test_a_link_planted_where_remediate_writes_is_replaced_not_followed(tmp_path: Path) -> None:
    folder = private.folder(state(tmp_path) / "remediate" / "shown")
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    planted = folder / "x.json"
    planted.symlink_to(victim)
    private.write_bytes(planted, b"{}")
    assert victim.read_text() == "keep me\n" and not planted.is_symlink() and planted.read_bytes() == b"{}"
    assert (planted.stat().st_mode & 0o777) == 0o600


def test_a_plan_key_planted_as_a_link_is_a_clear_refusal(tmp_path: Path) -> None:
    from remediate.engine import planfile

    home = private.folder(state(tmp_path) / "remediate")
    elsewhere = tmp_path / "their-key"
    elsewhere.write_bytes(b"k" * 32)
    (home / planfile.KEY_NAME).symlink_to(elsewhere)
    with pytest.raises(InputError, match="symbolic link"):  # was: internal error: OSError ELOOP
        planfile.key()


def test_the_plan_key_is_made_once_and_then_only_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from remediate.engine import planfile

    first = planfile.key()  # made: 32 bytes, 0600
    path = state(tmp_path) / "remediate" / planfile.KEY_NAME
    assert len(first) == planfile.KEY_BYTES and (path.stat().st_mode & 0o777) == 0o600
    made: list[Path] = []
    create = private.create_bytes
    monkeypatch.setattr(private, "create_bytes", lambda p, data: made.append(p) or True)
    assert planfile.key() == first and planfile.key() == first  # every plan's identity asks: no write, no fsync
    assert made == []
    path.unlink()
    monkeypatch.setattr(private, "create_bytes", create)
    assert planfile.key() != first and path.exists()  # removed: a new one is made


def test_nothing_is_made_in_another_users_home_kept_as_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sudo keeping HOME: the state home would be made under another user's home, in folders of root's that would
    break theirs (their own ~/.local could not be written). It is refused before anything is made."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, -1)
    monkeypatch.setenv("HOME", str(theirs))
    monkeypatch.delenv("XDG_STATE_HOME")
    code, out = runs()
    assert code == EXIT_ERROR and "owned by" in out and str(theirs) in out, out
    assert list(theirs.iterdir()) == []


def test_a_umask_that_lets_the_group_write_still_makes_a_private_state_home(tmp_path: Path) -> None:
    """With umask 002 (a user private group), folders made with the default mode would be refused as writable by
    others the moment they were made: none is made writable by others, and the state home is 0700."""
    os.umask(0o002)  # restored by conftest's umask_kept
    made = state(tmp_path)
    assert not made.exists()
    assert runs()[0] == EXIT_OK
    assert [oct(p.stat().st_mode & 0o777) for p in (made, made / "remediate", made / "remediate" / "runs")] == [
        "0o755", "0o700", "0o700"]  # the folders above, readable as usual; its own, private


def test_serve_makes_nothing_in_another_users_folder_and_follows_no_link_there(tmp_path: Path) -> None:
    """serve's state directory is trusted as the state home is: root with another user's HOME makes nothing in it,
    and a link planted as the directory is refused, not followed (its target was made 0700 and got serve.lock)."""
    from remediate.serve import launch
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, -1)
    with pytest.raises(InputError, match="owned by"):
        launch._take(theirs / ".local" / "state" / "remediate" / "serve")
    assert list(theirs.iterdir()) == []
    mine, target = tmp_path / "mine", tmp_path / "target"
    mine.mkdir(mode=0o700)
    target.mkdir(mode=0o755)
    (mine / "serve").symlink_to(target)
    with pytest.raises(InputError, match="symbolic link; serve keeps its incidents") as e:
        launch._take(mine / "serve")
    assert "give --state-dir a folder only serve's user can write" in str(e.value.hint)
    assert target.stat().st_mode & 0o777 == 0o755 and list(target.iterdir()) == []
    held = launch._take(mine / "made")
    held.close()
    assert (mine / "made").stat().st_mode & 0o777 == 0o700 and (mine / "made" / "serve.lock").exists()


def test_a_relative_xdg_state_home_is_ignored_as_the_xdg_spec_says(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a state home under wherever remediate runs (the runs' records scattered, a rollback from elsewhere finding
    none): the home folder's, as when it is unset."""
    home = tmp_path / "operator"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", "state")
    monkeypatch.chdir(tmp_path)
    assert runs()[0] == EXIT_OK
    assert journal.state_home() == home / ".local" / "state" / "remediate"
    assert not (tmp_path / "state").exists()
    from remediate.serve.client import state_dir
    assert state_dir(None) == home / ".local" / "state" / "remediate" / "serve"


@pytest.mark.parametrize("given", ["relhome", ""])
def test_a_relative_home_with_no_state_home_is_refused_and_nothing_is_made(tmp_path: Path, given: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", given)
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    code, output = runs()
    assert code == EXIT_ERROR and f"no state home: HOME is {given!r}, not an absolute path" in output
    assert sorted(tmp_path.rglob("*")) == before
    with pytest.raises(InputError, match="set XDG_STATE_HOME"):
        journal.state_home()
