"""remediate's own operations on a host (transport/onhost), as the persistent agent runs them and as a one-shot
`python3 -I -S -c SOURCE OPERATION ARGS...` runs them (the path without an agent): each is run both ways on the same
files, and what they print, their exit codes and the files they leave must agree, and be right. The agent runs as it
does on a host (the same source, the same framing), on local pipes instead of an SSH channel."""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import shlex
import stat
import subprocess
import zlib
from pathlib import Path

import pytest

from remediate.transport import OPERATION
from remediate.transport.agent import Agent, PipeChannel, agent_command, boot_frame
from remediate.transport.local import LocalTransport
from remediate.transport.onhost import BOOT, SOURCE

PYTHON = "/usr/bin/python3"


def one_shot(operation: str, *args: str) -> list[str]:
    """The command that runs one operation without an agent, as a transport builds it."""
    return [PYTHON, "-I", "-S", "-c", SOURCE, operation, *args]


#: Before the agent's start on a host: its python3 says another bytecode than the controller's (the magic number of
#: none), so the agent compiles SOURCE's text rather than run the code compiled on the controller.
FOREIGN = "import _frozen_importlib_external\n_frozen_importlib_external.MAGIC_NUMBER = b'\\0\\0\\r\\n'\n"


@pytest.fixture(params=["compiled here", "compiled on the host"])
def agent(request):
    """The agent as a host with this interpreter's bytecode runs it (the code compiled here), and as one with another
    bytecode runs it (SOURCE's text, compiled there): every test holds both to the same answers."""
    command = agent_command(("/usr/bin/python3",))
    if request.param == "compiled on the host":
        command[-1] = FOREIGN + command[-1]
    made = Agent(PipeChannel(), "local", shlex.join(command))
    yield made
    made.close()


@pytest.fixture(params=["posix_spawnp", "fork"])
def spawner(request):
    """The agent as on Python 3.8+ (posix_spawnp), and as on 3.6 and 3.7 (fork and exec)."""
    command = agent_command(("/usr/bin/python3",))
    if request.param == "fork":
        command[-1] = "import posix\ndel posix.posix_spawnp\n" + command[-1]  # what the host side calls os
    made = Agent(PipeChannel(), "local", shlex.join(command))
    yield made
    made.close()


def tree(root: Path) -> dict[str, tuple]:
    """Every name under root (the agent's and the shell's pid-named temporaries normalized) with what it is."""
    seen = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            seen[name] = ("link", os.readlink(path).replace(str(root), "ROOT"))
        elif stat.S_ISDIR(st.st_mode):
            seen[name] = ("dir", oct(stat.S_IMODE(st.st_mode)))
        elif stat.S_ISFIFO(st.st_mode):  # never opened: a reader would wait for a writer
            seen[name] = ("fifo", oct(stat.S_IMODE(st.st_mode)))
        else:
            seen[name] = ("file", oct(stat.S_IMODE(st.st_mode)), path.read_bytes())
    return seen


def both(tmp_path: Path, agent: Agent, setup, script: str, *args: str, stdin: bytes = b""):
    """Run the operation as a one-shot in one copy of the setup and through the agent in another; return both results
    with the copies' paths made alike."""
    results = []
    for side in ("sh", "agent"):
        root = tmp_path / side
        root.mkdir()
        setup(root)
        argv = [a.replace("ROOT", str(root)) for a in args]
        data = stdin.replace(b"ROOT", str(root).encode())
        if side == "sh":
            done = subprocess.run(one_shot(script, *argv), input=data, capture_output=True)
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            answer = agent.run([OPERATION, script, *argv], data, 10)
            assert answer is not None
            code, out, err = answer
        results.append((code, out.replace(str(root).encode(), b"ROOT"), bool(err.strip()), tree(root)))
    return results


def agree(tmp_path, agent, setup, script, *args, stdin=b""):
    shell, native = both(tmp_path, agent, setup, script, *args, stdin=stdin)
    assert native == shell
    return native


def test_the_agent_and_a_one_shot_run_one_text():
    """One implementation: the agent and the one-shot path run the same SOURCE, and no operation is a shell script.
    The agent gets SOURCE on stdin (boot_frame), as its text (zlib-compressed) and as this interpreter compiles it."""
    head, _, rest = boot_frame().partition(b"\n")
    _, code_size, text_size = head.split()
    code, text = rest[:int(code_size)], rest[int(code_size):]
    assert len(text) == int(text_size) and zlib.decompress(text).decode() == SOURCE and len(text) < len(SOURCE) / 2
    assert marshal.loads(code) == compile(SOURCE, "<string>", "exec", dont_inherit=True)
    assert agent_command(("python3",))[-1] == BOOT and SOURCE not in BOOT
    assert LocalTransport(name="local").one_shot([OPERATION, "read", "/x", "1"])[1:] == ["-I", "-S", "-c", SOURCE,
                                                                                           "read", "/x", "1"]
    import remediate.transport as transport
    assert not [name for name in dir(transport) if name.endswith("_SCRIPT")]


def test_no_two_parts_of_the_agents_text_define_one_name():
    """SOURCE joins the parts into one module: a function a later part defines under an earlier part's name replaces
    it for both, silently (a `_link` added to files.py while a change was written replaced common.py's: every path
    walk failed)."""
    import ast

    from remediate.transport import onhost
    seen: dict[str, str] = {}
    twice = []
    for part in onhost.PARTS:
        tree = ast.parse((Path(onhost.__file__).parent / f"{part}.py").read_text())
        for node in tree.body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else \
                [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else []
            for name in names:
                if name in seen and seen[name] != part:
                    twice.append(f"{name}: {seen[name]}.py and {part}.py")
                seen.setdefault(name, part)
    assert twice == []


def files(**entries):
    def setup(root: Path) -> None:
        for name, value in entries.items():
            name = name.replace("__", "/").replace("_dot_", ".")
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(value, tuple) and value[0] == "link":
                path.symlink_to(value[1].replace("ROOT", str(root)))
            elif value is None:
                path.mkdir()
            else:
                content, mode = value if isinstance(value, tuple) else (value, 0o644)
                path.write_bytes(content)
                path.chmod(mode)
    return setup


@pytest.mark.parametrize("case", ["file", "missing", "folder", "too large", "link", "dangling link"])
def test_read(tmp_path, agent, case):
    setup = files(a=(b"x=1\n\x00binary\n", 0o640), d=None, l=("link", "ROOT/a"), dl=("link", "ROOT/nowhere"))
    path = {"file": "a", "missing": "b", "folder": "d", "too large": "a", "link": "l", "dangling link": "dl"}[case]
    limit = "4" if case == "too large" else "1000"
    code, *_ = agree(tmp_path, agent, setup, "read", f"ROOT/{path}", limit)
    assert code == {"file": 0, "missing": 3, "folder": 6, "too large": 7, "link": 0, "dangling link": 3}[case]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("case", ["new", "replace", "replace with backup", "mode", "changed since the plan",
                                  "absent expected", "link", "incomplete", "restore owner"])
def test_write(tmp_path, agent, case):
    old, new = b"RELAYHOST=[x]:2525\n", b"POSTFIX_relay_transport=lmtp:[x]:2525\n"
    setup = files(c=(old, 0o640), l=("link", "ROOT/c"), run=None)
    uid, gid = os.getuid(), os.getgid()
    expect = f"{sha(old)} 640 {uid} {gid}"
    args = {
        "new": ("ROOT/n", "", "", "absent", "", sha(new)),
        "replace": ("ROOT/c", "", "", expect, "", sha(new)),
        "replace with backup": ("ROOT/c", "", "", expect, "ROOT/run/c.step", sha(new)),
        "mode": ("ROOT/c", "600", "", "", "", sha(new)),
        "changed since the plan": ("ROOT/c", "", "", f"{sha(b'other')} 640 {uid} {gid}", "", sha(new)),
        "absent expected": ("ROOT/c", "", "", "absent", "", sha(new)),
        "link": ("ROOT/l", "", "", "", "", sha(new)),
        "incomplete": ("ROOT/c", "", "", expect, "", sha(new + b"more")),
        "restore owner": ("ROOT/c", "644", f"{uid}:{gid}", "", "", sha(new)),
    }[case]
    code, out, _, after = agree(tmp_path, agent, setup, "write", *args, stdin=new)
    assert code == {"changed since the plan": 9, "absent expected": 9, "link": 5, "incomplete": 10}.get(case, 0)
    if code == 0:
        assert out.decode().strip() == sha(new)
    assert not any(".remediate-tmp" in name for name in after)


@pytest.mark.parametrize("planted", ["link", "dangling link", "file", "fifo"])
def test_write_never_makes_the_before_image_through_a_name_found_there(tmp_path, agent, planted):
    """The before-image is a new file: a name found there (#22: a link to a root-only file) is neither written,
    chmod-ed, chown-ed, followed nor removed, and nothing else happens (exit 2); the file keeps its content."""
    old, new = b"RELAYHOST=[x]:2525\n", b"POSTFIX_relay_transport=lmtp:[x]:2525\n"
    def setup(root: Path) -> None:
        files(c=(old, 0o640), victim=(b"root's\n", 0o600), run=None)(root)
        name = root / "run" / "c.step"
        if planted == "link":
            name.symlink_to(root / "victim")
        elif planted == "dangling link":
            name.symlink_to(root / "nowhere")
        elif planted == "file":
            name.write_bytes(b"theirs\n")
        else:
            os.mkfifo(root / "fifo", 0o644)
            name.symlink_to(root / "fifo")
    expect = f"{sha(old)} 640 {os.getuid()} {os.getgid()}"
    code, _, said, after = agree(tmp_path, agent, setup, "write", "ROOT/c", "", "", expect, "ROOT/run/c.step",
                                 sha(new), stdin=new)
    assert code == 2 and said
    assert after["c"] == ("file", "0o640", old) and after["victim"] == ("file", "0o600", b"root's\n")
    assert after["run/c.step"][0] == ("file" if planted == "file" else "link")
    if planted == "fifo":
        assert after["fifo"] == ("fifo", "0o644")
    assert not any(".remediate-tmp" in name for name in after)


@pytest.mark.parametrize("script", ["write", "backup"])
def test_a_fifo_or_device_link_on_the_temporary_name_is_never_opened(tmp_path, agent, script):
    """dash and bash open an existing name that is not a regular file for writing even with noclobber: a link to a
    FIFO or a device planted on the temporary name (.remediate-tmp.PID, as it was named before it had a random
    part) is never opened, written, chmod-ed, chown-ed, renamed over the file nor removed (it was, in dash, before
    #22), and no longer stops the write: one-shot and agent."""
    os.mkfifo(tmp_path / "fifo", 0o644)
    reader = os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)  # so that an open for writing never blocks
    (tmp_path / "c").write_text("old\n")
    (tmp_path / "c").chmod(0o640)
    try:
        for side in ("sh", "agent"):
            pid = agent.channel.process.pid
            plant = f'ln -s {tmp_path}/fifo "{tmp_path}/.remediate-tmp.$$"'
            args = {"write": [str(tmp_path / "c"), "", "", "", "", sha(b"new\n")],
                    "backup": [str(tmp_path / "c"), sha(b"old\n"), str(tmp_path / "c.backup-X")]}[script]
            if side == "sh":  # exec keeps $$: the one-shot's pid names the planted temporary
                done = subprocess.run(["sh", "-c", f'{plant}\nexec "$@"', "sh", *one_shot(script, *args)],
                                      input=b"new\n", capture_output=True, timeout=10, check=False)
                code, err = done.returncode, done.stderr
            else:
                (tmp_path / f".remediate-tmp.{pid}").symlink_to(tmp_path / "fifo")
                code, _, err = agent.run([OPERATION, script, *args], b"new\n", 10)
            assert code == 0, (side, err)
            assert oct(stat.S_IMODE((tmp_path / "fifo").lstat().st_mode)) == "0o644"
            try:
                assert os.read(reader, 100) == b""  # nothing was written into it
            except BlockingIOError:
                pass  # opened by no one, or opened and nothing written: either way nothing came
            assert not (tmp_path / "c").is_symlink()
            if script == "write":
                assert (tmp_path / "c").read_text() == "new\n"
                (tmp_path / "c").write_text("old\n")
            else:
                assert (tmp_path / "c.backup-X").read_text() == "old\n"
                (tmp_path / "c.backup-X").unlink()
            planted = [p for p in tmp_path.iterdir() if p.name.startswith(".remediate-tmp.")]
            assert len(planted) == 1 and planted[0].is_symlink()  # left as it is, and nothing of ours is left
            planted[0].unlink()
    finally:
        os.close(reader)


def test_write_never_follows_a_planted_temporary_name(tmp_path, agent):
    """A link planted on the name the agent's pid would give is never followed, nor removed, and does not stop the
    write: the name taken has a random part."""
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "c").write_text("old\n")
    pid = agent.channel.process.pid
    (tmp_path / f".remediate-tmp.{pid}").symlink_to(victim)
    code, _, err = agent.run([OPERATION, "write", str(tmp_path / "c"), "", "", "", "", ""], b"new\n", 10)
    assert code == 0, err
    assert victim.read_text() == "keep\n" and (tmp_path / "c").read_text() == "new\n"
    assert (tmp_path / f".remediate-tmp.{pid}").is_symlink()


@pytest.mark.parametrize("case", ["then write", "short"])
def test_journal_then(tmp_path, agent, case):
    journal = b'{"steps": []}\n'
    content = b"new content\n"
    size = len(journal) + (100 if case == "short" else 0)
    args = ["ROOT/run/journal.json", str(size), OPERATION, "write", "ROOT/c", "", "", "", "", sha(content)]
    code, _, said, after = agree(tmp_path, agent, files(run=None, c=b"old\n"), "journal_then", *args,
                                 stdin=journal + content)
    if case == "short":  # fewer bytes than the journal's size: no journal, and the write never runs
        assert code == 8 and said and after["c"][2] == b"old\n" and "run/journal.json" not in after
    else:
        assert code == 0 and after["run/journal.json"] == ("file", "0o600", journal) and after["c"][2] == content


def test_journal_then_goes_through_beside_a_name_a_killed_agent_left(tmp_path, agent):
    """A link on the temporary name an agent with this pid would have used (a leased retry after a SIGKILL can reuse
    the pid) is neither followed nor removed, and stops nothing: the temporary name carries a random part."""
    (tmp_path / "run").mkdir()
    (tmp_path / "c").write_text("old\n")
    (tmp_path / "d").write_text("keep\n")
    planted = tmp_path / "run" / f"journal.json.tmp.{agent.channel.process.pid}"
    planted.symlink_to(tmp_path / "d")
    code, _, err = agent.run([OPERATION, "journal_then", str(tmp_path / "run" / "journal.json"), "3",
                              OPERATION, "remove", str(tmp_path / "c")], b"{}\n", 10)
    assert code == 0, err
    assert (tmp_path / "run" / "journal.json").read_bytes() == b"{}\n" and not (tmp_path / "c").exists()
    assert planted.is_symlink() and (tmp_path / "d").read_text() == "keep\n"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["journal.json", planted.name]  # no temporary left


@pytest.mark.parametrize("planted", ["link", "fifo"])
def test_journal_then_is_alike_in_the_one_shot_and_the_agent_beside_a_planted_name(tmp_path, agent, planted):
    """A link (to a file, or to a FIFO that noclobber alone would open) on the pid-named temporary name of old is
    left as it is, never opened, and the journal and its command go through, the one-shot and the agent alike. A name
    found on the temporary name itself is refused unopened: test_onhost_durable."""
    results = []
    for side in ("sh", "agent"):
        root = tmp_path / side
        (root / "run").mkdir(parents=True)
        (root / "c").write_text("old\n")
        (root / "d").write_text("keep\n")
        if planted == "fifo":
            os.mkfifo(root / "fifo", 0o644)
        target = root / ("fifo" if planted == "fifo" else "d")
        journal = str(root / "run" / "journal.json")
        command = [OPERATION, "remove", str(root / "c")]
        if side == "sh":
            wrapper = f'ln -s {target} "{journal}.tmp.$$"\nexec "$@"'
            done = subprocess.run(["sh", "-c", wrapper, "sh", *one_shot("journal_then", journal, "3", *command)],
                                  input=b"{}\n", capture_output=True, timeout=10, check=False)
            code, err = done.returncode, done.stderr
        else:
            Path(f"{journal}.tmp.{agent.channel.process.pid}").symlink_to(target)
            code, _, err = agent.run([OPERATION, "journal_then", journal, "3", *command], b"{}\n", 10)
        left = {re.sub(r"\.tmp\.[0-9]+$", ".tmp.PID", name): what for name, what in tree(root).items()}
        results.append((code, err, left))
    assert results[0] == results[1]
    code, err, left = results[1]
    assert code == 0, err
    assert "c" not in left and left["d"] == ("file", "0o644", b"keep\n") and left["run/journal.json"][2] == b"{}\n"
    assert left["run/journal.json.tmp.PID"][0] == "link"


def test_list_backups(tmp_path, agent):
    def setup(root: Path) -> None:
        (root / "c").write_text("x\n")
        (root / "c.backup-20261201T000000Z").write_text("1\n")
        (root / "c.backup-20261202T000000Z").write_text("2\n")
        (root / "c.backup-20261203T000000Z").symlink_to(root / "c")  # a link is never a backup
        (root / "c.backup-20261204T000000Z").mkdir()
        (root / "c.backup-").write_text("an empty suffix is a name the glob matches too\n")
        (root / "other").write_text("o\n")
    (tmp_path / "some").mkdir()
    code, out, _, _ = agree(tmp_path / "some", agent, setup, "list_backups", "ROOT/c")
    assert code == 0 and out.decode().splitlines() == [f"{sha(b'x' + bytes([10]))}  -", "ROOT/c.backup-",
                                                       "ROOT/c.backup-20261201T000000Z", "ROOT/c.backup-20261202T000000Z"]
    (tmp_path / "none").mkdir()
    code, *_ = agree(tmp_path / "none", agent, setup, "list_backups", "ROOT/nothing")
    assert code == 3


def test_prune_backups(tmp_path, agent):
    """The older backups named go, the run's own and a name planted as a link stay; each removed name is printed."""
    def setup(root: Path) -> None:
        (root / "c").write_bytes(b"compose\n")
        for n in ("X", "A", "B"):
            (root / f"c.backup-{n}").write_text(n)
        (root / "c.backup-L").symlink_to(root / "c")
    code, out, _, after = agree(tmp_path, agent, setup, "prune_backups", "ROOT/c", "ROOT/c.backup-X",
                                "ROOT/c.backup-A", "ROOT/c.backup-X", "ROOT/c.backup-L", "ROOT/c.backup-B")
    assert code == 0 and out == b"ROOT/c.backup-A\nROOT/c.backup-B\n"
    assert sorted(after) == ["c", "c.backup-L", "c.backup-X"]
    (tmp_path / "gone").mkdir()
    gone, *_ = agree(tmp_path / "gone", agent, setup, "prune_backups", "ROOT/c", "ROOT/c.backup-Y", "ROOT/c.backup-A")
    assert gone == 3  # the run's own backup is not there: nothing is removed


@pytest.mark.parametrize("case", ["new", "taken names", "changed"])
def test_backup(tmp_path, agent, case):
    content = b"compose\n"
    def setup(root: Path) -> None:
        (root / "c").write_bytes(content)
        (root / "c").chmod(0o640)
        os.utime(root / "c", (1_700_000_000, 1_700_000_000))
        if case == "taken names":
            (root / "c.backup-X").write_text("someone's\n")
            (root / "c.backup-X.1").symlink_to(root / "c")
    want = sha(b"other") if case == "changed" else sha(content)
    shell, native = both(tmp_path, agent, setup, "backup", "ROOT/c", want, "ROOT/c.backup-X")
    assert native[:3] == shell[:3] and native[3] == shell[3]
    code, out, _, after = native
    assert code == (9 if case == "changed" else 0)
    if code == 0:
        made = out.decode().splitlines()[0].replace("ROOT/", "")
        assert made == ("c.backup-X.2" if case == "taken names" else "c.backup-X")
        assert after[made] == ("file", "0o640", content)
        for side in ("sh", "agent"):
            assert (tmp_path / side / made).stat().st_mtime == 1_700_000_000


LOCK_CASES = {
    # case: (the lock folder as found, what exit code)
    "free": (None, 0),
    "absent": ("absent", 0),
    "held": (None, 4),
    "a link": ("link", 11),
    "writable by others": (0o777, 11),
    "someone else's": ("nobody", 11),
}


@pytest.mark.parametrize("case", sorted(LOCK_CASES))
def test_take_lock(tmp_path, agent, case):
    """The lock's folder is checked as a run's folder is: a link, someone else's, writable by others are refused
    (11) having made nothing; else the lock is made (O_EXCL) or its holder shown."""
    found, want = LOCK_CASES[case]
    holder = b'{"run_id": "r1"}'

    def setup(root: Path) -> None:
        (root / "elsewhere").mkdir()
        if found == "link":
            (root / "state").symlink_to(root / "elsewhere")
        elif found != "absent":
            (root / "state").mkdir()
            if isinstance(found, int):
                (root / "state").chmod(found)
            elif found == "nobody":
                os.chown(root / "state", 65534, -1)
        if case == "held":
            (root / "state" / "lock").write_bytes(holder)

    code, out, err, after = agree(tmp_path, agent, setup, "take_lock", "ROOT/state/lock", stdin=b'{"run_id": "r2"}')
    assert code == want, err
    if want == 11:
        assert err and "state/lock" not in after and "elsewhere/lock" not in after  # said why, made nothing
    else:
        assert after["state/lock"][2] == (holder if case == "held" else b'{"run_id": "r2"}')
    if found == "absent":
        assert after["state"] == ("dir", "0o700")


FOLDER_CASES = {
    # case: (the setup's entries, what exit code, what is refused (relative to ROOT) or None)
    "absent": ({}, 0, None),
    "absent, and the folder above it too": ({}, 0, None),
    "found, ours": ({"s/.remediate": 0o700}, 0, None),
    "found, ours, 0755": ({"s/.remediate": 0o755}, 0, None),
    "found with the run folder": ({"s/.remediate": 0o700, "s/.remediate/r1": 0o700}, 0, None),
    "a link to a folder": ({"s/lair": 0o700, "s/.remediate": ("link", "ROOT/s/lair")}, 11, "s/.remediate"),
    "a dangling link": ({"s/.remediate": ("link", "ROOT/s/nowhere")}, 11, "s/.remediate"),
    "a file": ({"s/.remediate": b"x"}, 11, "s/.remediate"),
    "group-writable": ({"s/.remediate": 0o770}, 11, "s/.remediate"),
    "writable by others": ({"s/.remediate": 0o707}, 11, "s/.remediate"),
    "sticky and world-writable": ({"s/.remediate": 0o1777}, 11, "s/.remediate"),
    "someone else's": ({"s/.remediate": (0o700, 65534)}, 11, "s/.remediate"),
    "run folder a link": ({"s/.remediate": 0o700, "s/lair": 0o700, "s/.remediate/r1": ("link", "ROOT/s/lair")},
                          11, "s/.remediate/r1"),
    "run folder writable by others": ({"s/.remediate": 0o700, "s/.remediate/r1": 0o777}, 11, "s/.remediate/r1"),
    "run folder someone else's": ({"s/.remediate": 0o700, "s/.remediate/r1": (0o700, 65534)}, 11, "s/.remediate/r1"),
    "run folder a file": ({"s/.remediate": 0o700, "s/.remediate/r1": b"x"}, 11, "s/.remediate/r1"),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_private_folder(tmp_path, agent, case):
    """The run's folder and its state folder (#22): made 0700 when absent; a link, a file, a folder someone else
    owns or may write in is refused (11) by the one-shot and the agent alike, with the same words, and nothing is
    made in it or through it."""
    entries, want, refused = FOLDER_CASES[case]
    if any(isinstance(v, tuple) and v[0] != "link" for v in entries.values()) and os.geteuid() != 0:
        pytest.skip("only root can make a folder someone else owns")

    def setup(root: Path) -> None:
        if case != "absent, and the folder above it too":
            (root / "s").mkdir()
        for name, value in entries.items():
            path = root / name
            if isinstance(value, bytes):
                path.write_bytes(value)
            elif isinstance(value, tuple) and value[0] == "link":
                path.symlink_to(value[1].replace("ROOT", str(root)))
            else:
                mode, owner = value if isinstance(value, tuple) else (value, None)
                path.mkdir()
                path.chmod(mode)
                if owner is not None:
                    os.chown(path, owner, owner)

    said = []
    for side in ("sh", "agent"):
        root = tmp_path / side
        root.mkdir()
        setup(root)
        if side == "sh":
            done = subprocess.run(one_shot("private_folder", f"{root}/s/.remediate/r1"), capture_output=True,
                                  timeout=10, check=False)
            code, err = done.returncode, done.stderr
        else:
            code, _, err = agent.run([OPERATION, "private_folder", f"{root}/s/.remediate/r1"], None, 10)
        said.append((code, err.replace(str(root).encode(), b"ROOT"), tree(root)))
    assert said[0] == said[1]
    code, err, after = said[1]
    assert code == want, err
    if refused is None:
        assert err == b""
        assert after["s/.remediate/r1"] == ("dir", "0o700")
        assert after["s/.remediate"][0] == "dir"
        if "absent" in case:
            assert after["s/.remediate"] == ("dir", "0o700")
    else:
        assert err.startswith(f"remediate: refusing to use ROOT/{refused}: ".encode()), err
        made = {name for name in after if name not in {n for n in entries} | {"s"}}
        assert made == set(), made  # nothing made in it, nor through it
        if "someone else" in case:
            assert b"owned by" in err and b"(uid 65534)" in err


@pytest.mark.parametrize("case", ["file", "missing", "folder"])
def test_remove_and_sha256(tmp_path, agent, case):
    setup = files(f=b"x\n", d=None)
    path = {"file": "ROOT/f", "missing": "ROOT/m", "folder": "ROOT/d"}[case]
    for folder in ("rm", "sum"):
        (tmp_path / folder).mkdir()
    code, *_ = agree(tmp_path / "rm", agent, setup, "remove", path)
    assert code == (1 if case == "folder" else 0)
    code, out, *_ = agree(tmp_path / "sum", agent, setup, "sha256", path)
    assert code == {"file": 0, "missing": 3, "folder": 1}[case]


@pytest.mark.parametrize("still", [True, False])
def test_remove_only_while_the_file_is_as_expected(tmp_path, agent, still):
    def setup(root: Path) -> None:
        (root / "f").write_bytes(b"x\n")
        (root / "f").chmod(0o640)
    content = b"x\n" if still else b"as planned, since edited\n"
    expect = f"{sha(content)} 640 {os.getuid()} {os.getgid()}"
    code, _, said, after = agree(tmp_path, agent, setup, "remove", "ROOT/f", expect)
    assert (code, "f" in after, said) == ((0, False, False) if still else (9, True, True))


def test_other_commands_run_as_in_a_session(tmp_path, spawner):
    agent = spawner
    assert agent.run(["sh", "-c", 'echo out; echo err >&2; exit 7'], None, 10) == (7, b"out\n", b"err\n")
    assert agent.run(["cat"], b"through stdin\n", 10) == (0, b"through stdin\n", b"")
    assert agent.run(["cat"], None, 10) == (0, b"", b"")  # stdin at its end, never waiting
    code, _, err = agent.run(["no-such-command-here"], None, 10)
    assert code == 127 and b"not found" in err
    code, _, _ = agent.run(["sh", "-c", "kill -TERM $$"], None, 10)
    assert code == 128 + 15
    big = os.urandom(3 << 20)
    code, out, _ = agent.run(["cat"], big, 30)  # more than any pipe holds, both ways at once
    assert code == 0 and out == big
    code, _, _ = agent.run(["true"], big, 30)  # a command that leaves its stdin unread
    assert code == 0
    assert agent.run(["printf", "%s", "a b\nc"], None, 10) == (0, b"a b\nc", b"")  # words stay words
    # SIGPIPE as a shell leaves it (Python ignores it): `yes` ends quietly when head has had enough
    assert agent.run(["sh", "-c", "yes | head -c 3"], None, 10) == (0, b"y\ny", b"")


@pytest.mark.parametrize("fork", [False, True])
def test_a_command_gets_the_agents_environment_and_the_agent_never_imports_os(monkeypatch, fork):
    monkeypatch.setenv("REMEDIATE_SEEN", "the session's value")
    command = agent_command((PYTHON,))
    if fork:
        command[-1] = "import posix\ndel posix.posix_spawnp\n" + command[-1]
    command[-1] = ("import atexit, sys\natexit.register(lambda: sys.stderr.write(' '.join(m for m in ('os', 'posixpath') "
                   "if m in sys.modules)))\n") + command[-1]
    agent = Agent(PipeChannel(), "local", shlex.join(command))
    assert agent.run(["sh", "-c", 'echo "$REMEDIATE_SEEN"'], None, 10) == (0, b"the session's value\n", b"")
    agent.channel.process.stdin.close()  # its input ends: the agent ends as on a host, its exit handlers run
    assert agent.channel.process.wait(10) == 0
    assert agent.channel.process.stderr.read() == b""  # os (1 ms of every agent's start) was never imported


def test_a_line_without_the_token_runs_nothing(tmp_path, agent):
    marker = tmp_path / "ran"
    assert agent.run(["true"], None, 10) == (0, b"", b"")
    agent.channel.sendall(b"deadbeef 0 5 6 5\ntouch" + f" {marker}".encode()[:6] + b"\n")
    with pytest.raises(Exception):  # noqa: B017 - the line ends the agent: whatever run() then says
        agent.run(["true"], None, 10)
    assert not marker.exists()
    assert agent.channel.process.wait(5) == 97


def test_no_python_on_the_host_means_nothing_ran(tmp_path):
    channel = PipeChannel()
    missing = Agent(channel, "local", shlex.join(agent_command((str(tmp_path / "no-python3"),))))
    marker = tmp_path / "ran"
    assert missing.run(["touch", str(marker)], None, 10) is None
    assert not marker.exists() and "no-python3" in missing.why
    missing.close()


def test_a_request_cut_short_runs_nothing(tmp_path, agent):
    marker = str(tmp_path / "ran")
    assert agent.run(["true"], None, 10) == (0, b"", b"")
    words = [b"touch", marker.encode()]
    header = b" ".join([agent.token, b"100", *(str(len(w)).encode() for w in words)])
    agent.channel.sendall(header + b"\n" + b"".join(words) + b"only part of the stdin")
    agent.channel.process.stdin.close()  # the connection ends before the other bytes
    assert agent.channel.process.wait(5) == 0
    assert not Path(marker).exists()


def fake_sudo(tmp_path: Path) -> str:
    """A stand-in for `sudo -S -p PROMPT -- sh -c 'print MARKER; exec "$@"' sh AGENT`: prompts on stderr, reads a
    line as the password (kept in a file for the test to see), then announces the agent and starts it."""
    heard = tmp_path / "heard"
    script = (f'for try in 1 2; do printf PROMPT: >&2; IFS= read -r pw || exit 1; printf "%s\\n" "$pw" >> {heard}; '
              '[ "$pw" = right ] && { printf "MARKER\\n" >&2; exec "$@"; }; done; exit 1')
    return shlex.join(["sh", "-c", script, "sh", *agent_command(("/usr/bin/python3",))])


def test_through_sudo_the_password_goes_once_and_nothing_before_the_marker(tmp_path):
    from remediate.errors import ConnectError
    from remediate.transport.agent import SudoDialogue

    dialogue = lambda password: SudoDialogue(b"PROMPT:", b"MARKER\n", lambda: password)  # noqa: E731
    started = Agent(PipeChannel(), "local", fake_sudo(tmp_path), sudo=dialogue(b"right"))
    assert started.run(["id", "-u"], None, 10)[0] == 0
    started.close()
    assert (tmp_path / "heard").read_text() == "right\n"

    (tmp_path / "heard").unlink()
    with pytest.raises(ConnectError, match="sudo refused the become password"):
        Agent(PipeChannel(), "local", fake_sudo(tmp_path), sudo=dialogue(b"wrong"))
    assert (tmp_path / "heard").read_text() == "wrong\n"  # one attempt, then the connection ends

    (tmp_path / "heard").unlink()
    def no_password() -> bytes:
        raise ConnectError("sudo asks for a password")
    refused = Agent(PipeChannel(), "local", fake_sudo(tmp_path), sudo=SudoDialogue(b"PROMPT:", b"MARKER\n", no_password))
    assert refused.run(["touch", str(tmp_path / "ran")], None, 10) is None
    assert "password" in refused.why and not (tmp_path / "ran").exists()
    refused.channel.process.stdin.close()  # what was sent, if anything, is read before the end
    refused.channel.process.wait(5)
    assert not (tmp_path / "heard").exists()  # neither the token nor the command was ever read as a password


def test_the_agent_keeps_no_more_of_a_stream_than_it_will_be_asked_for_and_stops_the_command(agent, tmp_path):
    """A command printing without end is stopped on the host once the agent has one byte past the bound (SIGPIPE,
    as in a session the controller closed): the host's memory stays bounded, and the answer says it was cut."""
    from remediate.transport.agent import HOST_KEPT, MAX_OUTPUT, OutputCut
    from remediate.transport.onhost import common

    assert common.MAX_KEPT == HOST_KEPT == MAX_OUTPUT + 1
    after = tmp_path / "after"
    with pytest.raises(OutputCut) as cut:  # `yes` never ends by itself: before, the agent read it until memory ran out
        agent.run(["sh", "-c", f"yes; touch {after}"], None, 60)
    assert cut.value.size is None and cut.value.code is None and cut.value.limit == MAX_OUTPUT
    assert after.exists()  # `yes` was stopped (SIGPIPE) and the script went on, as in a closed session


@pytest.mark.parametrize("owner", ["another user's", "root's"])
@pytest.mark.parametrize("script", ["read", "write"])
def test_a_folder_in_the_path_that_is_another_users_link_is_refused(tmp_path, agent, script, owner):
    """Another user links a name in a folder they can write to a folder of root's (found by the adversarial review
    of #22): root read and wrote through it. A link root (or the login user) owns, as /var/run is, is followed."""
    def setup(root: Path) -> None:
        (root / "root-only").mkdir(mode=0o700)
        (root / "root-only" / "app.conf").write_bytes(b"root's\n")
        (root / "sub").symlink_to(root / "root-only")
        if owner == "another user's":
            os.chown(root / "sub", 65534, 65534, follow_symlinks=False)

    args = ("ROOT/sub/app.conf", "1000") if script == "read" else \
        ("ROOT/sub/app.conf", "", "", f"{sha(b'root' + chr(39).encode() + b's' + chr(10).encode())} 644 0 0", "",
         sha(b"new\n"))
    code, out, err, after = agree(tmp_path, agent, setup, script, *args, stdin=b"new\n" if script == "write" else b"")
    if owner == "another user's":
        assert code == 12 and err and after["root-only/app.conf"][2] == b"root's\n"
        assert b"root's" not in out
    else:
        assert code == 0


def test_batch_answers_each_read_only_operation_as_it_answers_alone(tmp_path, agent):
    """batch: several read-only operations in one request, each answer framed (`<code> <stdout> <stderr>` lengths,
    then both) exactly as the operation answers when asked alone; a missing file is its own answer (3). (Answers
    that print no path: the two copies of the setup have paths of different lengths.)"""
    def setup(root: Path) -> None:
        (root / "c").write_text("x\n")
        (root / "c.backup-20261201T000000Z").write_text("1\n")

    asks = [("read", "ROOT/c", "100"), ("read", "ROOT/missing", "100"), ("sha256", "ROOT/c"), ("read", "ROOT/c", "1")]
    args = [word for ask in asks for word in (str(len(ask)), *ask)]
    code, out, said, after = agree(tmp_path, agent, setup, "batch", *args)
    assert code == 0 and not said and sorted(after) == ["c", "c.backup-20261201T000000Z"]
    answers = []
    while out:
        head, _, out = out.partition(b"\n")
        status, size, more = (int(f) for f in head.split())
        answers.append((status, out[:size], bool(out[size:size + more].strip())))
        out = out[size + more:]
    alone = []
    for n, ask in enumerate(asks):
        (tmp_path / "alone" / str(n)).mkdir(parents=True)
        alone.append(agree(tmp_path / "alone" / str(n), agent, setup, *ask)[:3])
    assert answers == alone
    assert [a[0] for a in answers] == [0, 3, 0, 7]  # the last: larger than the bound it was asked with


@pytest.mark.parametrize("asked", [("write", "ROOT/c", "", "", "", "", "x"), ("sh", "-c", "touch ROOT/made")],
                         ids=["an operation that writes", "a command"])
def test_batch_runs_nothing_when_it_is_asked_for_anything_but_a_read(tmp_path, agent, asked):
    def setup(root: Path) -> None:
        (root / "c").write_text("x\n")

    args = ["3", "read", "ROOT/c", "100", str(len(asked)), *asked]
    code, out, said, after = agree(tmp_path, agent, setup, "batch", *args)
    assert code == 2 and out == b"" and said
    assert after == {"c": ("file", "0o644", b"x\n")}  # nothing written, made or run; not even the read answered
