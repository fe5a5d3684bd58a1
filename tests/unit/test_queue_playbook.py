"""playbooks/queue-flush.yml through the command line, at the transport seam: the plan shows the flush and the queue
ids, refuses (exit 1, nothing run) while the next hop does not answer, and a bad variable is refused with its place."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from remediate import api as session
from remediate.cli import main as cli
from remediate.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from remediate.inputs.search_path import PATH_ENV

from .test_queue_flush_kind import FLUSH, IDS, NOW, Gateway, stuck

INVENTORY = ("all:\n  hosts:\n    mx:\n      ansible_host: 192.0.2.3\n      postfix_container: mx-postfix\n"
             "      next_hop_address: 127.0.0.28\n")


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PATH_ENV, raising=False)
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    return path


def invoke(host: Gateway, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(session, "ssh_factory", lambda opts, emit, pw: (lambda h: host))
    result = CliRunner().invoke(cli.cli, list(args))
    return result.exit_code, result.output


def test_the_plan_shows_the_flush_and_every_queue_id(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Gateway(stuck())
    code, out = invoke(host, monkeypatch, "plan", "-p", "queue-flush", "--host", "mx", "-i", str(inventory))
    assert code == EXIT_CHANGES, out
    assert "docker exec -- mx-postfix postqueue -f" in out and all(qid in out for qid in IDS), out
    assert "changes no file" in out
    assert shlex.join(FLUSH) not in host.ran


def test_the_plan_refuses_while_the_next_hop_is_down(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = Gateway(stuck(), hop=ConnectionRefusedError("[Errno 111] Connection refused"))
    code, out = invoke(host, monkeypatch, "plan", "-p", "queue-flush", "--host", "mx", "-i", str(inventory))
    assert code == EXIT_ERROR, out
    assert "refusing to flush: next hop 127.0.0.28:2525 (lmtp) does not answer" in " ".join(out.split()), out
    assert shlex.join(FLUSH) not in host.ran


def test_an_empty_queue_plans_nothing(inventory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = invoke(Gateway([]), monkeypatch, "plan", "-p", "queue-flush", "--host", "mx", "-i", str(inventory))
    assert code == EXIT_OK and "nothing to flush" in out, out


@pytest.mark.parametrize(("var", "said"), [
    ("next_hop_port=abc", "step 'flush': parameter 'next_hop_port' must be a number, not str ('abc')"),
    ("next_hop_protocol=imap", "step 'flush': next_hop_protocol must be lmtp or smtp, not 'imap'"),
    ("drain_timeout=0", "step 'flush': timeout must be 1 or more, not 0"),
    ("next_hop_prot=smtp", "-e next_hop_prot: nothing reads this variable"),
])
def test_a_bad_variable_is_refused_before_any_command(inventory: Path, monkeypatch: pytest.MonkeyPatch, var: str,
                                                      said: str) -> None:
    host = Gateway(stuck())
    code, out = invoke(host, monkeypatch, "plan", "-p", "queue-flush", "--host", "mx", "-i", str(inventory), "-e", var)
    assert code == EXIT_ERROR and said in " ".join(out.split()), out
    assert "queue-flush.yml:" in out or "nothing reads" in out
    assert host.ran == []


def test_remediate_playbooks_lists_it() -> None:
    out = CliRunner().invoke(cli.cli, ["playbooks"]).output
    assert "queue-flush: Deliver the mail Postfix deferred while its LMTP next hop was down" in out, out


def test_a_plan_saved_now_is_the_plan_a_minute_later(inventory: Path, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """apply PLANFILE (and serve, which applies the plan people approved) refuses a host whose plan's identity
    changed: the same deferred mail, listed by postqueue in another order a minute later, is the same plan."""
    host = Gateway(stuck())
    identities = []
    for clock in (NOW, NOW + 61):
        host.clock, host.held = clock, host.held[::-1]
        saved = tmp_path / f"plan-{clock}.json"
        code, out = invoke(host, monkeypatch, "plan", "-p", "queue-flush", "--host", "mx", "-i", str(inventory),
                           "--out", str(saved))
        assert code == EXIT_CHANGES, out
        identities.append(json.loads(saved.read_text())["plans"]["mx"]["identity"])
    assert identities[0] == identities[1]
