"""Rough edges a new user hit (issue 15): plain rows in a pipe, JSON everywhere with --json, pasteable next steps."""

from __future__ import annotations

import io
import json
import subprocess
from collections import Counter
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from remediate.api import Diagnosis
from remediate.cli import main as cli
from remediate.cli.render import HumanRenderer
from remediate.diagnostics import Facts, diagnose
from remediate.diagnostics.iac import drift
from remediate.engine import journal
from remediate.transport.local import LocalTransport


def test_runs_in_a_pipe_prints_one_plain_line_per_run() -> None:
    (journal.runs_dir() / "r.h1.json").write_text(json.dumps({
        "run_id": "20261129T010101Z-abcdef", "host": "h1", "started": "2026-11-29T01:01:01+00:00", "operator": "me@box",
        "playbook": "smtp-to-lmtp", "steps": [{"id": "a", "state": "verified"}], "outcome": "applied"}))
    result = CliRunner().invoke(cli.cli, ["runs"])
    lines = result.output.splitlines()
    assert lines[0].split("\t")[:2] == ["run_id", "started"]
    assert [line for line in lines if "applied" in line][0].startswith("20261129T010101Z-abcdef\t")


def test_usage_errors_are_json_with_json() -> None:
    done = subprocess.run(["remediate", "plan", "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    event = json.loads(done.stdout.splitlines()[-1])
    assert event["event"] == "error" and "--host" in event["message"]


def test_the_suggested_next_command_can_be_pasted() -> None:
    out = io.StringIO()
    render = HumanRenderer(Console(file=out, width=200), Console(file=io.StringIO()))
    check = diagnose.Check("relayhost-unused", False, "RELAYHOST=[10.0.0.5]:2525", "smtp-to-lmtp")
    signature = diagnose.Signature("protocol-mismatch", "SMTP spoken to an LMTP server", count=2,
                                   domains=Counter({"a.com": 2}))
    render.diagnosis(Diagnosis("gw", [check], [signature], []), "-i /etc/remediate/hosts.yml")
    text = out.getvalue()
    assert "remediate plan --host gw -p smtp-to-lmtp -i /etc/remediate/hosts.yml" in text
    assert "domains a.com (2)" in text and "{" not in text


def test_iac_agreeing_on_the_broken_value_is_not_a_tick(tmp_path: Path) -> None:
    user_data = tmp_path / "user_data.sh"
    user_data.write_text("cat > /opt/m/docker-compose.yml <<'C'\n      - RELAYHOST=[10.0.0.5]:2525\nC\n")
    check = drift(Facts(LocalTransport(name="gw"), LocalTransport(name="local")), str(user_data), "[10.0.0.5]:2525",
                  "", "")
    assert check.ok is False and "both still relay with RELAYHOST" in check.evidence


def test_validate_checks_without_connecting_and_playbooks_lists_the_shipped_ones(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    gw:\n      ansible_host: 192.0.2.1\n")  # never contacted
    result = CliRunner().invoke(cli.cli, ["validate", "-i", str(inv), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["message"] == "valid"
    inv.write_text("all:\n  hosts:\n    gw:\n      lmtp_port: not-a-port\n")
    result = CliRunner().invoke(cli.cli, ["validate", "-i", str(inv)])
    assert result.exit_code == 1 and "lmtp_port" in result.output
    result = CliRunner().invoke(cli.cli, ["playbooks", "--json"])
    books = {e["playbook"]: e for e in map(json.loads, result.output.splitlines())}
    assert {"smtp-to-lmtp", "toy"} <= set(books) and books["smtp-to-lmtp"]["vars"]["lmtp_port"] == 2525


def test_shell_completion_knows_hosts_playbooks_and_runs(tmp_path: Path) -> None:
    import os
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    ec2-mx: {}\n    dell: {}\n  children:\n    gateways:\n      hosts:\n        ec2-mx:\n")
    (journal.runs_dir() / "r.json").write_text(json.dumps({"run_id": "20261129T020202Z-123456", "host": "ec2-mx",
                                                           "steps": [], "outcome": "applied"}))

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_REMEDIATE_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
        done = subprocess.run(["remediate"], capture_output=True, text=True, env=env, timeout=60)
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete(f"remediate plan -i {inv} --host e") == ["ec2-mx"]
    assert complete(f"remediate plan -i {inv} --host g") == ["gateways"]
    assert "smtp-to-lmtp" in complete("remediate apply -p s")
    assert complete("remediate rollback --run 2026") == ["20261129T020202Z-123456"]


def test_inventory_shows_groups_and_where_each_variable_came_from() -> None:
    corpus = Path(__file__).resolve().parents[1] / "corpus" / "ansible"
    result = CliRunner().invoke(cli.cli, ["inventory", "-i", str(corpus / "hosts.ini"), "--host", "mx-eu.example.net",
                                          "--json"])
    host = json.loads(result.output)
    assert host["port"] == 2200 and host["vars"]["ansible_user"]["from"].endswith("hosts.ini:6)")
    assert host["vars"]["remove_relay_domains"]["from"].startswith("group mail (") and host["vars"]["ansible_user"]["value"] == "deploy"
    result = CliRunner().invoke(cli.cli, ["inventory", "-i", str(corpus / "hosts.yml"), "--graph", "--json"])
    groups = {e["group"]: e["hosts"] for e in map(json.loads, result.output.splitlines())}
    assert groups["mailbox"] == ["dell"] and "mx02.example.net" in groups["mail"]


def test_a_saved_plan_keeps_no_secret_and_asks_for_it_again() -> None:
    from remediate import redact
    from remediate.engine import planfile
    from remediate.errors import InputError
    doc = {"extra": redact.without_secret_values({"db_password": "hunter2", "lmtp_port": 2526})}
    assert doc["extra"]["db_password"] == redact.MASK
    import pytest
    with pytest.raises(InputError, match="db_password is a secret, masked in the plan file"):
        planfile.extra(doc, {})
    assert planfile.extra(doc, {"db_password": "hunter2"}) == {"db_password": "hunter2", "lmtp_port": 2526}
    with pytest.raises(InputError, match="part of what was reviewed"):
        planfile.extra(doc, {"lmtp_port": 2525})


def test_runs_on_an_80_column_terminal_keeps_one_line_per_run_and_whole_headers() -> None:
    row = {"run_id": "20261129T134908Z-fd76a9", "started": "2026-11-29T13:49:08+00:00", "operator": "root@vm",
           "host": "ec2-mx-hardened", "playbook": "smtp-to-lmtp", "steps": "4/7", "outcome": "rollback-incomplete"}
    out = io.StringIO()
    HumanRenderer(Console(file=out, width=80, force_terminal=True, color_system=None)).table("run", [row, row])
    lines = out.getvalue().splitlines()
    assert any(line.split() == ["run_id", "host", "outcome"] for line in lines), lines
    assert sum("20261129T134908Z-fd76a9" in line and "rollback-incomplete" in line for line in lines) == 2
    assert all(len(line) <= 80 for line in lines)
