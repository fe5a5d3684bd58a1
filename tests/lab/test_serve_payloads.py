"""serve against the lab's hosts, fed payloads directly: a captured real Alertmanager payload posted twice, then once
more after serve is SIGKILLed mid-run (exactly one run); and a grouped payload of 3 alerts for 2 hosts. The page, in
chromium, is test_serve_page.py's."""

from __future__ import annotations

import copy
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from . import labctl, servectl

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
CAPTURED = servectl.DATA / "alertmanager-firing.json"  # as Alertmanager 0.25 sent it in lab/chain


def captured() -> dict[str, Any]:
    return json.loads(CAPTURED.read_text())


def rules(approval: str) -> str:
    return ("rules:\n  - name: mail-not-delivered\n    match: {alertname: PostfixMailNotDelivered}\n"
            f"    playbook: smtp-to-lmtp\n    approval: {approval}\n    max_runs_per_hour: 5\n    resolve_timeout: 5m\n")


def test_a_captured_payload_twice_then_after_sigkill_runs_exactly_once(broken_lab: None, tmp_path: Path) -> None:
    serve = servectl.Serve(rules("auto"), tmp_path / "serve").start()
    serve.person("oncall")  # the API's reads go with a person's token: the shared one is Alertmanager's alone
    try:
        payload = captured()
        status, first = serve.call("POST", "/alertmanager", payload)
        assert status == 200 and first["incidents"][0]["new"], first
        status, second = serve.call("POST", "/alertmanager", payload)  # Alertmanager's retry, or its HA peer
        assert status == 200 and not second["incidents"][0]["new"]
        number = first["incidents"][0]["id"]
        assert second["incidents"][0]["id"] == number
        # SIGKILL while the run is in flight: no chance to clean up
        run = serve.wait(lambda: serve.incident(number)["run_id"], 60, "the run to start")
        serve.stop(signal.SIGKILL)
        serve.start()
        status, third = serve.call("POST", "/alertmanager", payload)
        assert status == 200 and not third["incidents"][0]["new"] and third["incidents"][0]["id"] == number
        incident = serve.incident(number)
        records = servectl.run_records(Path(os.environ["XDG_STATE_HOME"]))
        assert [r["run_id"] for r in records] == [run]  # exactly one run, never a second
        assert len(serve.incidents()) == 1
        if incident["state"] == "failed":  # killed mid-run: reported, with what to do, not guessed at
            assert f"run {run} was in flight" in incident["reason"] and "remediate rollback" in incident["reason"]
        else:  # the run had finished before the kill: the journal said so
            assert incident["state"] == "waiting_resolved" and incident["run_id"] == run, incident
        whats = [h["what"] for h in incident["history"]]
        assert whats.count("repeat") == 2 and whats.count("received") == 1
        assert "recovered: incident" in serve.log()
    finally:
        serve.stop()


def grouped() -> dict[str, Any]:
    """One Alertmanager notification grouping 3 alerts for 2 hosts (group_by: [alertname])."""
    payload = captured()
    template = payload["alerts"][0]
    alerts = []
    for fingerprint, instance in (("a1", "ec2-mx:9154"), ("a2", "ec2-mx:9100"), ("a3", "ec2-mx-hardened:9154")):
        alert = copy.deepcopy(template)
        alert["labels"]["instance"] = instance
        alert["fingerprint"] = fingerprint
        alerts.append(alert)
    payload["alerts"] = alerts
    payload["groupLabels"] = {"alertname": "PostfixMailNotDelivered"}
    payload["commonLabels"] = {"alertname": "PostfixMailNotDelivered", "severity": "page"}
    return payload


@pytest.fixture
def grouped_serve(broken_lab: None, tmp_path: Path):  # type: ignore[no-untyped-def]
    password = (labctl.KEYS / "ops-hard.password").read_text().strip()
    serve = servectl.Serve(rules("required"), tmp_path / "serve", env={"REMEDIATE_BECOME_PASSWORD": password}).start()
    serve.person("oncall")
    try:
        status, answer = serve.call("POST", "/alertmanager", grouped())
        assert status == 200 and [i["new"] for i in answer["incidents"]] == [True, True, True], answer
        yield serve
    finally:  # a failed set-up stops it too: a serve left listening would answer the next test's calls
        serve.stop()


def test_a_grouped_payload_of_three_alerts_for_two_hosts_is_three_incidents(grouped_serve: servectl.Serve) -> None:
    serve = grouped_serve
    planned = serve.wait(lambda: (lambda found: found if all(i["plan_diff"] for i in found) else None)(serve.incidents()),
                         90, "three plans")
    by_print = {i["fingerprint"]: i for i in planned}
    assert {i["state"] for i in planned} == {"pending"}
    assert by_print["a1"]["host"] == by_print["a2"]["host"] == "ec2-mx"
    assert by_print["a3"]["host"] == "ec2-mx-hardened"
    assert "/opt/mailserver/docker-compose.yml" in by_print["a1"]["plan_diff"]
    assert "/opt/mailserver-hardened/docker-compose.yml" in by_print["a3"]["plan_diff"]
    assert labctl.sha256(labctl.COMPOSE_FILE) == labctl.sha256(labctl.PRISTINE_COMPOSE)
