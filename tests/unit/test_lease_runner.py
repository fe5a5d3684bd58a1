"""A leased run (#24), at the transport seam: renewed before each step and each undo; fenced out by another attempt
that took its lock over, it stops at once, undoes nothing, leaves the lock and the host's journal copy to that attempt
and says so; its journal copy goes in the lock's folder, where any worker finds it by the run id."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from remediate.engine import journal, lock
from remediate.engine.context import TransportPool
from remediate.engine.runner import Runner
from remediate.errors import LeaseLost
from remediate.inputs import playbook
from remediate.inputs.inventory import Host
from remediate.transport import OPERATION, FileState

from .fakes import FakeTransport

LOCK = "/var/lib/remediate/lock"
LOCK_OPERATIONS = ("take_lock", "renew_lock", "release_lock", "show_lock")
BOOK = """\
name: unit-lease
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "new\\n"}
  - id: marker
    kind: command
    params: {command: [make-marker], creates: /etc/marker, undo: [rm-marker]}
  - id: last
    kind: file
    params: {path: /etc/last.conf, content: "last\\n"}
"""


@dataclass
class LeaseFake(FakeTransport):
    """FakeTransport with the lock's own operations as the host does them (onhost.folders), its clock the ages
    given: `ages[path]` is how long ago the lock was last written or renewed."""

    ages: dict[str, float] = field(default_factory=dict)
    #: Every lock operation asked for, in order: (operation, the document taken or the token given).
    asked: list[tuple[str, Any]] = field(default_factory=list)

    def _exec(self, argv: Sequence[str], *, stdin: bytes | None, sudo: bool,
              timeout: float | None) -> tuple[int, bytes, bytes]:
        argv = list(argv)
        if argv[:2] == [OPERATION, "journal_then"] and argv[4:5] == [OPERATION] and argv[5] in LOCK_OPERATIONS:
            size = int(argv[3])
            assert stdin is not None
            self.files[argv[2]] = FileState(argv[2], stdin[:size], 0o600, 0, 0)
            self.writes.append(argv[2])
            argv, stdin = argv[4:], stdin[size:] or None
        if argv[:1] == [OPERATION] and argv[1] in LOCK_OPERATIONS:
            return self._lock(argv[1], argv[2:], stdin)
        return super()._exec(argv, stdin=stdin, sudo=sudo, timeout=timeout)

    def _shown(self, path: str) -> bytes:
        return self.files[path].content + b"\nage=%d\n" % int(self.ages.get(path, 0))

    def _live(self, path: str) -> bool:
        lease = json.loads(self.files[path].content or b"{}").get("lease")
        return lease is not None and self.ages.get(path, 0) < float(lease["seconds"])

    def _lock(self, operation: str, args: list[str], stdin: bytes | None) -> tuple[int, bytes, bytes]:
        path, found = args[0], self.files.get(args[0])
        self.asked.append((operation, json.loads(stdin or b"{}") if operation == "take_lock" else args[1:]))
        if operation == "take_lock":
            if found is not None and (len(args) < 2 or found.content != bytes.fromhex(args[1]) or self._live(path)):
                return 4, self._shown(path), b""
            self.put(path, stdin or b"")
            self.ages[path] = 0
            return 0, b"", b""
        if found is None:
            return 3, b"", b""  # gone: a lease on it is lost (release_lock too: never taken for released)
        if operation == "show_lock":
            return 0, self._shown(path), b""
        if (json.loads(found.content).get("lease") or {}).get("token") != args[1]:
            return 4, self._shown(path), b""
        if operation == "renew_lock":
            self.ages[path] = 0
        else:
            if len(args) > 2:  # the journal copy the release carries: written once the token matched
                self.files[args[2]] = FileState(args[2], stdin or b"", 0o600, 0, 0)
                self.writes.append(args[2])
            del self.files[path]
        return 0, b"", b""

    def take_over(self, path: str = LOCK) -> str:
        """Another attempt of the lock's run takes it over (its token now), as one whose lease lapsed would be."""
        held = json.loads(self.files[path].content)
        held["lease"]["token"] = "f" * 32
        held["machine"] = "worker-b"
        self.put(path, json.dumps(held))
        return "f" * 32


def host_fake() -> LeaseFake:
    t = LeaseFake(name="h1")
    t.put("/etc/app.conf", "old\n")
    t.put("/etc/last.conf", "last-old\n")
    t.expect(["make-marker"], lambda stdin: (t.put("/etc/marker", "") or (0, "", "")))
    t.expect(["rm-marker"], lambda stdin: (t.files.pop("/etc/marker", None) and (0, "", "")) or (0, "", ""))
    return t


def runner_for(tmp_path: Path, fake: FakeTransport, events: list[dict[str, Any]]) -> tuple[Runner, Any]:
    path = tmp_path / "book.yml"
    path.write_text(BOOK)
    run = Runner(playbook=playbook.load(path), pool=TransportPool(None, lambda host: fake),
                 emit=lambda e: events.append(e.as_dict()))
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {})
    run.run(bound, mode="apply")
    return run, bound


def test_a_leased_run_renews_before_each_step_and_keeps_its_journal_in_the_locks_folder(tmp_path: Path) -> None:
    fake = host_fake()
    with lock.leased("wf-1/R1", 10) as lease:
        run, bound = runner_for(tmp_path, fake, [])
    assert run.apply(bound).exit_code == 0
    taken = fake.asked[0][1]
    assert fake.asked[0][0] == "take_lock" and taken["lease"] == lease.as_dict()
    copy_path = f"/var/lib/remediate/{bound.ctx.run_id}/journal.json"
    assert [a for a in fake.asked[1:]] == [("renew_lock", [lease.token])] * 4 + [("release_lock", [lease.token, copy_path])]
    copy = json.loads(fake.files[copy_path].content)
    assert copy["outcome"] == "applied" and LOCK not in fake.files
    assert not [p for p in fake.files if p.startswith("/etc/.remediate/") and p.endswith("journal.json")]


def test_the_lease_reaches_a_host_run_on_another_thread(tmp_path: Path) -> None:
    """A fleet runs hosts in a thread pool, which does not carry context variables: the runner keeps the lease it was
    made under."""
    fake = host_fake()
    with lock.leased("wf-1/R1", 10) as lease:
        run, bound = runner_for(tmp_path, fake, [])
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(run.apply(bound).exit_code))
    worker.start()
    worker.join(60)
    assert done == [0] and fake.asked[0][1]["lease"]["token"] == lease.token


def test_a_run_fenced_out_mid_way_stops_undoing_nothing_and_leaves_the_lock(tmp_path: Path) -> None:
    fake = host_fake()
    events: list[dict[str, Any]] = []
    with lock.leased("wf-1/R1", 10):
        run, bound = runner_for(tmp_path, fake, events)
    theirs: dict[str, bytes] = {}

    def marker_then_taken_over(stdin: bytes | None) -> tuple[int, str, str]:
        fake.put("/etc/marker", "")
        fake.take_over()  # the worker was silent too long: a retry elsewhere took the run over
        copy = f"/var/lib/remediate/{bound.ctx.run_id}/journal.json"
        theirs[copy] = fake.files[copy].content
        return 0, "", ""

    fake.expect(["make-marker"], marker_then_taken_over)
    with pytest.raises(LeaseLost, match="lost its lease .* this one stopped, undoing nothing"):
        run.apply(bound)
    assert fake.files["/etc/app.conf"].content == b"new\n" and "/etc/marker" in fake.files  # nothing undone
    assert fake.files["/etc/last.conf"].content == b"last-old\n"  # nothing more applied
    assert json.loads(fake.files[LOCK].content)["lease"]["token"] == "f" * 32  # theirs, not released
    assert not [e for e in events if e["event"] == "step_rolled_back"]
    assert any("lost its lease" in e.get("message", "") for e in events if e["event"] == "notice")
    assert journal.history("h1")[0]["outcome"] == "taken-over"
    (copy, content), = theirs.items()
    assert fake.files[copy].content == content  # the host's copy is the other attempt's: never written again


@pytest.mark.parametrize("meanwhile", ["taken over", "removed"])
def test_a_run_fenced_out_after_its_last_renewal_neither_writes_the_copy_nor_reports_applied(
        tmp_path: Path, meanwhile: str) -> None:
    """The worker stalls between its last renewal and its release while another attempt takes the run over (and may
    undo it and release the lock): the release finds the lock someone else's, or gone, and carries nothing."""
    fake = host_fake()
    events: list[dict[str, Any]] = []
    with lock.leased("wf-1/R1", 10):
        run, bound = runner_for(tmp_path, fake, events)
    copy = f"/var/lib/remediate/{bound.ctx.run_id}/journal.json"
    theirs: list[bytes] = []
    release = LeaseFake._lock

    def stalled(self: LeaseFake, operation: str, args: list[str], stdin: bytes | None) -> tuple[int, bytes, bytes]:
        if operation == "release_lock" and not theirs:
            fake.take_over()
            if meanwhile == "removed":
                del fake.files[LOCK]
            fake.put(copy, b"the taker's copy")
            theirs.append(fake.files[copy].content)
        return release(self, operation, args, stdin)

    fake._lock = stalled.__get__(fake)  # type: ignore[method-assign]
    with pytest.raises(LeaseLost, match="lost its lease"):
        run.apply(bound)
    assert fake.files[copy].content == theirs[0]  # the taker's copy, never overwritten by "applied"
    assert journal.history("h1")[0]["outcome"] == "taken-over"
    assert not [e for e in events if e["event"] == "run_finished"]
    assert (LOCK in fake.files) == (meanwhile == "taken over")


def test_a_rollback_fenced_out_at_its_release_leaves_the_copy_to_the_taker(tmp_path: Path) -> None:
    fake = host_fake()
    with lock.leased("wf-1/R1", 10):
        run, bound = runner_for(tmp_path, fake, [])
    assert run.apply(bound).exit_code == 0
    copy = f"/var/lib/remediate/{bound.ctx.run_id}/journal.json"
    # the last undo (conf's) takes the run over from inside: the release that follows finds the lock the taker's
    fake.expect(["rm-marker"], lambda stdin: (fake.files.pop("/etc/marker", None), (0, "", ""))[1])
    conf_undo = fake.write

    def taken_over_at_the_last_undo(path: str, content: bytes, **kwargs: Any) -> str:
        done = conf_undo(path, content, **kwargs)
        if path == "/etc/app.conf":
            fake.take_over()
            fake.put(copy, b"the taker's copy")
        return done

    fake.write = taken_over_at_the_last_undo  # type: ignore[method-assign]
    with lock.leased("wf-1/R1", 10):
        undo = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    with pytest.raises(LeaseLost):
        undo.rollback(Host(name="h1", address="127.0.0.1"), journal.find("h1", None))
    assert fake.files["/etc/app.conf"].content == b"old\n"  # undone before the take-over
    assert fake.files[copy].content == b"the taker's copy"
    assert journal.history("h1")[0]["outcome"] == "taken-over"
    assert json.loads(fake.files[LOCK].content)["lease"]["token"] == "f" * 32


def test_a_leased_rollback_and_a_leased_failure_end_their_copy_with_the_release_while_the_lock_is_theirs(
        tmp_path: Path) -> None:
    """The last record of a leased rollback (and of a leased run that failed and rolled back) goes with the lock's
    release, which writes it only while the lock carries the attempt's token: never after the lock is free."""
    fake = host_fake()
    with lock.leased("wf-1/R1", 10) as failing:
        run, bound = runner_for(tmp_path, fake, [])
    fake.expect(["make-marker"], (1, "", "boom"))
    assert run.apply(bound).exit_code != 0
    copy = f"/var/lib/remediate/{bound.ctx.run_id}/journal.json"
    assert fake.asked[-1] == ("release_lock", [failing.token, copy])
    assert json.loads(fake.files[copy].content)["outcome"] == "rolled-back"

    fake = host_fake()
    with lock.leased("wf-1/R2", 10):
        run, bound = runner_for(tmp_path, fake, [])
    assert run.apply(bound).exit_code == 0
    copy = f"/var/lib/remediate/{bound.ctx.run_id}/journal.json"
    with lock.leased("wf-1/R2", 10) as lease:
        undo = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    writes = len(fake.writes)
    assert undo.rollback(Host(name="h1", address="127.0.0.1"), journal.named("h1", bound.ctx.run_id)).exit_code == 0
    assert fake.asked[-1] == ("release_lock", [lease.token, copy])
    assert copy not in fake.writes[writes:-1] and fake.writes[-1] == copy  # written once, by the release
    assert json.loads(fake.files[copy].content)["outcome"] == "rolled-back" and LOCK not in fake.files


def test_a_failure_whose_undo_finds_the_run_taken_over_undoes_nothing(tmp_path: Path) -> None:
    """The runner's own failure path (any exception rolls back) must not undo a run another attempt owns now."""
    fake = host_fake()
    events: list[dict[str, Any]] = []
    with lock.leased("wf-1/R1", 10):
        run, bound = runner_for(tmp_path, fake, events)
    fake.expect(["make-marker"], lambda stdin: (fake.take_over() and (1, "", "boom")) or (1, "", "boom"))
    with pytest.raises(LeaseLost):
        run.apply(bound)
    assert fake.files["/etc/app.conf"].content == b"new\n"
    assert not [e for e in events if e["event"] == "step_rolled_back"]
    assert journal.history("h1")[0]["outcome"] == "taken-over" and LOCK in fake.files


def test_a_rollback_fenced_out_mid_way_stops_there(tmp_path: Path) -> None:
    fake = host_fake()
    run, bound = runner_for(tmp_path, fake, [])
    assert run.apply(bound).exit_code == 0  # a CLI run, no lease
    fake.expect(["rm-marker"], lambda stdin: (fake.files.pop("/etc/marker", None), fake.take_over(), (0, "", ""))[2])
    events: list[dict[str, Any]] = []
    with lock.leased("wf-1/undo", 10):
        undo = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: events.append(e.as_dict()))
    with pytest.raises(LeaseLost):
        undo.rollback(Host(name="h1", address="127.0.0.1"), journal.find("h1", None))
    assert [e["step"] for e in events if e["event"] == "step_rolled_back"] == ["last", "marker"]
    assert fake.files["/etc/app.conf"].content == b"new\n"  # the undo after the take-over never ran
    assert journal.history("h1")[0]["outcome"] == "taken-over"
    assert json.loads(fake.files[LOCK].content)["lease"]["token"] == "f" * 32


def leased_over(tmp_path: Path, connections: list[LeaseFake], events: list[dict[str, Any]]) -> tuple[Runner, Any]:
    """A leased run of BOOK on h1, planned, each new connection the next of those given (one after a lost one)."""
    given = iter(connections)
    path = tmp_path / "book.yml"
    path.write_text(BOOK)
    with lock.leased("wf-1/R1", 10):
        run = Runner(playbook=playbook.load(path), pool=TransportPool(None, lambda host: next(given)),
                     emit=lambda e: events.append(e.as_dict()))
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {})
    run.run(bound, mode="apply")
    return run, bound


def test_after_a_lost_connection_the_lease_is_renewed_on_the_new_one(tmp_path: Path) -> None:
    """The failure path logs in again to roll back: the renewals before each undo go over the new connection, not
    the lost one (which would leave every undo failed)."""
    from remediate.errors import ConnectError

    @dataclass
    class Dropping(LeaseFake):
        closed: bool = False
        drops: str | None = None

        def _exec(self, argv: Sequence[str], **kwargs: Any) -> tuple[int, bytes, bytes]:
            if self.closed:
                raise ConnectError(f"{self.name}: the SSH connection was lost")
            return super()._exec(argv, **kwargs)

        def write(self, path: str, content: bytes, **kwargs: Any) -> str:
            if path == self.drops:
                self.closed = True
            if self.closed:
                raise ConnectError(f"{self.name}: the SSH connection was lost")
            return super().write(path, content, **kwargs)

        def close(self) -> None:
            self.closed = True

    first = host_fake()
    lost = Dropping(name="h1", files=first.files, ages=first.ages, replies=first.replies, drops="/etc/last.conf")
    again = Dropping(name="h1", files=first.files, ages=first.ages, replies=first.replies)
    events: list[dict[str, Any]] = []
    run, bound = leased_over(tmp_path, [lost, again], events)
    outcome = run.apply(bound)
    assert "every applied step was rolled back" in outcome.message, outcome.message
    assert first.files["/etc/app.conf"].content == b"old\n" and LOCK not in first.files
    assert ("renew_lock", [lost.asked[0][1]["lease"]["token"]]) in again.asked


@dataclass
class LostAtRelease(LeaseFake):
    """The connection drops at the release: after the host did it (done), or before it got there, while another
    attempt took the run over and released it (its record in the copy, no lock); every later command on this
    connection finds it lost."""

    closed: bool = False
    done: bool = True

    def _lock(self, operation: str, args: list[str], stdin: bytes | None) -> tuple[int, bytes, bytes]:
        from remediate.errors import ConnectError
        if self.closed:
            raise ConnectError(f"{self.name}: the SSH connection was lost")
        if operation != "release_lock":
            return super()._lock(operation, args, stdin)
        if self.done:
            super()._lock(operation, args, stdin)
        else:
            self.files[args[2]] = FileState(args[2], b'{"machine": "worker-b", "outcome": "applied"}', 0o600, 0, 0)
            del self.files[args[0]]
        self.closed = True
        raise ConnectError(f"{self.name}: the SSH connection was lost")


def two_connections(first: LeaseFake) -> tuple[LostAtRelease, LeaseFake]:
    lost = LostAtRelease(name="h1", files=first.files, ages=first.ages, replies=first.replies)
    return lost, LeaseFake(name="h1", files=first.files, ages=first.ages, replies=first.replies)


def test_a_release_done_before_its_connection_was_lost_is_taken_for_released(tmp_path: Path) -> None:
    """The retry over a new connection finds the lock gone and the host's copy exactly the record the release
    carried: the earlier try went through, and the run reports its own outcome, not a lost lease."""
    first = host_fake()
    lost, again = two_connections(first)
    events: list[dict[str, Any]] = []
    run, bound = leased_over(tmp_path, [lost, again], events)
    outcome = run.apply(bound)
    assert outcome.exit_code == 0, outcome.message
    assert LOCK not in first.files and [a[0] for a in again.asked] == ["release_lock"]
    copy = lost.asked[-1][1][1]
    assert json.loads(first.files[copy].content)["outcome"] == journal.history("h1")[0]["outcome"] != "running"
    assert not [e for e in events if e["event"] == "notice" and "release" in e.get("message", "")]


def test_a_lock_gone_with_another_record_in_the_copy_is_still_a_lost_lease(tmp_path: Path) -> None:
    """The lock gone and the host's copy another attempt's record (it took the run over and released): lost, as
    before; the copy is never taken for this attempt's."""
    first = host_fake()
    lost, again = two_connections(first)
    lost.done = False
    run, bound = leased_over(tmp_path, [lost, again], [])
    with pytest.raises(LeaseLost):
        run.apply(bound)
