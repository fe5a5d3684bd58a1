"""The become password never shows: not in output, JSON events, journals (local or on the host), or errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from remediate.engine import runrecord

from .conftest import SshLab


def run(args: list[str], password: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REMEDIATE_BECOME_PASSWORD": password}
    return subprocess.run(["remediate", *args], capture_output=True, text=True, env=env, timeout=120)


def test_password_appears_nowhere_and_journals_are_private(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    # A command that prints the password (as a misbehaving tool might); the playbook itself never holds it.
    said = tmp_path / "said"
    said.write_text(ssh_lab.password)
    book = tmp_path / "book.yml"
    book.write_text(f"""\
name: secrets
steps:
  - id: conf
    kind: file
    params: {{path: "{work}/app.conf", content: "x=1\\n"}}
  - id: fails
    kind: command
    params: {{command: [sh, -c, "echo \\"sudo said: $(cat {said})\\" >&2; exit 3"], creates: "{work}/never", undo: ["true"]}}
""")
    outputs = []
    for args in (["plan", "--json"], ["apply", "--yes", "--json"], ["apply", "--yes"]):
        done = run([*args, "--host", "pw", "-i", str(inv), "-p", str(book)], ssh_lab.password)
        outputs.append(done.stdout + done.stderr)
    assert '"outcome": "rolled-back"' in outputs[1], outputs[1]
    assert "exited 3" in outputs[2]
    state = Path(os.environ["XDG_STATE_HOME"]) / "remediate"
    journals = list((state / "runs").glob("*.json"))
    remote = list((work / ".remediate").glob("*/journal.json"))
    assert journals and remote
    texts = outputs + [p.read_text() for p in journals + remote]
    assert all(ssh_lab.password not in text for text in texts)
    assert any("********" in text for text in texts)
    for path in journals + remote:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((state / "runs").stat().st_mode) == 0o700
    for folder in (work / ".remediate").iterdir():
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not [p for p in work.rglob(".remediate-tmp*")], "temporary files left behind"
    assert runrecord.read(journals[0])["steps"][0]["state"] == "rolled-back"


def test_verbose_shows_every_command_and_never_the_password(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    said = tmp_path / "said"
    said.write_text(ssh_lab.password)
    book = tmp_path / "book.yml"
    book.write_text(f"""\
name: verbose
steps:
  - id: probe
    kind: command
    params: {{command: [touch, "{tmp_path}/x"], unless: [sh, -c, "cat {said}; exit 1"]}}
""")
    once = run(["plan", "-v", "--host", "pw", "-i", str(inv), "-p", str(book)], ssh_lab.password)
    assert once.returncode == 2, once.stdout + once.stderr
    assert "$ sh -c 'cat" in once.stderr and "-> 1" in once.stderr and " s)" in once.stderr
    assert "out:" not in once.stderr  # -v: commands only
    twice = run(["plan", "-vv", "--json", "--host", "pw", "-i", str(inv), "-p", str(book)], ssh_lab.password)
    commands = [json.loads(line) for line in twice.stdout.splitlines() if '"event": "command"' in line]
    assert any(c["exit_code"] == 1 and "********" in c["stdout"] for c in commands)
    assert ssh_lab.password not in once.stdout + once.stderr + twice.stdout + twice.stderr
