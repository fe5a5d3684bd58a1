"""The trust findings, each against a real sshd and real sudo: every test here failed on the code they were found in."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediate.engine import runrecord

from .conftest import OTHER_USER, SshLab


def remediate(*args: str, password: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if password is not None:
        env["REMEDIATE_BECOME_PASSWORD"] = password
    return subprocess.run(["remediate", *args], capture_output=True, text=True, env=env, timeout=timeout)


def book(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.yml"
    path.write_text(text)
    return path


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder the test's other user may write in, as a compose folder often is on a shared host (pytest's own
    folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="remediate-shared-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_other(*argv: str) -> None:
    subprocess.run(["runuser", "-u", OTHER_USER, "--", *argv], check=True)


def journals() -> list[dict[str, Any]]:
    runs = Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs"
    return sorted((runrecord.read(p) for p in runs.glob("*.json")), key=lambda r: r["run_id"], reverse=True)


def test_a_nopasswd_sh_rule_never_feeds_the_password_to_a_command(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    playbook = book(tmp_path, f"""\
name: nopasswd-sh
steps:
  - id: conf
    kind: file
    params: {{path: "{work}/app.conf", content: "x=1\\n"}}
  - id: copy
    kind: command
    params: {{command: [sh, -c, "cat > {work}/copied; exit 0"], creates: "{work}/copied"}}
""")
    done = remediate("apply", "--yes", "--host", "shpw", "-i", str(inv), "-p", str(playbook), password=ssh_lab.password)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / "app.conf").read_bytes() == b"x=1\n"
    assert (work / "copied").read_bytes() == b""  # the command's stdin held nothing: not the password
    touched = [p for p in work.rglob("*") if p.is_file()]
    local = list((Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs").glob("*.json"))
    assert any(p.name == "journal.json" for p in touched) and local
    for path in touched + local:
        assert ssh_lab.password not in path.read_text(errors="replace"), path
    assert ssh_lab.password not in done.stdout + done.stderr


def test_rollback_never_runs_alongside_a_live_apply(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "app.conf").write_text("old\n")
    playbook = book(tmp_path, f"""\
name: slow
steps:
  - id: conf
    kind: file
    params: {{path: "{work}/app.conf", content: "new\\n"}}
  - id: slow
    kind: command
    params: {{command: [sh, -c, "sleep 4; touch {work}/slept"], creates: "{work}/slept"}}
  - id: last
    kind: file
    params: {{path: "{work}/last.conf", content: "last\\n"}}
""")
    apply = subprocess.Popen(["remediate", "apply", "--yes", "--json", "--host", "nopw", "-i", str(inv), "-p", str(playbook)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = journals()
        if records and {s["id"]: s["state"] for s in records[0]["steps"]}.get("slow") == "applying":
            break
        time.sleep(0.05)
    for extra in ((), ("--break-lock",)):
        refused = remediate("rollback", "--yes", "--host", "nopw", "-i", str(inv), *extra)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "still running" in refused.stdout + refused.stderr
        assert (work / "app.conf").read_text() == "new\n"
    out, err = apply.communicate(timeout=60)
    assert apply.returncode == 0, out + err
    assert '"outcome": "applied"' in out
    assert (work / "app.conf").read_text() == "new\n" and (work / "last.conf").read_text() == "last\n"


def test_a_planted_symlink_never_receives_the_backup(ssh_lab: SshLab, tmp_path: Path, shared_folder: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    folder = shared_folder
    target = folder / "docker-compose.yml"
    target.write_text("services: {}\n")
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    now = time.time()
    planted = [folder / f"docker-compose.yml.backup-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now + s))}"
               for s in range(-2, 30)]
    for link in planted:
        as_other("ln", "-s", str(secret), str(link))
    playbook = book(tmp_path, f"""\
name: backup
steps:
  - id: backup
    kind: backup
    when: changed(edit)
    params: {{path: "{target}", keep: 1}}
  - id: edit
    kind: file
    params: {{path: "{target}", content: "services: {{x: {{image: y}}}}\\n"}}
""")
    done = remediate("apply", "--yes", "--host", "nopw", "-i", str(inv), "-p", str(playbook))
    assert done.returncode == 0, done.stdout + done.stderr
    assert secret.read_text() == "root's secret\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert all(link.is_symlink() for link in planted)  # neither written through nor pruned
    backups = [p for p in folder.glob("docker-compose.yml.backup-*") if not p.is_symlink()]
    assert len(backups) == 1 and backups[0].read_text() == "services: {}\n"


def plant_temporary_names(folder: Path, target: Path, count: int = 4000) -> list[Path]:
    """As the other user: a link to target on every name .remediate-tmp.PID of the next `count` processes, as someone
    who can write the folder and watches for our writes might (before the names had a random part, this stopped
    every write there)."""
    last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    top = int(Path("/proc/sys/kernel/pid_max").read_text())
    pids = [(last + i) % top for i in range(1, count + 1)]
    names = [folder / f".remediate-tmp.{pid}" for pid in pids if pid > 300]
    plant = "import os, sys\nfor name in sys.argv[2:]:\n    os.symlink(sys.argv[1], name)"  # one process, few pids
    subprocess.run(["runuser", "-u", OTHER_USER, "--", "python3", "-c", plant, str(target), *map(str, names)], check=True)
    return names


def test_links_planted_on_the_temporary_names_are_never_followed(ssh_lab: SshLab, tmp_path: Path,
                                                                 shared_folder: Path) -> None:
    """Backup and write make their temporary file beside the compose file, where another user can write: links
    planted on the names the next pids would give are never written, chmod-ed or chown-ed through, nor removed;
    the names remediate takes have a random part, so the plants cannot stop the fix either."""
    inv = ssh_lab.inventory(tmp_path)
    target = shared_folder / "docker-compose.yml"
    target.write_text("services: {}\n")
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    planted = plant_temporary_names(shared_folder, secret)
    playbook = book(tmp_path, f"""\
name: planted
steps:
  - id: backup
    kind: backup
    when: changed(edit)
    params: {{path: "{target}", keep: 1}}
  - id: edit
    kind: file
    params: {{path: "{target}", content: "services: {{x: {{image: y}}}}\\n"}}
""")
    done = remediate("apply", "--yes", "--host", "nopw", "-i", str(inv), "-p", str(playbook))
    assert done.returncode == 0, done.stdout + done.stderr
    assert secret.read_text() == "root's secret\n" and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.stat().st_uid == 0
    assert all(link.is_symlink() for link in planted)  # neither followed nor removed
    assert target.read_text() == "services: {x: {image: y}}\n"
    backups = [p for p in shared_folder.glob("docker-compose.yml.backup-*")]
    assert len(backups) == 1 and backups[0].read_text() == "services: {}\n" and not backups[0].is_symlink()


def test_a_symlinked_target_is_refused_and_left_as_it_is(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    work = tmp_path / "work"
    (work / "real").mkdir(parents=True)
    (work / "real" / "app.conf").write_text("old\n")
    (work / "app.conf").symlink_to("real/app.conf")
    playbook = book(tmp_path, f"""\
name: link
steps:
  - id: conf
    kind: file
    params: {{path: "{work}/app.conf", content: "new\\n"}}
""")
    done = remediate("apply", "--yes", "--host", "nopw", "-i", str(inv), "-p", str(playbook))
    assert done.returncode == 1
    assert f"is a symbolic link to {work}/real/app.conf" in done.stderr + done.stdout
    assert (work / "app.conf").is_symlink() and (work / "real" / "app.conf").read_text() == "old\n"


def test_a_device_or_huge_file_is_refused_before_it_is_read(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    huge = tmp_path / "huge.conf"
    with huge.open("wb") as f:
        f.truncate(9 * 1024 * 1024)
    for path, words in (("/dev/zero", "is not a regular file"), (str(huge), "remediate reads files of at most")):
        playbook = book(tmp_path, f"name: big\nsteps:\n  - id: f\n    kind: file\n    params: {{path: \"{path}\", content: x}}\n")
        started = time.monotonic()
        done = remediate("plan", "--host", "nopw", "-i", str(inv), "-p", str(playbook), timeout=30)
        assert done.returncode == 1 and words in done.stdout + done.stderr, done.stdout + done.stderr
        assert time.monotonic() - started < 30


def test_a_password_inside_a_path_is_neither_spelt_out_nor_corrupts_rollback(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    work = tmp_path / f"adv-{ssh_lab.password}server"  # the sudo password stands inside a folder name
    work.mkdir()
    (work / "app.conf").write_text("old\n")
    playbook = book(tmp_path, f"""\
name: masked
steps:
  - id: conf
    kind: file
    params: {{path: "{work}/app.conf", content: "new\\n"}}
  - id: stamp
    kind: command
    params:
      command: [touch, "{work}/stamp"]
      creates: "{work}/stamp"
      undo: [sh, -c, "echo db_password=hunter2 > {work}/undone"]
""")
    done = remediate("apply", "--yes", "--host", "pw", "-i", str(inv), "-p", str(playbook), password=ssh_lab.password)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = done.stdout + done.stderr
    assert ssh_lab.password not in shown and "adv-********" not in shown and "********server" not in shown
    undo = remediate("rollback", "--yes", "--host", "pw", "-i", str(inv), password=ssh_lab.password)
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert (work / "app.conf").read_text() == "old\n"
    assert (work / "undone").read_text() == "db_password=hunter2\n"  # the undo ran exactly as written


@pytest.mark.parametrize("name", ["line\nbreak.conf", "back\\slash.conf"])
def test_odd_file_names_hash_and_roll_back(ssh_lab: SshLab, tmp_path: Path, name: str) -> None:
    inv = ssh_lab.inventory(tmp_path)
    target = tmp_path / name
    target.write_text("old\n")
    playbook = book(tmp_path, f"name: odd\nsteps:\n  - id: f\n    kind: file\n    params: {{path: {json.dumps(str(target))}, content: \"new\\n\"}}\n")
    done = remediate("apply", "--yes", "--host", "nopw", "-i", str(inv), "-p", str(playbook))
    assert done.returncode == 0, done.stdout + done.stderr
    undo = remediate("rollback", "--yes", "--host", "nopw", "-i", str(inv))
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert target.read_text() == "old\n"


def test_a_variable_is_one_argument_never_shell_syntax(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("keep\n")
    pwned = tmp_path / "PWNED"
    playbook = book(tmp_path, f"""\
name: inject
vars: {{msg: hello, dir: "{tmp_path}/work"}}
steps:
  - id: clean
    kind: command
    params:
      command: "rm -f {{{{ dir }}}}/stale.pid"
      unless: "sh -c 'grep -q {{{{ msg }}}} {{{{ dir }}}}/out'"
""")
    for extra in ((f"msg=x; touch {pwned}",), (f"dir={victim} /tmp/x",), ("msg=it's",)):
        done = remediate("plan", "--host", "nopw", "-i", str(inv), "-p", str(playbook), "-e", *extra)
        assert done.returncode in (0, 2), done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    done = remediate("apply", "--yes", "--host", "nopw", "-i", str(inv), "-p", str(playbook), "-e", f"dir={victim} /tmp/x")
    assert not pwned.exists()
    assert (victim / "keep").exists()


@pytest.mark.parametrize("new, deeper", [("new", "deeper"), ("line\nbreak", "ends in a line break\n"),
                                        ("two words", "back\\slash")])
def test_folders_a_step_made_are_gone_after_rollback(ssh_lab: SshLab, tmp_path: Path, new: str, deeper: str) -> None:
    """Each folder made is named as made, whatever its name holds (a line break, a space): the plan lists them, the
    rollback removes them, and one that is not empty by then is kept and named, never called removed."""
    inv = ssh_lab.inventory(tmp_path)
    made = tmp_path / new / deeper
    playbook = book(tmp_path, f"name: dirs\nsteps:\n  - id: f\n    kind: file\n    params: {{path: {json.dumps(str(made / 'app.conf'))}, content: x}}\n")
    plan = remediate("plan", "--json", "--host", "nopw", "-i", str(inv), "-p", str(playbook))
    assert plan.returncode == 2, plan.stdout + plan.stderr
    (planned,) = [e for e in map(json.loads, plan.stdout.splitlines()) if e["event"] == "step_planned"]
    assert planned["reason"].endswith(f" (and its folders {tmp_path / new}, {made})"), planned
    done = remediate("apply", "--yes", "--host", "nopw", "-i", str(inv), "-p", str(playbook))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (made / "app.conf").read_text() == "x"
    (tmp_path / new / "someone else's").write_text("kept\n")
    undo = remediate("rollback", "--json", "--yes", "--host", "nopw", "-i", str(inv))
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert not made.exists() and (tmp_path / new / "someone else's").read_text() == "kept\n"
    (undone,) = [e for e in map(json.loads, undo.stdout.splitlines()) if e["event"] == "step_rolled_back"]
    assert undone["message"].endswith(f"; removed the folder(s) it made: {made}; kept {tmp_path / new} (not empty: "
                                      "something else is in it now)"), undone

