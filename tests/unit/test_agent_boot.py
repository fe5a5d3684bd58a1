"""How the agent starts on a host (transport/onhost/boot.py): `python3 -I -S -c BOOT` reads SOURCE from its stdin, and
runs the code the controller compiled only when its python3 runs the controller's bytecode; else it compiles the text.
Nothing runs on a frame cut short or out of step, and a python3 too old says so before anything runs."""

from __future__ import annotations

import glob
import importlib.util
import marshal
import os
import pwd
import shlex
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from remediate import private
from remediate.transport import OPERATION, onhost
from remediate.transport import agent as agent_module
from remediate.transport.agent import Agent, PipeChannel, agent_command, boot_frame, bytecode
from remediate.transport.onhost import TOO_OLD

NOBODY = pwd.getpwnam("nobody").pw_uid


def frame(tag: str, code: str | None, text: str) -> bytes:
    """A boot frame as agent.boot_frame makes one: the code compiled here (or none), then the text, zlib-compressed."""
    compiled = marshal.dumps(compile(code, "<string>", "exec", dont_inherit=True)) if code is not None else b""
    packed = zlib.compress(text.encode(), 1)
    return b"%s %d %d\n" % (tag.encode(), len(compiled), len(packed)) + compiled + packed


def boot(stdin: bytes) -> int:
    """The agent's command, as this interpreter (the controller's bytecode) runs it, given stdin."""
    return subprocess.run(agent_command((sys.executable,)), input=stdin, capture_output=True, timeout=30).returncode


def test_the_controllers_code_runs_only_on_a_host_with_its_bytecode() -> None:
    compiled, text = "import sys\nsys.exit(42)\n", "import sys\nsys.exit(43)\n"
    assert boot(frame(bytecode(), compiled, text)) == 42
    assert boot(frame("cpython-311-00000d0a", compiled, text)) == 43  # another magic number: the text
    assert boot(frame("pypy39-" + bytecode().rpartition("-")[2], compiled, text)) == 43  # another implementation
    assert boot(frame(bytecode(), None, text)) == 43  # no code sent: the text


def test_nothing_runs_on_a_frame_cut_short_or_out_of_step(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"open({str(marker)!r}, 'w').close()\n"
    whole = frame("another", None, text)
    assert boot(whole[:-3]) == 0  # the connection ended inside the text
    assert boot(whole.partition(b"\n")[0]) == 0  # ... after the header
    assert boot(b"") == 0
    assert boot(b"token 5\n" + whole) == 97  # out of step: a request's line where the frame's should be
    assert boot(b"another x 5\n" + whole) == 97
    assert not marker.exists()
    assert boot(whole) == 0 and marker.exists()


def test_a_python_without_zlib_needing_the_text_ends_having_run_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    whole = frame("another", None, f"open({str(marker)!r}, 'w').close()\n")
    command = agent_command((sys.executable,))
    command[-1] = "import sys\nsys.modules['zlib'] = None\n" + command[-1]  # as a python3 built without it
    done = subprocess.run(command, input=whole, capture_output=True, timeout=30)
    assert done.returncode != 0 and b"zlib" in done.stderr and not marker.exists()
    assert subprocess.run(command, input=frame(bytecode(), f"open({str(marker)!r}, 'w').close()\n", ""),
                          timeout=30).returncode == 0 and marker.exists()  # the controller's code needs no zlib


def test_a_python_older_than_3_6_says_so_and_runs_nothing(tmp_path: Path) -> None:
    old = tmp_path / "python3.5"
    old.write_text("#!/bin/sh\n"  # a python3 that says it is 3.5: the guard at the top of BOOT stops it
                   f"exec {shlex.quote(sys.executable)} -c 'import sys; src = sys.argv[4]; sys.argv = sys.argv[:1]; "
                   "sys.version_info = (3, 5, 2); exec(compile(src, \"<string>\", \"exec\"), {\"__name__\": \"__main__\"})' \"$@\"\n")
    old.chmod(0o755)
    agent = Agent(PipeChannel(), "local", shlex.join(agent_command((str(old),))))
    assert agent.run(["touch", str(tmp_path / "ran")], None, 10) is None
    assert TOO_OLD in agent.why
    assert not (tmp_path / "ran").exists()
    agent.close()


def pythons() -> list[str]:
    """Every python3 from 3.6 this machine has (pyenv's, the system's), and the controller's own."""
    found = {sys.executable, "/usr/bin/python3"}
    found |= set(glob.glob(str(Path.home() / ".pyenv/versions/3.*/bin/python3")))
    return sorted(p for p in found if Path(p).exists())


@pytest.mark.parametrize("python", pythons())
def test_the_agent_answers_on_each_python3(python: str, tmp_path: Path) -> None:
    """Whichever way it gets SOURCE (the controller's code on the same bytecode, else its text), an agent answers."""
    conf = tmp_path / "app.conf"
    conf.write_bytes(b"x=1\n")
    agent = Agent(PipeChannel(), "local", shlex.join(agent_command((python,))))
    try:
        assert agent.run(["sh", "-c", "echo out; echo err >&2; exit 3"], None, 30) == (3, b"out\n", b"err\n")
        code, out, err = agent.run([OPERATION, "read", str(conf), "100"], None, 30) or (None, b"", b"")
        assert code == 0 and out.endswith(b"x=1\n"), err
    finally:
        agent.close()


@pytest.fixture
def compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """SOURCE's compilations in this test (their file names), its code kept under tmp_path as if onhost were there,
    and no frame made before."""
    monkeypatch.setattr(onhost, "__file__", str(tmp_path / "onhost" / "__init__.py"))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    compiled: list[str] = []
    real = compile

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        compiled.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr("builtins.compile", counting)
    agent_module._boot_frame.cache_clear()
    yield compiled
    agent_module._boot_frame.cache_clear()


def fresh_frame() -> object:
    """The code in boot_frame() as a new run makes it."""
    agent_module._boot_frame.cache_clear()
    head, _, rest = boot_frame().partition(b"\n")
    return marshal.loads(rest[:int(head.split()[1])])


def test_the_code_is_compiled_once_per_process(compiles: list[str]) -> None:
    """However many connections start their agents at once, SOURCE is compiled once."""
    frames = set()
    threads = [threading.Thread(target=lambda: frames.add(boot_frame())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(frames) == 1 and compiles == ["<string>"]


def test_the_code_is_kept_for_the_next_run_as_python_keeps_a_modules(compiles: list[str], tmp_path: Path) -> None:
    first = fresh_frame()
    kept = list((tmp_path / "onhost" / "__pycache__").iterdir())
    assert [p.name.endswith(f".{sys.implementation.cache_tag}.pyc") for p in kept] == [True]
    assert kept[0].read_bytes().startswith(importlib.util.MAGIC_NUMBER)
    assert fresh_frame() == first and compiles == ["<string>"]  # the next run reads it

    whole = kept[0].read_bytes()
    for spoilt in (whole[:-100], b"\0\0\r\n" + whole[4:], whole[:8] + bytes(8) + whole[16:]):  # cut short, another
        kept[0].write_bytes(spoilt)  # magic number, another SOURCE's: compiled again, and kept again
        compiles.clear()
        assert fresh_frame() == first and compiles == ["<string>"]
        again = kept[0].read_bytes()
        assert again[:16] == whole[:16] and marshal.loads(again[16:]) == first


def test_no_code_is_kept_where_python_writes_no_bytecode(compiles: list[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    first = fresh_frame()
    assert not (tmp_path / "onhost").exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    (tmp_path / "onhost").mkdir(mode=0o500)  # a folder this user cannot write in (root can: then it is kept)
    assert fresh_frame() == first and compiles == ["<string>", "<string>"]
    leftovers = list((tmp_path / "onhost").rglob("*.pyc.*"))
    assert leftovers == []


@pytest.fixture
def unwritable(compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """onhost where no __pycache__ can be made, not even by root (its folder's parent is a file), as a package
    installed by root is for another user; the user's cache folder, as own_cache finds it: under HOME."""
    (tmp_path / "site").write_text("a file, not a folder\n")
    monkeypatch.setattr(onhost, "__file__", str(tmp_path / "site" / "onhost" / "__init__.py"))
    return Path.home() / ".cache" / "remediate"


def test_where_the_package_cannot_be_written_the_code_is_kept_in_the_users_cache(
        unwritable: Path, compiles: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = fresh_frame()
    kept = list(unwritable.iterdir())
    assert [p.name.endswith(f".{sys.implementation.cache_tag}.pyc") for p in kept] == [True]
    assert kept[0].stat().st_mode & 0o777 == 0o600 and unwritable.stat().st_mode & 0o777 == 0o700
    assert fresh_frame() == first and compiles == ["<string>"]  # the next run reads it

    kept[0].write_bytes(kept[0].read_bytes()[:-100])  # cut short: compiled again, and kept again
    assert fresh_frame() == first and compiles == ["<string>"] * 2
    assert fresh_frame() == first and compiles == ["<string>"] * 2

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fresh_frame() == first and [p.parent for p in (tmp_path / "xdg" / "remediate").iterdir()] == [
        tmp_path / "xdg" / "remediate"]
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not a cache home (XDG): ~/.cache is
    assert fresh_frame() == first and compiles == ["<string>"] * 3
    assert not (tmp_path / "relative").exists() and not Path("relative").exists()


def test_a_cache_folder_others_could_write_or_a_linked_copy_is_never_read(
        unwritable: Path, compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fresh_frame()
    kept = next(unwritable.iterdir())
    planted = tmp_path / "planted.pyc"
    planted.write_bytes(kept.read_bytes())
    kept.unlink()
    kept.symlink_to(planted)  # a link, though to the very code: refused, compiled again, replaced by a file
    assert fresh_frame() == first and compiles == ["<string>"] * 2
    assert not kept.is_symlink() and planted.exists()

    kept.chmod(0o666)  # a copy others could write (its folder let in): never run, compiled again, replaced 0600
    assert fresh_frame() == first and compiles == ["<string>"] * 3
    assert kept.stat().st_mode & 0o777 == 0o600

    unwritable.chmod(0o777)  # anyone could have planted it: neither read nor written (in a new process)
    monkeypatch.setattr(private, "_trusted", set())
    before = kept.stat()
    assert fresh_frame() == first and compiles == ["<string>"] * 4
    after = kept.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    unwritable.chmod(0o700)
    assert fresh_frame() == first and compiles == ["<string>"] * 4


def test_no_cache_folder_is_made_in_another_users_home_nor_under_a_relative_one(
        unwritable: Path, compiles: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root with another user's HOME (sudo keeping it) makes no folders of root's in that home; a relative HOME
    is no home: nothing is made where the command runs."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, -1)
    monkeypatch.setenv("HOME", str(theirs))
    fresh_frame()
    assert list(theirs.iterdir()) == []
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", ".")
    fresh_frame()
    assert list(cwd.iterdir()) == [] and compiles == ["<string>"] * 2


def test_with_a_umask_that_lets_the_group_write_the_cache_folder_is_still_made_private(
        unwritable: Path, compiles: list[str]) -> None:
    os.umask(0o002)  # restored by conftest's umask_kept
    first = fresh_frame()
    assert fresh_frame() == first and compiles == ["<string>"]
    assert [oct(p.stat().st_mode & 0o777) for p in (unwritable, unwritable.parent)] == ["0o700", "0o755"]


def test_where_python_writes_no_bytecode_the_users_cache_is_not_written_either(
        unwritable: Path, compiles: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    fresh_frame()
    assert not unwritable.exists()


@pytest.mark.parametrize("home", ["", "relative/home"])
def test_with_a_relative_or_empty_home_no_cache_folder_is_made(home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the state home (private.xdg_base): an empty HOME is not taken for /, nor a relative one for a folder under
    wherever remediate runs; the code is compiled again each run instead."""
    from remediate.errors import InputError

    monkeypatch.setenv("HOME", home)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for make in (True, False):
        with pytest.raises(InputError, match="no cache folder: HOME is"):
            agent_module.own_cache(make=make)
    assert not Path("/.cache/remediate").exists() and not Path("relative").exists()
