"""The run folder beside a changed file (`.remediate/<run id>/`, where the before-image and the host's journal go)
against another user of the host who can write the changed file's folder (issue #22): a `.remediate/` they made,
linked or left writable is refused before anything changes, and a user racing remediate to swap the folder, with
links to a root-only file planted under the names remediate writes, never gets root to write, chmod or chown it.
Real sshd, real sudo rules, a real second user, with and without the agent."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import OTHER_USER, SshLab
from .test_trust import plant_temporary_names

#: The other user's racing process: what the reporter of #22 ran, by polling rather than inotify (as fast here,
#: and standard library only). "pre-created": it makes `.remediate/` its own before remediate comes, and when a
#: run folder appears in it, swaps in a folder of its own holding links to the victim under the names remediate
#: writes there. "fresh": it leaves remediate to make `.remediate/`, then removes it while it is still empty and
#: puts its own (or a link to one) in its place, to have remediate make the run folder in a folder it controls.
#: Bounded by a deadline and a count; it stops when the test writes the stop file; it prints what it did.
ATTACKER = r"""
import os, sys, time
folder, victim, mode, seconds, most = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
state, lair, stop = folder + "/.remediate", folder + "/lair", folder + "/stop"
me, deadline, swaps, seen, turn = os.getuid(), time.monotonic() + seconds, 0, set(), 0
names = ("app.conf.edit", "journal.json")

def own_folder(path):
    os.mkdir(path)
    os.chmod(path, 0o777)

def arm(base, run):  # a run folder of ours in base, every name remediate writes there a link to the victim
    own_folder(base + "/" + run)
    for name in names:
        os.symlink(victim, base + "/" + run + "/" + name)

while time.monotonic() < deadline and swaps < most and not os.path.exists(stop):
    try:
        st = os.lstat(state)
    except FileNotFoundError:
        if mode == "pre-created":
            try:
                own_folder(state)
            except OSError:
                pass
        continue
    if st.st_uid == me and (st.st_mode & 0o170000) == 0o040000:  # a folder of ours
        try:
            runs = [r for r in os.listdir(state) if r not in seen and os.lstat(state + "/" + r).st_uid != me]
        except OSError:
            continue
        for run in runs:  # root made a run folder in our folder: swap the folder under it, as in #22
            seen.add(run)
            try:
                os.rename(state, "%s.%d" % (state, swaps))
                own_folder(state)
                arm(state, run)
                swaps += 1
                print("swapped", run, flush=True)
            except OSError as e:
                print("swap failed", run, e, flush=True)
    elif mode == "fresh" and st.st_uid != me:
        try:
            os.rmdir(state)  # only while it is empty: between remediate's mkdir and its run folder's
        except OSError:
            continue
        turn += 1
        try:
            if turn % 2:
                own_folder(state)
            else:
                if not os.path.isdir(lair):
                    own_folder(lair)
                os.symlink(lair, state)
            swaps += 1
            print("replaced the empty .remediate", "with a folder" if turn % 2 else "with a link", flush=True)
        except OSError as e:
            print("replace failed", e, flush=True)
print("done", swaps, flush=True)
"""

OLD, NEW = b"the other user's text\n", b"fixed=1\n"
VICTIM = b"root's secret\n"


def remediate(*args: str, password: str | None = None, agent: bool = True,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("REMEDIATE_NO_AGENT", None)
    if not agent:
        env["REMEDIATE_NO_AGENT"] = "1"
    if password is not None:
        env["REMEDIATE_BECOME_PASSWORD"] = password
    return subprocess.run(["remediate", *args], check=False, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user may write in and rename in (0777, no sticky bit: the strongest case), holding the
    file to change, owned by the other user (as in #22, so that a before-image copied through a link would give
    the victim their text, their ownership and mode 0666)."""
    folder = Path(tempfile.mkdtemp(prefix="remediate-shared-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-only file (0600 in a folder only root can enter) the other user wants written."""
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    path.chmod(0o600)
    return path


def as_other(*argv: str) -> None:
    subprocess.run(["runuser", "-u", OTHER_USER, "--", *argv], check=True)


def reset(folder: Path) -> None:
    """The changed file as the other user left it, and no `.remediate/` of any run before. Each is first renamed
    away in one step, so that a racing user never sees a `.remediate/` of root's emptied by the cleanup."""
    for number, old in enumerate(folder.glob(".remediate*")):
        gone = folder / f"gone-{time.monotonic_ns()}-{number}"
        old.rename(gone)
        if gone.is_symlink() or not gone.is_dir():
            gone.unlink()
        else:
            shutil.rmtree(gone)
    target = folder / "app.conf"
    target.write_bytes(OLD)
    other = int(subprocess.run(["id", "-u", OTHER_USER], capture_output=True, text=True, check=True).stdout)
    os.chown(target, other, other)
    target.chmod(0o666)


def inventory(ssh_lab: SshLab, tmp_path: Path) -> Path:
    """The lab's inventory with a lock of this test's own (remediate_state_dir), so that no other run on this
    machine holds the one in /var/lib/remediate meanwhile."""
    return ssh_lab.inventory(tmp_path)  # which names a remediate_state_dir in tmp_path


def playbook(tmp_path: Path, folder: Path) -> Path:
    path = tmp_path / "book.yml"
    path.write_text(f"name: run-folder\nsteps:\n  - id: edit\n    kind: file\n"
                    f"    params: {{path: \"{folder}/app.conf\", content: \"fixed=1\\n\"}}\n")
    return path


def untouched(victim: Path) -> tuple[bytes, int, int, int]:
    st = victim.lstat()
    return victim.read_bytes(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


#: Every way remediate starts on a host: both sudo rules, with and without the agent.
WAYS = [("nopw", True), ("nopw", False), ("shpw", True), ("shpw", False)]


@pytest.mark.parametrize("found", ["theirs", "writable by others", "a link to their folder", "a link to root's folder"])
@pytest.mark.parametrize("host,agent", WAYS)
def test_a_run_folder_someone_else_could_swap_is_refused_and_nothing_changes(
        ssh_lab: SshLab, tmp_path: Path, shared: Path, victim: Path, found: str, host: str, agent: bool) -> None:
    inv = inventory(ssh_lab, tmp_path)
    reset(shared)
    state = shared / ".remediate"
    if found == "theirs":
        as_other("mkdir", "-m", "700", str(state))
    elif found == "writable by others":  # root's, but left 0777: anyone could swap what is inside
        state.mkdir()
        state.chmod(0o777)
    elif found == "a link to their folder":
        as_other("mkdir", "-m", "777", str(shared / "lair"))
        as_other("ln", "-s", str(shared / "lair"), str(state))
    else:  # root's own folder, 0700: only a link to it is someone else's doing
        (tmp_path / "roots").mkdir(mode=0o700)
        as_other("ln", "-s", str(tmp_path / "roots"), str(state))
    before = untouched(victim)
    done = remediate("apply", "--yes", "--host", host, "-i", str(inv), "-p", str(playbook(tmp_path, shared)),
                     password=ssh_lab.password, agent=agent)
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert f"{state}" in said and "refusing" in said, said
    why = {"theirs": f"owned by {OTHER_USER}", "writable by others": "writable by others",
           "a link to their folder": "symbolic link", "a link to root's folder": "symbolic link"}[found]
    assert why in said, said
    assert (shared / "app.conf").read_bytes() == OLD
    assert untouched(victim) == before
    # nothing was made in, or through, the folder found there
    where = {"theirs": state, "writable by others": state, "a link to their folder": shared / "lair",
             "a link to root's folder": tmp_path / "roots"}[found]
    assert list(where.iterdir()) == [], list(where.iterdir())
    assert not list(shared.glob(".remediate-tmp*"))


@pytest.mark.parametrize("attack", ["pre-created", "fresh"])
def test_a_user_racing_to_swap_the_run_folder_never_gets_root_to_write_the_victim(
        ssh_lab: SshLab, tmp_path: Path, shared: Path, victim: Path, attack: str) -> None:
    """The attack of #22, run for real: 16 applies (4 each way) with the other user's process racing throughout.
    Each apply either refuses, naming the folder, or succeeds with a run folder that is root's and private; the
    victim's bytes, owner and mode never change."""
    inv = inventory(ssh_lab, tmp_path)
    book = playbook(tmp_path, shared)
    before = untouched(victim)
    reset(shared)
    attacker = subprocess.Popen(["runuser", "-u", OTHER_USER, "--", "python3", "-c", ATTACKER, str(shared),
                                 str(victim), attack, "150", "200"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    outcomes: list[str] = []
    try:
        time.sleep(0.2)  # let it start: in "pre-created" mode, it makes .remediate/ its own first
        for turn in range(4):
            for host, agent in WAYS:
                done = remediate("apply", "--yes", "--host", host, "-i", str(inv), "-p", str(book),
                                 password=ssh_lab.password, agent=agent)
                said = done.stdout + done.stderr
                assert untouched(victim) == before, f"turn {turn}, {host}, agent={agent}: the victim changed\n{said}"
                if done.returncode == 0:
                    outcomes.append("applied")
                    assert (shared / "app.conf").read_bytes() == NEW
                    state = (shared / ".remediate").lstat()
                    assert stat.S_ISDIR(state.st_mode) and state.st_uid == 0
                    assert stat.S_IMODE(state.st_mode) == 0o700
                else:
                    outcomes.append("refused")
                    assert done.returncode == 1 and "refusing" in said and ".remediate" in said, said
                    assert (shared / "app.conf").read_bytes() == OLD, said
                reset(shared)
    finally:
        (shared / "stop").touch()
        try:
            log, _ = attacker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            attacker.kill()
            log, _ = attacker.communicate()
    assert untouched(victim) == before, log
    assert "done" in log, log  # it ran to the end, it did not crash
    if attack == "pre-created":
        assert outcomes == ["refused"] * 16, (outcomes, log)
        assert "swapped" not in log, log  # root never made a run folder in the other user's folder


@pytest.mark.parametrize("host,agent", WAYS)
def test_a_link_to_a_device_on_the_temporary_names_is_never_opened_chmod_ed_or_chown_ed(
        ssh_lab: SshLab, tmp_path: Path, shared: Path, host: str, agent: bool) -> None:
    """dash's noclobber opens an existing name that is not a regular file for writing: before #22's fix a link to a
    device planted on the write's temporary name had the device chmod-ed, written, and chown-ed to the changed
    file's owner (here the other user: a block device of their own is root). The name a write takes now has a
    random part, so links planted on every name the next pids would give are neither opened, followed nor
    removed, and cannot stop the fix either (a name found there is still refused unopened: test_onhost_durable)."""
    inv = inventory(ssh_lab, tmp_path)
    reset(shared)
    device = tmp_path / "device"  # /dev/null's twin, root's, in a folder only root can enter
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    device.chmod(0o600)
    before = untouched_node(device)
    planted = plant_temporary_names(shared, device)
    done = remediate("apply", "--yes", "--host", host, "-i", str(inv), "-p", str(playbook(tmp_path, shared)),
                     password=ssh_lab.password, agent=agent)
    said = done.stdout + done.stderr
    assert untouched_node(device) == before, said
    assert done.returncode == 0, said
    assert (shared / "app.conf").read_bytes() == NEW and not (shared / "app.conf").is_symlink()
    assert all(link.is_symlink() for link in planted)  # neither followed nor removed


def untouched_node(path: Path) -> tuple[int, int, int, int]:
    st = path.lstat()
    return st.st_mode, st.st_uid, st.st_gid, st.st_rdev


@pytest.mark.parametrize("host,agent", WAYS)
def test_a_lock_folder_another_user_made_is_refused_and_the_lock_never_written_through_it(
        ssh_lab: SshLab, tmp_path: Path, shared: Path, victim: Path, host: str, agent: bool) -> None:
    """remediate_state_dir in a folder others can write (a shared /srv, say): the other user made it first, with
    the lock's name a link to the victim. The lock is never read or written through it; nothing changes."""
    inv = ssh_lab.inventory(tmp_path)
    inv.write_text(inv.read_text().replace(f"remediate_state_dir: {tmp_path}/remediate-state",
                                           f"remediate_state_dir: {shared}/state"))
    reset(shared)
    shutil.rmtree(shared / "state", ignore_errors=True)
    as_other("mkdir", "-m", "777", str(shared / "state"))
    as_other("ln", "-s", str(victim), str(shared / "state" / "lock"))
    before = untouched(victim)
    done = remediate("apply", "--yes", "--host", host, "-i", str(inv), "-p", str(playbook(tmp_path, shared)),
                     password=ssh_lab.password, agent=agent)
    said = done.stdout + done.stderr
    assert done.returncode == 1 and f"refusing to use {shared}/state" in said and f"owned by {OTHER_USER}" in said, said
    assert (shared / "app.conf").read_bytes() == OLD and untouched(victim) == before
    assert os.readlink(shared / "state" / "lock") == str(victim)
