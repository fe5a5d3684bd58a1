"""The engine end to end through the CLI, against a real sshd: plan, apply, no-op, rollback, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from remediate.engine import runrecord

from .conftest import SshLab


def remediate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["remediate", *args], capture_output=True, text=True, env=env or dict(os.environ), timeout=120)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int, int]]:
    """Every file's bytes, mode and owner, except remediate's own records."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and ".remediate" not in path.parts:
            st = path.stat()
            out[str(path.relative_to(folder))] = (path.read_bytes(), st.st_mode & 0o7777, st.st_uid, st.st_gid)
    return out


def prepare(ssh_lab: SshLab, tmp_path: Path) -> tuple[Path, Path]:
    work = tmp_path / "toy"
    work.mkdir()
    marker = work / "marker.txt"
    marker.write_bytes(b"original\r\nbytes \xe2\x80\xa3\n")
    os.chown(marker, 1234, 4321)
    marker.chmod(0o600)
    return ssh_lab.inventory(tmp_path), work


def test_plan_apply_noop_rollback(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv, work = prepare(ssh_lab, tmp_path)
    common = ["--host", "nopw", "-i", str(inv), "-p", "toy", "-e", f"toy_dir={work}"]
    before = snapshot(work)

    plan = remediate("plan", *common)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "-original" in plan.stdout and "+hello from remediate" in plan.stdout
    assert snapshot(work) == before and not (work / ".remediate").exists()

    logins = ssh_lab.accepted_logins()
    applied = remediate("apply", "--yes", "--json", *common)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert ssh_lab.accepted_logins() == logins + 1, "one SSH connection for the whole run"
    events = [json.loads(line) for line in applied.stdout.splitlines()]
    assert [e["step"] for e in events if e["event"] == "step_verified"] == ["write-marker", "stamp"]
    assert (work / "marker.txt").read_text() == "hello from remediate\n"
    assert (work / "stamp.txt").exists()
    st = (work / "marker.txt").stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 1234, 4321)

    again = remediate("apply", "--yes", *common)
    assert again.returncode == 0
    assert again.stdout.count("nothing to do") >= 3, again.stdout

    back = remediate("rollback", "--yes", "--host", "nopw", "-i", str(inv))
    assert back.returncode == 0, back.stdout + back.stderr
    assert snapshot(work) == before


def test_rollback_after_sigkill_mid_run(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv, work = prepare(ssh_lab, tmp_path)
    book = tmp_path / "slow.yml"
    book.write_text(f"""\
name: slow
steps:
  - id: write-marker
    kind: file
    params: {{path: "{work}/marker.txt", content: "changed\\n"}}
  - id: slow-stamp
    kind: command
    params:
      command: [sh, -c, "touch {work}/stamp.txt; sleep 30"]
      creates: "{work}/stamp.txt"
      undo: [rm, -f, "{work}/stamp.txt"]
""")
    before = snapshot(work)
    proc = subprocess.Popen(["remediate", "apply", "--yes", "--host", "nopw", "-i", str(inv), "-p", str(book)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = [runrecord.read(p) for p in runs.glob("*.json")] if runs.exists() else []
        if records and records[0]["steps"][1]["state"] == "applying" and (work / "stamp.txt").exists():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("the run never reached its second step")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (work / "marker.txt").read_text() == "changed\n"

    listed = remediate("runs", "--json")
    assert json.loads(listed.stdout.splitlines()[0])["outcome"] == "interrupted"
    back = remediate("rollback", "--yes", "--host", "nopw", "-i", str(inv))
    assert back.returncode == 0, back.stdout + back.stderr
    assert snapshot(work) == before
