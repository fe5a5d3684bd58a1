"""Without an agent, each of remediate's own operations runs the one implementation (transport/onhost) as a python3
one-shot; a host without a usable python3 gets a clear error before anything changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from remediate.errors import CommandError, ConnectError
from remediate.transport import NoPython, read_ask
from remediate.transport.local import LocalTransport
from remediate.transport.onhost.loop import BATCH_BUDGET


class Interpreted(LocalTransport):
    """The operator's machine, with remediate's operations run by the interpreter given."""

    python: tuple[str, ...] = ("/usr/bin/python3",)

    @property
    def interpreter(self) -> tuple[str, ...]:
        return self.python


def test_operations_run_as_one_shots_with_the_hosts_python(tmp_path: Path) -> None:
    t = Interpreted(name="h1")
    conf = tmp_path / "main.cf"
    t.write(str(conf), b"relayhost =\n", mode=0o640)
    found = t.read(str(conf))
    assert found is not None and found.content == b"relayhost =\n" and found.mode == 0o640
    assert t.sha256(str(conf)) == found.sha256
    t.mkdir(str(tmp_path / ".remediate" / "r1"))
    assert oct((tmp_path / ".remediate" / "r1").stat().st_mode)[-3:] == "700"
    t.remove(str(conf))
    assert not conf.exists() and t.read(str(conf)) is None


def test_a_host_without_python3_is_told_what_to_do_before_anything_changes(tmp_path: Path) -> None:
    t = Interpreted(name="h1")
    t.python = (str(tmp_path / "no-python3"),)
    conf = tmp_path / "main.cf"
    conf.write_bytes(b"old\n")
    with pytest.raises(NoPython) as e:
        t.write(str(conf), b"new\n")
    said = f"{e.value} {e.value.hint}"
    assert said.startswith("h1: ") and "no-python3" in said
    assert "install python3" in said and "ansible_python_interpreter" in said
    assert conf.read_bytes() == b"old\n"
    with pytest.raises(NoPython):
        t.read(str(conf))


def test_a_python_older_than_3_6_is_refused_with_its_version(tmp_path: Path) -> None:
    old = tmp_path / "python3.5"
    old.write_text("#!/bin/sh\n"  # a python3 that says it is 3.5: the guard at the top of the text stops it
                   "exec /usr/bin/python3 -c 'import sys; src = sys.argv[4]; sys.argv = sys.argv[4:]; "
                   "sys.version_info = (3, 5, 2); exec(compile(src, \"<string>\", \"exec\"), {\"__name__\": \"__main__\"})' \"$@\"\n")
    old.chmod(0o755)
    t = Interpreted(name="h1")
    t.python = (str(old),)
    with pytest.raises(NoPython, match="older than 3.6"):
        t.mkdir(str(tmp_path / ".remediate" / "r1"))
    assert not (tmp_path / ".remediate").exists()


def test_a_python_that_cannot_compile_the_operations_is_told_so_and_an_operations_own_error_is_not(
        tmp_path: Path) -> None:
    py2 = tmp_path / "python2"  # says what Python 2 says of code it cannot compile, and runs nothing
    py2.write_text("#!/bin/sh\nprintf '  File \"<string>\", line 12\\n    def f(*, a):\\n           ^\\n"
                   "SyntaxError: invalid syntax\\n' >&2\nexit 1\n")
    py2.chmod(0o755)
    t = Interpreted(name="h1")
    t.python = (str(py2),)
    with pytest.raises(NoPython, match="install python3|did not run them"):
        t.read(str(tmp_path / "main.cf"))
    named = tmp_path / "SyntaxError: invalid syntax"  # an operation's own failure that names such a path
    named.mkdir()
    t.python = ("/usr/bin/python3",)
    with pytest.raises(CommandError) as e:  # removing a folder: refused by the operation, which python3 ran
        t.remove(str(named))
    assert not isinstance(e.value, NoPython), e.value


def test_what_was_asked_ahead_is_taken_once_and_a_second_ask_goes_to_the_host(tmp_path: Path) -> None:
    """read_ahead: several read-only operations in one round trip (-v shows it), each answer kept for the read or
    operation that asks for the same, once; forget_ahead drops what none took."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("A\n")
    b.write_text("B\n")
    t = LocalTransport(name="local")
    t.read_ahead([read_ask(str(a)), read_ask(str(b)), ("list_backups", str(a)), read_ask(str(a))])
    a.write_text("changed\n")  # after the round trip: what was asked ahead is what the host had then
    state = t.read(str(a))
    assert state is not None and state.content == b"A\n"
    listed = t.operation("list_backups", str(a), display=f"list backups of {a}")
    assert listed.ok and listed.stdout.split()[0] == hashlib.sha256(b"A\n").hexdigest()
    again = t.read(str(a))
    assert again is not None and again.content == b"changed\n"  # taken once: the second read asks the host
    t.forget_ahead()
    assert t.read(str(b)) is not None
    assert [r.command for r in t.history] == [
        f"ask ahead: read {a}; read {b}; list_backups {a}", f"read {a} (asked ahead)",
        f"list backups of {a} (asked ahead)", f"read {a}", f"read {b}"]


@pytest.mark.parametrize("answer", [(2, b"", b"refused\n"), (0, b"0 5 0\nshort", b""),
                                    (0, b"0 2 0\nA\n0 9 0\nB\n", b""), (0, b"nonsense\n", b""),
                                    (0, b"0 --2 0\n", b"")],
                         ids=["refused", "one answer short", "an answer cut short", "out of step", "not a number"])
def test_an_ask_ahead_that_fails_keeps_nothing_and_each_read_asks_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: tuple[int, bytes, bytes]) -> None:
    (tmp_path / "a").write_text("A\n")
    t = LocalTransport(name="local")
    real = t._exec
    monkeypatch.setattr(t, "_exec", lambda argv, **kw: answer if "batch" in argv else real(argv, **kw))
    t.read_ahead([read_ask(str(tmp_path / "a")), read_ask(str(tmp_path / "b"))])
    assert t.ahead == {}
    state = t.read(str(tmp_path / "a"))
    assert state is not None and state.content == b"A\n"
    assert t.history[-1].command == f"read {tmp_path / 'a'}"


def test_a_batch_past_its_budget_leaves_the_rest_to_be_asked_for_on_their_own(tmp_path: Path) -> None:
    """The host stops answering once its answers pass BATCH_BUDGET (the whole answer stays under what is read of
    one): what it left is asked for again, on its own, when a step asks."""
    big = BATCH_BUDGET // 2 + 1024
    paths = [tmp_path / name for name in "abc"]
    for path in paths:
        path.write_bytes(path.name.encode() * big)
    t = LocalTransport(name="local")
    t.read_ahead([read_ask(str(path)) for path in paths])
    assert sorted(ask[1] for ask in t.ahead) == [str(paths[0]), str(paths[1])]
    for path in paths:
        state = t.read(str(path))
        assert state is not None and state.content == path.name.encode() * big
    assert [r.command for r in t.history[1:]] == [f"read {paths[0]} (asked ahead)", f"read {paths[1]} (asked ahead)",
                                                  f"read {paths[2]}"]


def test_a_connection_or_sudo_that_fails_asking_ahead_is_raised_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Never tried twice: a wrong sudo password sent again could lock the account (pam_faillock)."""
    t = LocalTransport(name="local")
    tried: list[list[str]] = []

    def refused(argv: list[str], **kw: object) -> tuple[int, bytes, bytes]:
        tried.append(argv)
        raise ConnectError("local: sudo refused: incorrect password")

    monkeypatch.setattr(t, "_exec", refused)
    with pytest.raises(ConnectError, match="incorrect password"):
        t.read_ahead([read_ask(str(tmp_path / "a")), read_ask(str(tmp_path / "b"))])
    assert len(tried) == 1 and t.ahead == {}


def test_another_hosts_run_on_the_same_connection_never_takes_this_runs_answers(tmp_path: Path) -> None:
    """Hosts running in parallel share a connection when one's step targets the other. A read by the other run goes
    to the host, even after this run asked for the same ahead: the answer kept may be older than the other run's
    ask (this run may have changed the file since). This run's answers stay its own."""
    import threading

    (tmp_path / "a").write_text("before\n")
    (tmp_path / "b").write_text("B\n")
    t = LocalTransport(name="h2")
    t.read_ahead([read_ask(str(tmp_path / "a")), read_ask(str(tmp_path / "b"))])
    (tmp_path / "a").write_text("after\n")  # changed since it was asked for ahead
    seen: list[object] = []

    def other_host() -> None:  # h1's run, a step of which reads h2's file
        state = t.read(str(tmp_path / "a"))
        seen.append(state.content if state is not None else None)
        t.forget_ahead()  # drops what that run asked for ahead, nothing of this run's

    worker = threading.Thread(target=other_host)
    worker.start()
    worker.join()
    assert seen == [b"after\n"] and t.history[-1].command == f"read {tmp_path / 'a'}"
    assert sorted(ask[1] for ask in t.ahead) == [str(tmp_path / "a"), str(tmp_path / "b")]
