"""A runbook author's first hour (issue #25): each rough edge an author met, with the message they got."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from remediate import api as session
from remediate.cli import main as cli
from remediate.contract.plan import NOTHING_APPLIED
from remediate.engine.context import Context, TransportPool
from remediate.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, InputError, StepError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec, postfix_config
from remediate.probes import waiting
from remediate.transport import FileState

from .conftest import BOOK
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


@pytest.fixture
def h1(setup: tuple[Path, Path, FakeTransport]) -> tuple[Path, Path, FakeTransport]:
    """One host whose /etc/app.conf a one-step playbook rewrites (tests/unit/conftest.py)."""
    return setup


def next_command(out: str) -> list[str]:
    """The command diagnose proposes, as a shell would split it (without the leading `remediate`)."""
    found = re.search(r"next: (remediate plan .*)", out)
    assert found, out
    return shlex.split(found.group(1))[1:]


# 1. Runbooks have a search path ($REMEDIATE_PLAYBOOK_PATH, then the shipped ones), and diagnose's next: works.

def test_diagnose_of_your_own_runbook_proposes_a_command_that_works_as_printed(mx3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, fake = mx3
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "message-size.yml").write_text(MESSAGE_SIZE)
    code, out = invoke("diagnose", "--host", "mx3", "-i", "inventory.yml", "-p", "runbooks/message-size.yml")
    assert code == EXIT_FINDINGS, out
    again = next_command(out)
    assert again[again.index("-p") + 1] == "runbooks/message-size.yml", out  # not on the search path: its path
    code, out = invoke(*again)
    assert code == EXIT_CHANGES, out
    assert "+52428800" in out


def test_a_folder_on_the_search_path_is_searched_by_name_by_every_command(mx3, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    inv, fake = mx3
    runbooks = tmp_path / "site-runbooks"
    runbooks.mkdir()
    (runbooks / "message-size.yml").write_text(MESSAGE_SIZE)
    (runbooks / "inventory.yml").write_text("all:\n  hosts: {}\n")  # not a playbook: never listed
    monkeypatch.setenv(PATH_ENV, f"{tmp_path / 'missing'}:{runbooks}")
    assert playbook.locate("message-size") == runbooks / "message-size.yml"
    assert [b.name for b in session.diagnosed_playbooks(None)] == ["message-size", "queue-flush", "relay-access",
                                                                       "smtp-to-lmtp", "tls-reload"]
    code, out = invoke("diagnose", "--host", "mx3", "-i", "inventory.yml", "-p", "message-size")
    assert code == EXIT_FINDINGS, out
    again = next_command(out)
    assert again[again.index("-p") + 1] == "message-size", out
    code, out = invoke(*again)
    assert code == EXIT_CHANGES, out
    code, out = invoke("playbooks", "--json")
    books = {e["playbook"]: e for e in map(json.loads, out.splitlines())}
    assert code == EXIT_OK and books["message-size"]["path"] == str(runbooks / "message-size.yml"), out
    assert {"toy", "smtp-to-lmtp", "relay-access"} <= set(books) and "inventory" not in books
    assert books["toy"]["shipped"] and not books["message-size"]["shipped"]


def test_your_folders_come_before_the_shipped_playbooks_and_say_what_they_hide(mx3, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    inv, fake = mx3
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "toy.yml").write_text(MESSAGE_SIZE.replace("name: message-size", "name: toy"))
    monkeypatch.setenv(PATH_ENV, str(runbooks))
    assert playbook.locate("toy") == runbooks / "toy.yml"
    code, out = invoke("playbooks", "--json")
    toy = [e for e in map(json.loads, out.splitlines()) if e["playbook"] == "toy"]
    assert len(toy) == 1 and toy[0]["shadows"] == [str(playbook.shipped_folder() / "toy.yml")]
    code, out = invoke("plan", "--host", "mx3", "-i", "inventory.yml", "-p", "toy")
    assert code == EXIT_CHANGES and f"using {runbooks / 'toy.yml'}" in out and "not the shipped" in out, out


def test_fix_may_name_a_path_from_the_playbooks_own_folder(mx3, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "fixes").mkdir()
    (tmp_path / "fixes" / "raise-limit.yml").write_text(MESSAGE_SIZE.split("diagnose:")[0])
    (tmp_path / "checks.yml").write_text(MESSAGE_SIZE.replace("fix: message-size", "fix: fixes/raise-limit.yml"))
    code, out = invoke("diagnose", "--host", "mx3", "-i", "inventory.yml", "-p", "checks.yml")
    assert code == EXIT_FINDINGS, out
    again = next_command(out)
    assert again[again.index("-p") + 1] == "fixes/raise-limit.yml"
    assert invoke(*again)[0] == EXIT_CHANGES


# 2. validate checks the diagnose: section: parameters, expectations, and the playbook fix: names.

@pytest.mark.parametrize(("change", "line", "words"), [
    (("      setting: message_size_limit", "      settng: message_size_limit"), 18,
     "has no parameter 'settng'\n  hint: did you mean 'setting'?"),
    (("fix: message-size", "fix: mesage-size"), 13, "fix: 'mesage-size' names no playbook"),
    (("fix: message-size", "fix: no-such-playbook"), 13, "names no playbook, neither beside"),
    (("expect: {equals:", "expect: {equal:"), 14, "expect must hold exactly one of empty, equals"),
    (("    params: {path", "    params: {pth"), 9, "has no parameter 'pth'\n  hint: did you mean 'path'?"),
])
def test_validate_refuses_a_bad_diagnose_section_at_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             change: tuple[str, str], line: int, words: str) -> None:
    monkeypatch.delenv(PATH_ENV, raising=False)
    book = tmp_path / "message-size.yml"
    book.write_text(MESSAGE_SIZE.replace(*change))
    code, out = invoke("validate", "-p", str(book))
    assert code == EXIT_ERROR, out
    assert f"{book}:{line}: " in out and words in out, out


def test_a_misspelt_fix_is_told_the_nearest_playbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PATH_ENV, raising=False)
    book = tmp_path / "message-size.yml"
    book.write_text(MESSAGE_SIZE.replace("fix: message-size", "fix: relay-acess"))
    with pytest.raises(InputError, match="did you mean 'relay-access'"):
        session.validate(str(book), None, ())
    book.write_text(MESSAGE_SIZE)
    assert f"; fixed by {book}" in session.validate(str(book), None, ())[-1]  # not message-size: -p would not find it


# 3. remediate checks [NAME], as remediate kinds.

def test_remediate_checks_lists_the_check_types_and_shows_one_with_an_example() -> None:
    code, out = invoke("checks")
    assert code == EXIT_OK and re.search(r"^postfix-setting +One Postfix setting.*\(remediate \d", out, re.M), out
    assert "log-signature" in out and "user-data-agrees" in out
    code, out = invoke("checks", "postfix-setting")
    assert code == EXIT_OK, out
    assert "setting (string, required): the Postfix parameter" in out and "covers_rejected (string, optional)" in out
    assert "check: postfix-setting" in out and "    setting: <string>" in out
    code, out = invoke("checks", "--json")
    types = {e["check"]: e for e in map(json.loads, out.splitlines())}
    assert types["postfix-setting"]["event"] == "check_type" and {"container-running", "relay-target"} <= set(types)
    code, out = invoke("checks", "postfix-seting")
    assert code == EXIT_ERROR and "did you mean 'postfix-setting'?" in out


# 4. docs/writing-kinds.md says where StepError and InputError come from, and what `current` is.

def test_writing_kinds_says_where_to_import_from_and_what_current_holds() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "writing-kinds.md").read_text()
    assert "from remediate.errors import InputError, StepError" in doc
    assert "remediate.transport.FileState" in doc
    for f in dataclasses.fields(FileState):
        assert f"`{f.name}`" in doc, f.name


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
        step.verify(ctx, step.plan(ctx), NOTHING_APPLIED)
    assert time.monotonic() - started < 10, "it waited out the 60 s"
    text = str(e.value)
    assert "message_size_limit is '10240000', expected '52428800'" in text and "the same in 3 reads" in text, text
    assert "MESSAGE_SIZE_LIMIT=10240000" in text and "remove it" in text, text


# 7. Smaller ones.

def test_a_second_rollback_has_nothing_to_do_and_exits_0(h1) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = h1
    assert invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))[0] == EXIT_OK
    code, out = invoke("rollback", "--yes", "--host", "h1", "-i", str(inv))
    assert code == EXIT_OK and fake.files["/etc/app.conf"].content == b"old\n", out
    code, out = invoke("rollback", "--yes", "--host", "h1", "-i", str(inv))
    assert code == EXIT_OK, out
    assert "nothing to roll back" in out and "already rolled back" in out


def test_a_no_op_apply_ends_with_run_finished(h1) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = h1
    code, out = invoke("apply", "--yes", "--json", "--host", "h1", "-i", str(inv), "-p", str(book), "-e", "wanted=old")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == EXIT_OK and [e["event"] for e in events][-2:] == ["run_finished", "summary"], out
    assert events[-2]["outcome"] == "no-op" and events[-2]["exit_code"] == 0


def test_show_calls_a_saved_plan_a_saved_plan_not_a_run(h1, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = h1
    saved = tmp_path / "fix.plan"
    assert invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book), "--out", str(saved))[0] == EXIT_CHANGES
    code, out = invoke("show", str(saved))
    assert code == EXIT_OK and "saved plan" in out and "+new" in out, out
    assert "(run " not in out and "run plan" not in out, out


def test_one_host_failing_is_not_a_rollout_stopped(h1) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = h1
    book.write_text(BOOK + "  - id: probe\n    kind: command\n"
                           "    params: {command: [probe], creates: /etc/never, undo: [\"true\"]}\n")
    fake.expect(["probe"], (7, "", "503"))
    fake.expect(["true"])
    code, out = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_ERROR and "every applied step was rolled back" in out, out
    assert "rollout stopped" not in out and "not started: none" not in out, out


def test_remediate_kinds_names_the_package_of_every_kind() -> None:
    code, out = invoke("kinds")
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert code == EXIT_OK and re.search(r"\(remediate \d+\.\d+", lines["file"]), out
    assert all("(" in line for line in lines.values())


# 8. The newcomer's items.

def test_a_mistyped_extra_variable_is_refused_with_the_nearest_name(h1, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = h1
    book = book.with_name("message-size.yml")  # diagnose's fix: names it
    book.write_text(BOOK.replace("{{ wanted }}", "port={{ lmtp_port }}") + "vars:\n  lmtp_port: 2525\n")
    for command in (["plan", "--host", "h1", "-i", str(inv)], ["validate"], ["diagnose", "--host", "h1", "-i", str(inv)]):
        if command[0] == "diagnose":
            book.write_text(MESSAGE_SIZE.replace("{{ size_limit }}\\n", "{{ size_limit }}\\n{{ lmtp_port }}") +
                            "  - id: up\n    check: container-running\n    params: {container: \"{{ lmtp_port }}x\"}\n")
        code, out = invoke(*command, "-p", str(book), "-e", "lmtp_prot=2526")
        assert code == EXIT_ERROR and "-e lmtp_prot: nothing reads this variable" in out, (command, out)
        assert "did you mean 'lmtp_port'?" in out and "--allow-unused-vars" in out
    assert fake.ran == [] and fake.writes == []
    book.write_text(BOOK.replace("{{ wanted }}", "port={{ lmtp_port }}") + "vars:\n  lmtp_port: 2525\n")
    code, out = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book), "-e", "lmtp_prot=2526",
                       "--allow-unused-vars")
    assert code == EXIT_CHANGES and "+port=2525" in out, out
    code, out = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book), "-e", "wanted=x")  # the inventory's
    assert code == EXIT_CHANGES, out


def test_kinds_with_a_typo_says_did_you_mean() -> None:
    code, out = invoke("kinds", "flie")
    assert code == EXIT_ERROR and "no step kind named 'flie'" in out and "did you mean 'file'?" in out


def test_kinds_shows_no_default_none_for_a_param_without_default() -> None:
    code, out = invoke("kinds", "file")
    assert code == EXIT_OK and "None" not in out, out
    assert re.search(r"^  path \(string, required\)", out, re.M) and re.search(r"^  mode \(string, optional\)", out, re.M)


def test_playbook_completion_offers_playbooks_not_inventories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PATH_ENV, raising=False)
    (tmp_path / "inventory.example.yml").write_text("all:\n  hosts:\n    mx: {}\n")
    (tmp_path / "vars.yml").write_text("lmtp_port: 2525\n")
    (tmp_path / "message-size.yml").write_text(MESSAGE_SIZE)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "relay.yaml").write_text(MESSAGE_SIZE)
    offered: Any = cli.complete_playbooks(None, None, "")  # type: ignore[arg-type]
    assert "message-size.yml" in offered and "toy" in offered
    assert "inventory.example.yml" not in offered and "vars.yml" not in offered
    assert cli.complete_playbooks(None, None, "runbooks/") == ["runbooks/relay.yaml"]  # type: ignore[arg-type]
