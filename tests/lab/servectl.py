"""Run `remediate serve` as the real process it is, talk to its API, and drive the lab's alert chain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import labctl

LISTEN = "127.0.0.16:9095"  # where lab/chain/alertmanager.yml sends alerts
URL = f"http://{LISTEN}"
TOKEN_FILE = Path("/var/lib/remediate-lab/chain/serve.token")
CHAIN = labctl.LAB / "chain" / "run"
DATA = Path(__file__).resolve().parent / "data"
ALERTMANAGER = "http://127.0.0.17:9093"


def chain(action: str) -> None:
    done = subprocess.run(["bash", str(CHAIN), action], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def token() -> str:
    if not TOKEN_FILE.exists():
        TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        TOKEN_FILE.write_text(os.urandom(18).hex())
        TOKEN_FILE.chmod(0o600)
    return TOKEN_FILE.read_text().strip()


class Serve:
    """`remediate serve` on 127.0.0.16:9095, its stderr in state_dir/serve.log."""

    def __init__(self, rules: str, state_dir: Path, env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.rules = state_dir / "rules.yml"
        self.rules.write_text(rules)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        token()
        log = open(self.state_dir / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "remediate"), "serve", "--rules", str(self.rules), "-i",
             str(labctl.INVENTORY), "--listen", LISTEN, "--state-dir", str(self.state_dir),
             "--token-file", str(TOKEN_FILE)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env)
        self.wait(lambda: self._healthy(), 30, "serve answering /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"serve exited: {self.log()}"
        try:
            with urllib.request.urlopen(f"{URL}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None

    def log(self) -> str:
        path = self.state_dir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(URL + path, data=data, method=method, headers={
            "Authorization": f"Bearer {token()}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def incidents(self) -> list[dict[str, Any]]:
        status, found = self.call("GET", "/incidents")
        assert status == 200, found
        return found

    def incident(self, number: int) -> dict[str, Any]:
        status, found = self.call("GET", f"/incidents/{number}")
        assert status == 200, found
        return found

    def wait(self, ready: Callable[[], Any], seconds: float, what: str) -> Any:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = ready()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"waited {seconds} s for {what}; serve said:\n{self.log()[-4000:]}")

    def wait_state(self, number: int, states: set[str], seconds: float) -> dict[str, Any]:
        return self.wait(lambda: (lambda i: i if i["state"] in states else None)(self.incident(number)), seconds,
                         f"incident {number} to be {' or '.join(sorted(states))}")


def alertmanager_alerts() -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{ALERTMANAGER}/api/v2/alerts?active=true", timeout=5) as response:
        return json.loads(response.read())


def run_records(state: Path) -> list[dict[str, Any]]:
    """The run records remediate wrote under XDG_STATE_HOME=state (applies and rollbacks; plans write none)."""
    folder = state / "remediate" / "runs"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.exists() else []
