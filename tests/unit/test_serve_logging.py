"""serve sees itself (issue #23): a failure in a job or a request is logged with its incident and traceback, the
incident says so, and serve goes on; a client never sees internals. Same harness as test_serve.py."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from . import test_serve as base
from .test_serve import Serve, alert

receiver = base.receiver  # the fixtures: an outgoing webhook's far end, and serve with hosts h1 and h2
serve = base.serve


def test_a_deadline_job_that_raises_is_logged_with_its_incident_and_the_next_incident_goes_on(
        serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    first = serve.post(alert("f1", "h1:9100"))[0]["id"]
    second = serve.post(alert("f2", "h2:9100"))[0]["id"]
    for number in (first, second):
        assert serve.act(number, "approve").status_code == 200
        assert serve.incident(number)["state"] == "waiting_resolved"
    rollback = serve.engine.runs.rollback

    def broken_on_h1(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "h1":
            raise RuntimeError("the rollback fell over")
        return rollback(host, *args, **kwargs)

    monkeypatch.setattr(serve.engine.runs, "rollback", broken_on_h1)
    serve.clock.now += 301
    with caplog.at_level(logging.INFO, logger="remediate.serve"):
        serve.engine.tick()
        serve.engine.idle()
    failed = [r for r in caplog.records if r.levelno == logging.ERROR and f"incident {first}:" in r.getMessage()]
    assert failed and failed[0].exc_info and "the rollback fell over" in str(failed[0].exc_info[1]), caplog.text
    assert "Traceback" in caplog.text
    one, two = serve.incident(first), serve.incident(second)
    assert one["state"] == "failed" and "RuntimeError: the rollback fell over" in one["reason"], one
    assert two["state"] == "failed" and "rolled back" in two["reason"], two  # the other incident went on
    assert serve.fakes["h2"].files["/etc/app.conf"].content == b"broken\n"
    changes = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(m.startswith(f"incident {second}: failed") for m in changes), changes  # each state change, at info


def test_an_unexpected_error_in_a_request_is_a_500_that_shows_no_internals_and_is_logged(
        serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("/var/lib/secret/place: the disk went away")

    monkeypatch.setattr(serve.engine.store, "all", lambda *args: broken())
    client = TestClient(serve.client.app, raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="remediate.serve"):
        response = client.get("/incidents", headers=serve.people["alice"])
    assert response.status_code == 500
    assert "error" in response.json() and "secret" not in response.text and "RuntimeError" not in response.text
    assert "GET /incidents" in caplog.text and "the disk went away" in caplog.text and "Traceback" in caplog.text
    assert client.get("/incidents/1", headers=serve.people["alice"]).status_code == 404  # serve goes on answering



def test_serves_log_lines_are_timestamped_one_line_each_and_mask_secrets() -> None:
    from remediate.serve import logs

    stream = io.StringIO()
    handler = logs.configure("info", stream)
    try:
        log = logging.getLogger("remediate.serve.anything")
        log.info("incident %d: approved: by %s", 7, "alice\nincident 9: forged\x1b[2J")
        log.debug("incident 7: not said at info")
        try:
            raise RuntimeError("sent Authorization: Bearer s3cr3t-t0ken\nincident 9: forged")
        except RuntimeError:
            log.exception("incident %d: the job failed", 7)
    finally:
        logs.unconfigure(handler)
    text = stream.getvalue()
    lines = text.splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(stamp + r" INFO incident 7: approved: by alice\^Jincident 9: forged\^\[\[2J", lines[0]), lines
    assert re.fullmatch(stamp + r" ERROR incident 7: the job failed", lines[1]), lines
    assert lines[2] == "  Traceback (most recent call last):" and "not said" not in text
    assert "s3cr3t" not in text and not any(line.startswith("incident 9") for line in lines), text


def serve_process(tmp_path: Path, *args: str) -> str:
    """`remediate serve` with `args`, one unrouted alert posted to it, then SIGTERM: what it printed."""
    from .test_serve_cli import post, serve_files, start

    tmp_path.mkdir()
    proc, url = start(serve_files(tmp_path), *args)
    try:
        post(url, [{"status": "firing", "labels": {"alertname": "Unrouted"}, "startsAt": "2026-11-29T10:00:00Z",
                    "fingerprint": "f"}])
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    return out


def test_serve_log_level_says_each_decision_at_info_and_only_problems_at_warning(tmp_path: Path) -> None:
    said = serve_process(tmp_path / "info")
    decision = next(line for line in said.splitlines() if "incident 1: received" in line)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO incident 1: received -> ignored: ", decision), decision
    quiet = serve_process(tmp_path / "warning", "--log-level", "warning")
    assert "incident 1" not in quiet and "serve: stopped" in quiet, quiet
    bogus = subprocess.run(["remediate", "serve", "--rules", "x", "--log-level", "loud"], capture_output=True,
                           text=True, timeout=30)
    assert bogus.returncode != 0 and "'loud' is not one of" in bogus.stderr, bogus.stderr  # a usage error
