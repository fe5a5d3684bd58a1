"""The run's folder asked for with mkdir(later=True) is made by the request that writes the journal's first copy into
it (journal_new_then), in the same round trip, or on its own before any other request; a folder that is refused stops
that request before anything of it runs. The real host-side code (transport/onhost), as a one-shot per request."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from remediate import api
from remediate.engine import journal, lock
from remediate.errors import CommandError, ConnectError, JournalWriteError
from remediate.transport import FOLDER_HINT, OPERATION
from remediate.transport.local import LocalTransport

JOURNAL = b'{"run_id": "r1"}\n'


class Counted(LocalTransport):
    """The operator's machine, each request it sends kept (its operation, or its command's first word)."""

    sent: list[str]
    lose_next: bool = False

    def _exec(self, argv: Sequence[str], *, stdin: bytes | None, sudo: bool,
              timeout: float | None) -> tuple[int, bytes, bytes]:
        self.sent = [*getattr(self, "sent", []), argv[1] if argv[0] == OPERATION else argv[0]]
        if self.lose_next:  # sent, and the connection lost before its answer: made or not is not known
            self.lose_next = False
            super()._exec(argv, stdin=stdin, sudo=sudo, timeout=timeout)
            raise CommandError(f"{self.name}: the SSH connection was lost")
        return super()._exec(argv, stdin=stdin, sudo=sudo, timeout=timeout)


def ship(t: Counted, folder: Path) -> None:
    """A journal copy left to go into folder with the next command, as Journal._ship leaves it."""
    t.pending_journal = lambda: (str(folder / "journal.json"), JOURNAL)


def test_the_folder_is_made_by_the_request_that_writes_the_journal_into_it(tmp_path: Path) -> None:
    t = Counted(name="h1")
    run = tmp_path / ".remediate" / "r1"
    t.mkdir(str(run), later=True)
    t.mkdir(str(run))  # asked again (a step's before-image folder): still nothing sent
    assert not (tmp_path / ".remediate").exists() and getattr(t, "sent", []) == []
    ship(t, run)
    result = t.run(["touch", str(tmp_path / "ran")])
    assert result.ok and t.sent == ["journal_new_then"]  # one round trip for the folder, the copy and the command
    assert oct(run.stat().st_mode)[-3:] == "700" and oct(run.parent.stat().st_mode)[-3:] == "700"
    assert (run / "journal.json").read_bytes() == JOURNAL and (tmp_path / "ran").exists()
    t.mkdir(str(run))
    ship(t, run)
    t.run(["true"])
    assert t.sent == ["journal_new_then", "journal_then"]  # made: never asked for again on this connection


def test_any_other_request_first_makes_the_folder_on_its_own_before_it(tmp_path: Path) -> None:
    t = Counted(name="h1")
    run = tmp_path / ".remediate" / "r1"
    t.mkdir(str(run), later=True)
    assert t.read(str(tmp_path / "absent")) is None
    assert t.sent == ["private_folder", "read"] and run.is_dir()
    other = tmp_path / "elsewhere" / ".remediate" / "r1"
    t.mkdir(str(other), later=True)
    ship(t, tmp_path / "other")  # a copy that goes to another folder: this one is made first, on its own
    (tmp_path / "other").mkdir(mode=0o700)
    t.run(["true"])
    assert t.sent[2:] == ["private_folder", "journal_then"] and other.is_dir()


@pytest.mark.parametrize("first", ["with the journal", "on its own"])
def test_a_refused_folder_runs_nothing_and_says_what_to_do(tmp_path: Path, first: str) -> None:
    t = Counted(name="h1")
    lair = tmp_path / "lair"
    lair.mkdir(mode=0o777)
    os.symlink(lair, tmp_path / ".remediate")  # someone else's doing: the state folder is a link
    run = tmp_path / ".remediate" / "r1"
    t.mkdir(str(run), later=True)
    if first == "with the journal":
        ship(t, run)
    with pytest.raises(JournalWriteError) as e:  # the mutation the copy preceded never ran
        t.run(["touch", str(tmp_path / "ran")])
    said = str(e.value)
    assert f"refusing to use {tmp_path}/.remediate" in said and "symbolic link" in said, said
    assert e.value.hint == FOLDER_HINT
    assert not (tmp_path / "ran").exists() and list(lair.iterdir()) == []
    assert t.sent == ["journal_new_then" if first == "with the journal" else "private_folder"]


def test_a_request_lost_on_the_way_leaves_the_folder_to_the_next_one(tmp_path: Path) -> None:
    t = Counted(name="h1")
    run = tmp_path / ".remediate" / "r1"
    t.mkdir(str(run), later=True)
    ship(t, run)
    t.lose_next = True
    with pytest.raises(CommandError, match="connection was lost"):
        t.run(["true"])
    t.write(str(tmp_path / "after"), b"x\n")  # made or not, the folder is made sure of before this goes
    assert t.sent == ["journal_new_then", "private_folder", "write"] and run.is_dir()


def test_a_lost_request_that_was_to_make_the_folder_leaves_it_to_the_next_one(tmp_path: Path) -> None:
    t = Counted(name="h1")
    run = tmp_path / ".remediate" / "r1"
    t.mkdir(str(run), later=True)
    t.lose_next = True  # the private_folder that goes before this read is the request lost
    with pytest.raises(CommandError, match="connection was lost"):
        t.read(str(tmp_path / "absent"))
    shutil.rmtree(tmp_path / ".remediate")  # as if it never reached the host
    ship(t, run)
    assert t.run(["true"]).ok and (run / "journal.json").read_bytes() == JOURNAL
    assert t.sent == ["private_folder", "journal_new_then"]


RUN_ID = "20261207T000000Z-abcdef"


def one_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, t: Counted) -> tuple[Path, api.Options]:
    """An inventory of one host (t, this machine) and a playbook that edits app/app.conf; the lock in lockdir."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.conf").write_text("old\n")
    (tmp_path / "lockdir").mkdir(mode=0o700)
    inv = tmp_path / "inv.yml"
    inv.write_text(f"all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n"
                   f"      remediate_state_dir: {tmp_path}/lockdir\n")
    book = tmp_path / "book.yml"
    book.write_text(f"name: t\nsteps:\n  - id: edit\n    kind: file\n"
                    f"    params: {{path: \"{app}/app.conf\", content: \"new\\n\"}}\n")
    monkeypatch.setattr(api, "ssh_factory", lambda opts, emit, pw: (lambda host: t))
    return app, api.Options(inventory=inv, playbook=str(book), hosts=("h1",))


def test_a_run_whose_folder_is_refused_writes_nothing_there_not_even_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = Counted(name="h1")
    app, opts = one_host(tmp_path, monkeypatch, t)
    state = app / ".remediate"
    state.mkdir(mode=0o777)
    state.chmod(0o777)  # refused: writable by others, and the run's folder in it another user's
    (state / RUN_ID).mkdir()
    os.chown(state / RUN_ID, 65534, 65534)
    (state / RUN_ID).chmod(0o777)
    with journal.chosen_run_id(RUN_ID):
        [out] = api.apply(opts, lambda e: None, api.ssh_factory(opts, None, None), lambda b: True)
    assert out.exit_code == 1 and "nothing was changed" in out.message and "writable by others" in out.message
    assert (app / "app.conf").read_text() == "old\n" and list((state / RUN_ID).iterdir()) == []
    assert not any(sent in ("write", "journal_then") for sent in t.sent), t.sent  # nothing after the refusal
    record = journal.named("h1", RUN_ID).record
    assert record["remote_journal"] is None and not (tmp_path / "lockdir" / "lock").exists()
    assert [s["state"] for s in record["steps"]] == ["not-started"]


def test_a_leased_run_whose_folder_is_refused_releases_its_lock(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    t = Counted(name="h1")
    app, opts = one_host(tmp_path, monkeypatch, t)
    (tmp_path / "lockdir" / RUN_ID).mkdir()
    (tmp_path / "lockdir" / RUN_ID).chmod(0o777)  # a leased run's folder, in the lock's, left writable by others
    with lock.leased("wf/" + RUN_ID, 30), journal.chosen_run_id(RUN_ID):
        [out] = api.apply(opts, lambda e: None, api.ssh_factory(opts, None, None), lambda b: True)
    assert out.exit_code == 1 and "nothing was changed" in out.message, out.message
    assert "could not release its lock" not in out.message, out.message
    assert (app / "app.conf").read_text() == "old\n" and list((tmp_path / "lockdir" / RUN_ID).iterdir()) == []
    assert not (tmp_path / "lockdir" / "lock").exists()


def test_after_a_lost_connection_the_rollback_checks_the_run_folder_before_writing_into_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request that was to make the run's folder (with the journal's first copy and the mutation) is sent and its
    answer lost: made or not, and checked or not, is not known. The rollback's new connection checks it first."""
    first, second = Counted(name="h1"), Counted(name="h1")
    app, opts = one_host(tmp_path, monkeypatch, first)
    given = iter([first, second])
    monkeypatch.setattr(api, "ssh_factory", lambda opts, emit, pw: (lambda host: next(given)))

    def lost(argv: Sequence[str], *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
        answer = Counted._exec(first, argv, stdin=stdin, sudo=sudo, timeout=timeout)
        if argv[1:2] == ["journal_new_then"]:
            raise ConnectError("h1: the SSH connection was lost")
        return answer

    monkeypatch.setattr(first, "_exec", lost)
    with journal.chosen_run_id(RUN_ID):
        [out] = api.apply(opts, lambda e: None, api.ssh_factory(opts, None, None), lambda b: True)
    assert (app / "app.conf").read_text() == "old\n", out.message  # rolled back over the new connection
    assert second.sent[0] == "private_folder", second.sent


def test_another_hosts_run_on_the_same_connection_leaves_this_runs_copy_and_folder(tmp_path: Path) -> None:
    """Hosts running in parallel share a connection when one's step targets the other. The other run's command never
    carries this run's journal copy nor makes its folder: it could reach the host after this run's mutation, or
    answer for a refusal that is this run's."""
    import threading

    t = Counted(name="h2")
    run = tmp_path / ".remediate" / "r1"
    t.mkdir(str(run), later=True)
    ship(t, run)
    other: list[object] = []

    def other_host() -> None:  # h1's run, a step of which targets h2
        other.append(t.run(["touch", str(tmp_path / "h1-was-here")]).ok)
        other.append((t.pending_journal, t.pending_folder))

    worker = threading.Thread(target=other_host)
    worker.start()
    worker.join()
    assert other == [True, (None, None)] and t.sent == ["touch"]
    assert not (tmp_path / ".remediate").exists()  # neither this run's folder nor its copy: they wait for its command
    assert t.pending_journal is not None and t.pending_folder == str(run)
    t.run(["true"])
    assert t.sent == ["touch", "journal_new_then"] and (run / "journal.json").read_bytes() == JOURNAL


def test_a_release_lost_on_the_way_still_brings_the_runs_end_to_the_hosts_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's last record rides with the lock's removal. That request's connection is lost: the release is done
    again over a new connection, which carries the record too, so the host's copy ends as the local one does."""
    first, second = Counted(name="h1"), Counted(name="h1")
    app, opts = one_host(tmp_path, monkeypatch, first)
    given = iter([first, second])
    monkeypatch.setattr(api, "ssh_factory", lambda opts, emit, pw: (lambda host: next(given)))

    def lost(argv: Sequence[str], *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
        if "remove" in argv and argv[-1].endswith("/lockdir/lock"):
            raise ConnectError("h1: the SSH connection was lost")  # before it reached the host
        return Counted._exec(first, argv, stdin=stdin, sudo=sudo, timeout=timeout)

    monkeypatch.setattr(first, "_exec", lost)
    with journal.chosen_run_id(RUN_ID):
        [out] = api.apply(opts, lambda e: None, api.ssh_factory(opts, None, None), lambda b: True)
    assert out.exit_code == 0 and (app / "app.conf").read_text() == "new\n", out.message
    assert second.sent == ["journal_then"] and not (tmp_path / "lockdir" / "lock").exists()
    host_copy = json.loads((app / ".remediate" / RUN_ID / "journal.json").read_bytes().splitlines()[-1])
    assert host_copy["outcome"] == journal.named("h1", RUN_ID).record["outcome"] == "applied"
