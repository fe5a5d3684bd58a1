"""Run `remediate serve` as the real process it is, talk to its API, and drive the lab's alert chain."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remediate.engine import runrecord

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

    def __init__(self, rules: str, state_dir: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.state_dir = state_dir
        self.args = args  # serve's further options (--alertmanager URL ...)
        #: A person's named token (Serve.person) the API calls go with; None: the shared token.
        self.bearer: str | None = None
        state_dir.mkdir(parents=True, exist_ok=True)
        self.rules = state_dir / "rules.yml"
        self.rules.write_text(rules)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        token()
        with socket.socket() as probe:  # another serve still listening would answer this one's /healthz and calls
            address, port = LISTEN.rsplit(":", 1)
            assert probe.connect_ex((address, int(port))) != 0, f"something already listens on {LISTEN}"
        log = open(self.state_dir / "serve.log", "ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "remediate"), "serve", "--rules", str(self.rules), "-i",
             str(labctl.INVENTORY), "--listen", LISTEN, "--state-dir", str(self.state_dir),
             "--token-file", str(TOKEN_FILE), *self.args],
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

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
             bearer: str | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        webhook = path == "/alertmanager"  # Alertmanager's shared token alone opens it; a person's is refused there
        given = bearer or (token() if webhook else self.bearer or token())
        request = urllib.request.Request(URL + path, data=data, method=method, headers={
            "Authorization": f"Bearer {given}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def person(self, name: str, roles: tuple[str, ...] = ("admin",)) -> str:
        """A named token for `name` in this serve's state directory (the first one made is what the API calls go
        with from then on)."""
        from remediate.serve.identity import Tokens
        made = Tokens(self.state_dir).add(name, roles)
        self.bearer = self.bearer or made
        return made

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
    return [runrecord.read(p) for p in sorted(folder.glob("*.json"))] if folder.exists() else []


# --- Alertmanager itself (the silence loop's tests) ------------------------------------------------------------------

CHAIN_RUN = Path("/run/remediate-lab/chain")  # lab/chain/run's $RUN: its config, data, pid files and logs


def alertmanager_api(method: str, path: str) -> Any:
    request = urllib.request.Request(f"{ALERTMANAGER}/api/v2/{path}", method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def alertmanager_ready() -> bool:
    try:
        with urllib.request.urlopen(f"{ALERTMANAGER}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def restart_alertmanager(lose_notification_log: bool = True) -> None:
    """Stop the chain's Alertmanager (SIGTERM: it writes its silences out), remove its notification log (what a
    resolved is sent by: without it none goes out), and start it again as lab/chain/run does, on the same address."""
    pidfile = CHAIN_RUN / "alertmanager.pid"
    pid = int(pidfile.read_text())
    os.killpg(pid, signal.SIGTERM)
    wait_until(lambda: not _alive(pid), 30, "the chain's Alertmanager to exit")
    if lose_notification_log:
        (CHAIN_RUN / "alertmanager-data" / "nflog").unlink(missing_ok=True)
    log = open(CHAIN_RUN / "alertmanager.log", "ab")
    proc = subprocess.Popen(["prometheus-alertmanager", f"--config.file={CHAIN_RUN / 'alertmanager.yml'}",
                             f"--storage.path={CHAIN_RUN / 'alertmanager-data'}", "--web.listen-address=127.0.0.17:9093",
                             "--cluster.listen-address="], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")  # lab/chain/run down stops it
    wait_until(alertmanager_ready, 30, "the restarted Alertmanager to be ready")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def add_receiver(name: str, url: str) -> None:
    """A second receiver for every alert (the page a person gets), beside serve's, and Alertmanager reloaded."""
    config = CHAIN_RUN / "alertmanager.yml"
    text = config.read_text()
    routes = f"  routes:\n    - receiver: {name}\n      continue: true\n    - receiver: remediate\nreceivers:\n"
    text = text.replace("receivers:\n", routes, 1)
    text += f"  - name: {name}\n    webhook_configs:\n      - url: {url}\n        send_resolved: true\n"
    config.write_text(text)
    request = urllib.request.Request(f"{ALERTMANAGER}/-/reload", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def wait_until(ready: Callable[[], Any], seconds: float, what: str) -> Any:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = ready()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"waited {seconds} s for {what}")


def fixed_and_resolved(done: dict[str, Any], *before: str) -> None:
    """A resolved incident's history holds `before` (received, planned, ...) and its run applied and verified: as an
    "applied" line then "resolved", or as one "resolved" line saying so, when Alertmanager's resolved came while the
    run was still verifying (a quick fix: the queue drained, the certificate served, before the step returned)."""
    whats = [h["what"] for h in done["history"]]
    for what in (*before, "resolved"):
        assert what in whats, (what, whats)
    closing = next(h["detail"] for h in reversed(done["history"]) if h["what"] == "resolved")
    assert "applied" in whats or "applied and verified" in closing, (closing, whats)

