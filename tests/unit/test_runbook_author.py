"""A runbook author's first hour (issue #25): each rough edge an author met, with the message they got."""

from __future__ import annotations

import json
import re
import shlex
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from remediate import cli, session
from remediate.context import Context, TransportPool
from remediate.errors import StepError
from remediate.inventory import Host
from remediate.plan import NOTHING_APPLIED
from remediate.probes import waiting
from remediate.steps import StepSpec, postfix_config

from .fakes import FakeTransport

PATH_ENV = "REMEDIATE_PLAYBOOK_PATH"  # the runbook search path: colon-separated folders, searched before the shipped
COMPOSE = "/opt/mx/docker-compose.yml"
#: The author's own runbook: a message size limit, with a diagnose check that names it as the fix.
MESSAGE_SIZE = """\
name: message-size
description: Raise Postfix's message size limit.
vars:
  size_limit: 52428800
  postfix_container: mx
steps:
  - id: limit
    kind: file
    params: {path: /etc/size-limit, content: "{{ size_limit }}\\n"}
diagnose:
  - id: size-limit
    check: postfix-setting
    fix: message-size
    params:
      container: "{{ postfix_container }}"
      compose_path: /opt/mx/docker-compose.yml
      service: postfix
      setting: message_size_limit
      expect: {equals: "{{ size_limit }}"}
"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def mx3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, FakeTransport]:
    """An inventory with mx3, a host whose compose file sets a 10 MB limit and whose Postfix container is stopped
    (diagnose then reads the compose file); the working folder is tmp_path, holding the inventory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PATH_ENV, raising=False)
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    mx3:\n      ansible_host: 192.0.2.3\n")
    fake = FakeTransport(name="mx3")
    fake.put(COMPOSE, "services:\n  postfix:\n    image: boky/postfix\n    environment:\n"
                      "      - POSTFIX_message_size_limit=10240000\n")
    fake.put("/etc/size-limit", "10240000\n")
    fake.expect(["docker", "inspect", "--type", "container", "--", "mx"],
                (0, json.dumps([{"State": {"Running": False, "Status": "exited"}}]), ""))
    monkeypatch.setattr(session, "ssh_factory", lambda opts, emit, pw: (lambda host: fake))
    return inv, fake


def next_command(out: str) -> list[str]:
    """The command diagnose proposes, as a shell would split it (without the leading `remediate`)."""
    found = re.search(r"next: (remediate plan .*)", out)
    assert found, out
    return shlex.split(found.group(1))[1:]


# 6. A verification whose running value stays wrong says so early, and what overrides it.

def test_a_setting_that_stays_wrong_is_reported_early_with_what_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postfix_config, "SETTLED", waiting.Stalled(reads=3, seconds=0.5))
    fake = FakeTransport(name="mx3")
    fake.put(COMPOSE, "services:\n  postfix:\n    image: boky/postfix\n    environment:\n"
                      "      - POSTFIX_message_size_limit=52428800\n      - MESSAGE_SIZE_LIMIT=10240000\n")
    fake.expect(["docker", "exec", "--", "mx", "sh", "-c", 'postconf -h "$@" && echo --- && postconf -dh "$@"', "sh",
                 "message_size_limit"], (0, "10240000\n---\n10240000\n", ""))
    step = postfix_config.PostfixConfig(StepSpec(id="effective", kind="postfix-config", target="host", params={
        "container": "mx", "compose_path": COMPOSE, "service": "postfix", "keys": ["message_size_limit"]}))
    ctx = Context(host=Host(name="mx3", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: fake))
    started = time.monotonic()
    with pytest.raises(StepError) as e:
        step.verify(ctx, step.check(ctx), NOTHING_APPLIED)
    assert time.monotonic() - started < 10, "it waited out the 60 s"
    text = str(e.value)
    assert "message_size_limit is '10240000', expected '52428800'" in text and "the same in 3 reads" in text, text
    assert "MESSAGE_SIZE_LIMIT=10240000" in text and "remove it" in text, text
