"""The README's first quick-start command works: it shows the bounce, the plan, the fix and the saved mail; and
`scripts/demo --alert` shows the same fix driven by the alert chain. Both are run as a newcomer runs them, from a
shell whose PATH does not hold the virtualenv (issue #25), and the commands they print at the end must work."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import labctl, servectl

DEMO = labctl.LAB.parent / "scripts" / "demo"
VENV_BIN = labctl.LAB.parent / ".venv" / "bin"


def newcomer() -> dict[str, str]:
    """The environment of a new user's shell: the system's PATH, without the virtualenv the demo makes."""
    return {**os.environ, "PATH": ":".join(p for p in os.environ["PATH"].split(":")
                                           if p and Path(p).resolve() != VENV_BIN.resolve())}


def demo(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    done = subprocess.run(["bash", str(DEMO), *args], capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL, env=newcomer())
    return done, done.stdout + done.stderr


def test_demo_script(lab_up: None) -> None:
    done, out = demo()
    assert done.returncode == 0, out[-3000:]
    bounce = out.index("status=bounced")
    planned = out.index("exit code: 2")
    applied = out.index("ec2-mx: applied")
    saved = out.index("saved mail to INBOX", applied)  # Dovecot's own log, shown after the fix
    assert bounce < planned < applied < saved, out[-3000:]
    assert "refused to talk to me: 500 5.5.1 Unknown command" in out
    last = done.stdout.rstrip().splitlines()
    assert last[-1].startswith("Undo:")
    # `remediate` is not on a newcomer's PATH: the demo says how, and names it by its full path.
    assert f'    export PATH="{VENV_BIN}:$PATH"' in last, last[-6:]
    history = next(line for line in last if line.startswith("History: "))
    assert history == f"History: {VENV_BIN}/remediate runs --host ec2-mx"
    runs = subprocess.run(shlex.split(history.removeprefix("History: ")), capture_output=True, text=True,
                          timeout=60, env=newcomer())
    assert runs.returncode == 0 and "ec2-mx" in runs.stdout and "applied" in runs.stdout, runs.stdout + runs.stderr
    labctl.reset()


def test_demo_alert_waits_for_serve_and_says_how_to_run_it_to_see_its_page(lab_up: None, tmp_path: Path) -> None:
    """`scripts/demo --alert` printed a traceback (KeyError: 0) while serve was starting, and ended with serve torn
    down and nothing saying how to start it against the lab to see its page."""
    done, out = demo("--alert")
    try:
        assert done.returncode == 0, out[-4000:]
        assert "Traceback" not in out and "KeyError" not in out, out[:4000]
        assert "Done: the alert resolved, so the incident is resolved" in out
        command = next(line.strip() for line in done.stdout.splitlines()
                       if line.strip().startswith(f"{VENV_BIN}/remediate serve "))
        assert f"--token-file {servectl.TOKEN_FILE}" in command and f"--listen {servectl.LISTEN}" in command
        assert f"open http://{servectl.LISTEN}/" in done.stdout
        # The demo's own serve is gone (it waits for it): the page below can only be the one started here.
        with socket.socket() as probe:
            assert probe.connect_ex((servectl.LISTEN.split(":")[0], int(servectl.LISTEN.split(":")[1]))) != 0
        # The printed command starts serve against the lab, and its page asks for the token.
        serve = subprocess.Popen(shlex.split(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env={**newcomer(), "XDG_STATE_HOME": str(tmp_path)})
        try:
            page = None
            for _ in range(60):
                try:
                    page = urllib.request.urlopen(f"{servectl.URL}/", timeout=2)
                    break
                except (urllib.error.URLError, ConnectionError):
                    assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""
                    time.sleep(0.5)
            assert page is not None and page.url.endswith("/login") and b"token" in page.read().lower()
        finally:
            serve.terminate()
            said, _ = serve.communicate(timeout=60)
        assert serve.returncode == 0 and "serve: stopped" in said, said
    finally:
        labctl.reset()
