"""`remediate serve`, `incidents`, `approve` and `deny` as processes: start-up refusals, the CLI talking to a real
uvicorn over loopback, and the errors a person gets (no hosts are contacted: no alert routes to one)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

TOKEN = "cli-test-token"
ADDRESS = "127.0.0.19"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return int(s.getsockname()[1])


def remediate(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["remediate", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "REMEDIATE_SERVE_TOKEN": TOKEN, **(env or {})})


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  - name: r\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\n")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    return {"rules": rules, "inventory": inventory, "state": tmp_path / "serve"}


@pytest.fixture
def running(files: dict[str, Path]) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(["remediate", "serve", "--rules", str(files["rules"]), "-i", str(files["inventory"]),
                             "--listen", f"{ADDRESS}:{port}", "--state-dir", str(files["state"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env={**os.environ, "REMEDIATE_SERVE_TOKEN": TOKEN})
    url = f"http://{ADDRESS}:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_the_cli_talks_to_serve(running: str, files: dict[str, Path]) -> None:
    listed = remediate("incidents", "--server", running)
    assert listed.returncode == 0 and listed.stdout.strip() == "no incidents"
    body = json.dumps({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "Unrouted"}, "startsAt": "2026-11-29T10:00:00Z",
         "fingerprint": "f"}]}).encode()
    request = urllib.request.Request(f"{running}/alertmanager", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    urllib.request.urlopen(request, timeout=10).close()
    found = json.loads(remediate("incidents", "--json", "--server", running).stdout)
    assert [(i["id"], i["state"]) for i in found] == [(1, "ignored")] and "no rule" in found[0]["reason"]
    approve = remediate("approve", "1", "--server", running)
    assert approve.returncode == 1 and "HTTP 409" in approve.stderr + approve.stdout and "ignored" in approve.stderr
    missing = remediate("deny", "7", "--reason", "no", env={"REMEDIATE_SERVER": running})
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr
    wrong = remediate("incidents", "--server", running, env={"REMEDIATE_SERVE_TOKEN": "nope"})
    assert wrong.returncode == 1 and "HTTP 401" in wrong.stderr and "REMEDIATE_SERVE_TOKEN" in wrong.stderr
    second = remediate("serve", "--rules", str(files["rules"]), "-i", str(files["inventory"]), "--listen",
                       f"{ADDRESS}:{free_port()}", "--state-dir", str(files["state"]))
    assert second.returncode == 1 and "another serve is using this state directory" in second.stderr


def test_serve_refuses_to_start_without_a_token_or_with_bad_input(files: dict[str, Path]) -> None:
    base = ["serve", "--rules", str(files["rules"]), "-i", str(files["inventory"]), "--state-dir", str(files["state"]),
            "--listen", f"{ADDRESS}:{free_port()}"]
    no_token = remediate(*base, env={"REMEDIATE_SERVE_TOKEN": ""})
    assert no_token.returncode == 1 and "no token" in no_token.stderr and "REMEDIATE_SERVE_TOKEN" in no_token.stderr
    files["rules"].write_text("rules:\n  - name: r\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\n    approval: yes\n")
    bad = remediate(*base)
    assert bad.returncode == 1 and "rules.yml:5: approval: is required or auto" in bad.stderr
    listen = remediate(*base[:-1], "nowhere")
    assert listen.returncode == 1 and "is not ADDRESS:PORT" in listen.stderr
    assert not (files["state"] / "incidents.db").exists()


def test_an_unreachable_serve_is_said_plainly() -> None:
    done = remediate("incidents", "--server", f"http://{ADDRESS}:{free_port()}")
    assert done.returncode == 1 and "cannot reach serve" in done.stderr and "--server" in done.stderr
