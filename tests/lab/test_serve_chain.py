"""The whole alert chain, real parts only: Postfix's bounces, in its log, counted by prometheus-postfix-exporter,
scraped by Prometheus, whose rule fires, routed by Alertmanager to `remediate serve`, approved with the CLI, applied
over SSH, and closed by Alertmanager's own `resolved`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import labctl, servectl


@pytest.fixture
def chain(broken_lab: None) -> Iterator[None]:
    """The broken lab, and a fresh chain (new Prometheus and Alertmanager state, so the alert fires anew)."""
    servectl.chain("up")
    yield
    servectl.chain("down")


def rules(playbook: str, **extra: str) -> str:
    lines = [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(["rules:", "  - name: mail-not-delivered", "    match: {alertname: PostfixMailNotDelivered}",
                      f"    playbook: {playbook}", "    host_label: instance", *lines]) + "\n"


def test_alert_to_approval_to_fix_to_resolved(chain: None, tmp_path: Path) -> None:
    serve = servectl.Serve(rules("smtp-to-lmtp", approval="required", resolve_timeout="3m"), tmp_path / "serve").start()
    oncall = tmp_path / "oncall.token"  # the on-call engineer's own token: the approval is theirs
    oncall.write_text(serve.person("oncall"))
    oncall.chmod(0o600)
    try:
        # 1-2. the alert fires, and serve shows a pending incident with the plan's diff
        pending = serve.wait(lambda: [i for i in serve.incidents() if i["state"] == "pending" and i["plan_diff"]],
                             120, "a pending incident with a plan")[0]
        assert pending["alertname"] == "PostfixMailNotDelivered" and pending["host"] == "ec2-mx"
        assert "-      - RELAYHOST=[127.0.0.11]:2525" in pending["plan_diff"]
        assert "+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525" in pending["plan_diff"]
        assert labctl.sha256(labctl.COMPOSE_FILE) == labctl.sha256(labctl.PRISTINE_COMPOSE)  # the plan changed nothing
        # 3. approve it, with the CLI, as the on-call engineer would
        approved = subprocess.run([str(Path(sys.executable).parent / "remediate"), "approve", str(pending["id"]),
                                   "--server", servectl.URL, "--token-file", str(oncall)],
                                  capture_output=True, text=True, env=os.environ)
        assert approved.returncode == 0 and "running" in approved.stdout, approved.stdout + approved.stderr
        assert "approved by oncall" in approved.stdout, approved.stdout
        # 4-6. apply fixes the lab, Alertmanager sends resolved, the incident is resolved
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 240)
        assert done["state"] == "resolved", done
        servectl.fixed_and_resolved(done, "received", "matched", "planned", "approved", "run started")
        records = servectl.run_records(Path(os.environ["XDG_STATE_HOME"]))
        assert [r["outcome"] for r in records] == ["applied"] and records[0]["run_id"] == done["run_id"]
        assert labctl.COMPOSE_FILE.read_bytes() == labctl.fixed_compose()
        assert not [a for a in servectl.alertmanager_alerts() if a["labels"]["alertname"] == "PostfixMailNotDelivered"]
    finally:
        serve.stop()


def test_an_ineffective_fix_is_rolled_back_at_the_deadline_and_failed(chain: None, tmp_path: Path) -> None:
    playbook = servectl.DATA / "ineffective.yml"
    serve = servectl.Serve(rules(str(playbook), approval="auto", resolve_timeout="20s", on_unresolved="rollback"),
                           tmp_path / "serve").start()
    serve.person("oncall")
    try:
        first = serve.wait(lambda: [i for i in serve.incidents() if i["state"] != "ignored"], 120, "an incident")[0]
        waiting = serve.wait_state(first["id"], {"waiting_resolved", "failed", "rolled_back"}, 120)
        assert waiting["state"] == "waiting_resolved", waiting
        assert b"POSTFIX_smtp_helo_timeout=61s" in labctl.COMPOSE_FILE.read_bytes()
        done = serve.wait_state(first["id"], {"failed", "resolved"}, 120)
        assert done["state"] == "failed" and "still firing at the deadline" in done["reason"], done
        assert "rolled back" in done["reason"]
        assert labctl.sha256(labctl.COMPOSE_FILE) == labctl.sha256(labctl.PRISTINE_COMPOSE)  # byte for byte
        assert [a for a in servectl.alertmanager_alerts() if a["labels"]["alertname"] == "PostfixMailNotDelivered"]
    finally:
        serve.stop()
