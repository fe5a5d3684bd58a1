"""An edit made while the operator reads the plan is never overwritten; the prompt is a real terminal's."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

from . import labctl


def read_until(fd: int, needle: bytes, seconds: float = 60) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_compose_file_edited_while_the_plan_is_on_screen(broken_lab: None) -> None:
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # a person at a terminal
    proc = subprocess.Popen(["remediate", "apply", "--host", "ec2-mx", "-i", str(labctl.INVENTORY)],
                            stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True)
    os.close(follower)
    shown = read_until(leader, b"Apply these changes to ec2-mx?")
    assert b"Apply these changes to ec2-mx?" in shown, shown.decode(errors="replace")
    theirs = labctl.COMPOSE_FILE.read_text().replace("# Senders we accept mail from", "# edited by a colleague")
    labctl.COMPOSE_FILE.write_text(theirs)
    os.write(leader, b"y\n")
    rest = read_until(leader, b"exit 1)")
    proc.wait(timeout=120)
    os.close(leader)
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", (shown + rest).decode(errors="replace")).split())
    assert proc.returncode == 1, text
    assert "changed since the plan" in text and "refusing to overwrite" in text
    assert labctl.COMPOSE_FILE.read_text() == theirs
    assert "RELAYHOST=[127.0.0.11]:2525" in labctl.container().env
