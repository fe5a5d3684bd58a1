"""compose-env: set, unset, rename, list-add and list-remove, each where compose reads the variable."""

from __future__ import annotations

from typing import Any

import pytest

from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec
from remediate.kinds.compose_env import ComposeEnv
from remediate.mail import resolve
from remediate.transport import FileState

from .fakes import FakeTransport

ROOT = "/srv/app"
COMPOSE = ("services:\n  postfix:\n    image: boky/postfix\n    env_file: mail.env\n    environment:\n"
           "      - ALLOWED_SENDER_DOMAINS=example.com\n      - POSTFIX_mynetworks=127.0.0.0/8, 10.0.0.0/24  # apps\n")
ENV_FILE = "OLD_NAME=keep-me\nPOSTFIX_relay_domains=a.com b.com\n"


def run(params: dict[str, Any], image: str = "boky/postfix") -> tuple[Any, dict[str, str | None]]:
    t = FakeTransport(name="gw")
    t.put(f"{ROOT}/docker-compose.yml", COMPOSE.replace("boky/postfix", image))
    t.put(f"{ROOT}/mail.env", ENV_FILE)
    ctx = Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: t))
    step = ComposeEnv(StepSpec(id="env", kind="compose-env", target="host",
                               params={"path": f"{ROOT}/docker-compose.yml", "service": "postfix", **params}))
    plan = step.plan(ctx)
    files = dict(t.files)
    files.update({f.path: FileState(f.path, f.after, 0o644, 0, 0) for f in plan.files})
    return plan, resolve.read(files.get, f"{ROOT}/docker-compose.yml", "postfix").resolved()


def test_list_add_keeps_the_separator_and_the_comment() -> None:
    plan, env = run({"list-add": {"POSTFIX_mynetworks": ["127.0.0.14/32"]}})
    assert env["POSTFIX_mynetworks"] == "127.0.0.0/8, 10.0.0.0/24, 127.0.0.14/32"
    assert "      - POSTFIX_mynetworks=127.0.0.0/8, 10.0.0.0/24, 127.0.0.14/32  # apps\n" in plan.files[0].after.decode()
    again, _ = run({"list-add": {"POSTFIX_mynetworks": ["10.0.0.0/24"]}})
    assert not again.changed


def test_edits_land_where_compose_reads_each_variable() -> None:
    plan, env = run({"list-remove": {"POSTFIX_relay_domains": ["b.com"]}, "rename": {"OLD_NAME": "NEW_NAME"},
                     "set": {"POSTFIX_myhostname": "mx.example.com"}, "unset": ["ALLOWED_SENDER_DOMAINS"]})
    assert sorted(f.path for f in plan.files) == [f"{ROOT}/docker-compose.yml", f"{ROOT}/mail.env"]
    assert env["POSTFIX_relay_domains"] == "a.com" and env["NEW_NAME"] == "keep-me" and "OLD_NAME" not in env
    assert env["POSTFIX_myhostname"] == "mx.example.com" and "ALLOWED_SENDER_DOMAINS" not in env


def test_the_contract_is_checked_only_when_asked() -> None:
    plan, _ = run({"set": {"X": "1"}}, image="nginx")
    assert plan.changed
    with pytest.raises(InputError, match="not known to follow boky/postfix's environment contract"):
        run({"set": {"X": "1"}, "require_contract": True}, image="nginx")


def test_a_step_that_asks_for_nothing_is_refused() -> None:
    with pytest.raises(InputError, match="needs at least one of"):
        run({})


def test_list_add_to_an_unset_variable_is_refused_rather_than_replacing_the_image_default() -> None:
    from remediate.errors import StepError
    with pytest.raises(StepError, match="POSTFIX_inet_protocols is not set .* adding would replace it"):
        run({"list-add": {"POSTFIX_inet_protocols": ["ipv6"]}})
