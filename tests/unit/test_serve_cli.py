"""`remediate serve`, `incidents`, `approve` and `deny` as processes: start-up refusals, the CLI talking to a real
uvicorn over loopback, and the errors a person gets (no hosts are contacted: no alert routes to one)."""

from __future__ import annotations

import http.server
import json
import os
import queue
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TOKEN = "cli-test-token-0123456789abcdef0123"
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
    return serve_files(tmp_path)


def serve_files(tmp_path: Path) -> dict[str, Path]:
    """A rules file with one rule, an inventory with one host, and where serve keeps its state."""
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  - name: r\n    match: {alertname: X}\n    playbook: smtp-to-lmtp\n")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    return {"rules": rules, "inventory": inventory, "state": tmp_path / "serve"}


def start(files: dict[str, Path], *args: str) -> tuple[subprocess.Popen[str], str]:
    """`remediate serve` (with args) on a free loopback port, once it answers /healthz; its stdout and stderr in one
    pipe."""
    port = free_port()
    proc = subprocess.Popen(["remediate", "serve", "--rules", str(files["rules"]), "-i", str(files["inventory"]),
                             "--listen", f"{ADDRESS}:{port}", "--state-dir", str(files["state"]), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "REMEDIATE_SERVE_TOKEN": TOKEN})
    url = f"http://{ADDRESS}:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
    return proc, url


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, and what serve printed."""
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out


@pytest.fixture
def person(files: dict[str, Path]) -> dict[str, str]:
    """alice's named token (role admin), made with `remediate serve tokens add`, as the client commands' environment."""
    made = remediate("serve", "tokens", "add", "alice", "--role", "admin", "--state-dir", str(files["state"]))
    assert made.returncode == 0 and made.stdout.startswith("rmt_"), made.stderr
    return {"REMEDIATE_SERVE_TOKEN": made.stdout.strip()}


@pytest.fixture
def running(files: dict[str, Path]) -> Iterator[str]:
    proc, url = start(files)
    yield url
    stop(proc)


def post(url: str, alerts: list[dict[str, Any]], receiver: str = "remediate") -> None:
    body = json.dumps({"version": "4", "status": "firing", "receiver": receiver, "alerts": alerts}).encode()
    request = urllib.request.Request(f"{url}/alertmanager", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    urllib.request.urlopen(request, timeout=10).close()


def test_the_cli_talks_to_serve(running: str, files: dict[str, Path], person: dict[str, str]) -> None:
    listed = remediate("incidents", "--server", running, env=person)
    assert listed.returncode == 0 and listed.stdout.strip() == "no incidents"
    post(running, [{"status": "firing", "labels": {"alertname": "Unrouted"}, "startsAt": "2026-11-29T10:00:00Z",
                    "fingerprint": "f"}])
    found = json.loads(remediate("incidents", "--json", "--server", running, env=person).stdout)
    assert [(i["id"], i["state"]) for i in found] == [(1, "ignored")] and "no rule" in found[0]["reason"]
    shared = remediate("approve", "1", "--server", running)  # the shared token is Alertmanager's, no person's
    assert shared.returncode == 1 and "HTTP 403" in shared.stderr and "tokens add" in shared.stderr
    approve = remediate("approve", "1", "--server", running, env=person)
    assert approve.returncode == 1 and "HTTP 409" in approve.stderr + approve.stdout and "ignored" in approve.stderr
    missing = remediate("deny", "7", "--reason", "no", env={"REMEDIATE_SERVER": running, **person})
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


# --- issue #22: what reaches a terminal or serve's log, the token, the state directory's modes ----------------------

def test_serve_refuses_a_token_shorter_than_128_bits_and_says_how_to_make_one(files: dict[str, Path]) -> None:
    done = remediate("serve", "--rules", str(files["rules"]), "-i", str(files["inventory"]), "--state-dir",
                     str(files["state"]), "--listen", f"{ADDRESS}:{free_port()}",
                     env={"REMEDIATE_SERVE_TOKEN": "0123456789abcdef0123456789abcde"}, timeout=15)
    assert done.returncode == 1 and "needs 128" in done.stderr and "openssl rand -hex 32" in done.stderr
    assert not (files["state"] / "incidents.db").exists()


def test_serves_log_keeps_one_line_per_decision_whatever_a_receiver_or_label_holds(files: dict[str, Path]) -> None:
    proc, url = start(files)
    try:
        post(url, [{"status": "firing", "labels": {"alertname": "Odd\x1b]0;owned\x07\x1b[2J"},
                    "startsAt": "2026-11-29T10:00:00Z", "fingerprint": "f"}],
             receiver="am\nincident 99: approved: by mallory\r")
    finally:
        out = stop(proc)
    assert not any(line.startswith("incident 99") for line in out.splitlines()), out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "am^Jincident 99: approved: by mallory^M" in out


class Canned(http.server.BaseHTTPRequestHandler):
    """A serve that answers GET /incidents with what a hostile alert and host could make it hold."""

    def do_GET(self) -> None:
        body = json.dumps([{"id": 3, "state": "pending", "alertname": "A\x1b[31mRED", "host": "h1\r\x1b[2K",
                            "run_id": None, "reason": "two\nlines",
                            "plan_diff": "--- a\n+++ b\n+ok\x1b]52;c;ZXZpbA==\x07\n"}])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


def test_incidents_shows_labels_and_diffs_inert() -> None:
    server = http.server.HTTPServer((ADDRESS, 0), Canned)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        done = remediate("incidents", "--server", f"http://{ADDRESS}:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert not any(c in done.stdout for c in "\x1b\x07\r"), repr(done.stdout)
    assert "A^[[31mRED" in done.stdout and "two^Jlines" in done.stdout and "+ok^[]52;c;ZXZpbA==^G" in done.stdout
    assert len(done.stdout.splitlines()) == 5  # the header, the row and three diff lines: nothing forged


def test_serve_keeps_its_state_directory_0700_and_its_files_0600(files: dict[str, Path]) -> None:
    files["state"].mkdir(mode=0o755)
    files["state"].chmod(0o755)
    proc, url = start(files)
    try:
        post(url, [{"status": "firing", "labels": {"alertname": "Unrouted"}, "startsAt": "2026-11-29T10:00:00Z",
                    "fingerprint": "f"}])
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in files["state"].iterdir()}
        folder = oct(files["state"].stat().st_mode & 0o777)
    finally:
        stop(proc)
    assert folder == "0o700"
    assert {"incidents.db", "incidents.db-wal", "incidents.db-shm", "serve.lock"} <= set(modes), modes
    assert set(modes.values()) == {"0o600"}, modes


# --- issue #25: a newcomer's first hour ----------------------------------------------------------------------------

def test_incidents_has_a_header_row_and_json_has_none(running: str, person: dict[str, str]) -> None:
    post(running, [{"status": "firing", "labels": {"alertname": "Unrouted"}, "startsAt": "2026-11-29T10:00:00Z",
                    "fingerprint": "f"}])
    lines = remediate("incidents", "--server", running, env=person).stdout.splitlines()
    assert lines[0].split() == ["id", "state", "alert", "host", "run", "reason"], lines
    assert lines[1].split()[:3] == ["1", "ignored", "Unrouted"] and lines[1].index("ignored") == lines[0].index("state")
    assert [line for line in lines if line != line.rstrip()] == []
    assert [i["id"] for i in json.loads(remediate("incidents", "--json", "--server", running, env=person).stdout)] == [1]


def test_pause_and_resume_from_the_cli(running: str, person: dict[str, str]) -> None:
    paused = remediate("pause", "--reason", "mx maintenance", "--server", running, env=person)
    assert paused.returncode == 0, paused.stderr
    assert "serve paused" in paused.stdout and "mx maintenance" in paused.stdout and "remediate resume" in paused.stdout
    assert "alice (token)" in paused.stdout
    assert json.loads(urllib.request.urlopen(f"{running}/healthz", timeout=5).read())["paused"] is True
    post(running, [{"status": "firing", "labels": {"alertname": "X", "instance": "h1:9154"},
                    "startsAt": "2026-11-29T10:00:00Z", "fingerprint": "f"}])
    found = json.loads(remediate("incidents", "--json", "--server", running, env=person).stdout)
    assert found[0]["state"] == "ignored" and "paused" in found[0]["reason"] and "mx maintenance" in found[0]["reason"]
    resumed = remediate("resume", "--server", running, env=person)
    assert resumed.returncode == 0 and "serve resumed" in resumed.stdout, resumed.stderr
    assert json.loads(urllib.request.urlopen(f"{running}/healthz", timeout=5).read())["paused"] is False
    refused = remediate("pause", "--server", running, env={"REMEDIATE_SERVE_TOKEN": "nope"})
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr


def test_sigterm_is_logged_with_what_was_in_flight_and_the_run_finishes_first(files: dict[str, Path]) -> None:
    """serve said nothing when SIGTERM stopped it (and was killed there, jobs in flight included)."""
    silent = socket.socket()  # an "sshd" that accepts and never says a word: the plan waits on it
    silent.bind((ADDRESS, 0))
    silent.listen(1)
    files["inventory"].write_text(f"all:\n  hosts:\n    h1:\n      ansible_host: {ADDRESS}\n"
                                  f"      ansible_port: {silent.getsockname()[1]}\n")
    files["rules"].write_text("rules:\n  - name: r\n    match: {alertname: X}\n    playbook: toy\n")  # h1 alone
    proc, url = start(files)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def until(words: str) -> list[str]:
        seen = []
        while not seen or words not in seen[-1]:
            seen.append(lines.get(timeout=30))
        return seen

    try:
        post(url, [{"status": "firing", "labels": {"alertname": "X", "instance": "h1:9154"},
                    "startsAt": "2026-11-29T10:00:00Z", "fingerprint": "f"}])
        silent.settimeout(30)
        connection, _ = silent.accept()  # serve is planning incident 1: a job in flight
        proc.terminate()
        said = until("job(s) in flight")
        assert said[-1].startswith("serve: SIGTERM: no longer taking requests; waiting for 1 job(s) in flight"), said
        assert "incident 1: planning on h1 (started; pending)" in lines.get(timeout=30)
        assert proc.poll() is None  # still there: the job finishes first
        silent.close()  # the host goes away: the plan fails at once (a retry is refused), and the job ends
        connection.close()
        said = until("serve: stopped")
        assert said[-1] == "serve: stopped (1 job(s) finished)\n", said
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        silent.close()
