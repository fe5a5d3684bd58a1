"""Trust findings at the unit level: masking, booleans, password keys, alias bombs, escapes, templates, --run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remediate import redact
from remediate import yamlin as source
from remediate.cli.render import visible
from remediate.engine import journal
from remediate.errors import InputError
from remediate.inputs import inventory
from remediate.inputs.templates import render_command


def test_masking_never_shows_where_a_secret_stood() -> None:
    redact.register("mail")
    try:
        shown = redact.text("restored /tmp/adv-mailserver/app.conf (ok)")
        assert "mail" not in shown and "adv-" not in shown and shown == "restored ******** (ok)"
    finally:
        redact._known.discard("mail")


def test_journal_variables_keep_values_exact_and_leave_secret_keys_out() -> None:
    stored = redact.without_secret_values({"path": "/tmp/adv-mailserver/app.conf", "db_password": "hunter2",
                                            "ansible_ssh_pass": "x"})
    assert stored == {"path": "/tmp/adv-mailserver/app.conf", "db_password": redact.MASK, "ansible_ssh_pass": redact.MASK}


@pytest.mark.parametrize("key", ["ansible_password", "ansible_ssh_pass", "ansible_become_pass", "ansible_sudo_pass",
                                 "ansible_become_password"])
def test_every_ansible_password_key_is_refused_as_a_literal(tmp_path: Path, key: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(f"all:\n  hosts:\n    h1:\n      {key}: hunter2\n")
    with pytest.raises(InputError, match=key) as e:
        inventory.load(path)
    assert "hunter2" not in str(e.value)


def test_prompt_is_the_one_value_a_become_password_key_takes(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h1:\n      ansible_become_pass: prompt\n")
    host = inventory.load(path).hosts["h1"]
    assert host.become_password_prompt and "ansible_become_pass" not in host.vars


def test_a_boolean_is_not_a_port(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h1:\n      ansible_port: true\n")
    with pytest.raises(InputError, match="ansible_port must be a number"):
        inventory.load(path)


def test_an_alias_bomb_is_refused_at_once() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi"):
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    assert len(bomb) < 600
    with pytest.raises(InputError, match="alias bomb"):
        source.parse(bomb.encode(), "bomb.yml", what="compose file")


def test_control_characters_are_shown_not_obeyed() -> None:
    assert visible("x\x1b[2Jy\tz\n\x07") == "x^[[2Jy\tz\n^G"


def test_one_variable_is_one_argument_and_never_shell_syntax() -> None:
    values = {"msg": "x; touch /tmp/PWNED", "dir": "/tmp/victim /tmp/x", "q": "it's"}
    assert render_command("rm -f {{ dir }}/stale.pid", values.__getitem__, "w") == ["rm", "-f", "/tmp/victim /tmp/x/stale.pid"]
    assert render_command("sh -c 'grep -q {{ msg }} {{ dir }}/out'", values.__getitem__, "w") == [
        "sh", "-c", 'grep -q "${1}" "${2}"/out', "sh", "x; touch /tmp/PWNED", "/tmp/victim /tmp/x"]
    assert render_command("echo {{ q }}", values.__getitem__, "w") == ["echo", "it's"]
    with pytest.raises(InputError, match="inside single quotes"):
        render_command("""sh -c "echo '{{ q }}'" """, values.__getitem__, "w")


def test_run_ids_are_exact_or_a_long_enough_unique_prefix(tmp_path: Path) -> None:
    runs = journal.runs_dir()
    for run_id in ("20261129T010101Z-aaaaaa", "20261129T010101Z-bbbbbb"):
        (runs / f"{run_id}.h1.json").write_text(
            f'{{"version": 1, "run_id": "{run_id}", "host": "h1", "playbook": "p", "steps": [], "outcome": "applied", '
            f'"started": "{run_id}"}}')
    (runs / "foreign.json").write_text("[]")
    (runs / "empty.json").write_text("{}")
    assert journal.find("h1", "20261129T010101Z-aaaaaa").run_id == "20261129T010101Z-aaaaaa"
    for bad, words in (("", "at least"), ("2", "at least"), ("20261129T010101Z", "matches 2 runs")):
        with pytest.raises(InputError, match=words):
            journal.find("h1", bad)
    assert len(journal.history("h1")) == 2


@pytest.mark.parametrize(("record", "words"), [
    ({"version": 2, "run_id": "r", "host": "h1", "playbook": "p", "outcome": "applied", "steps": []},
     "version 2; this remediate reads version 1"),
    ({"version": 1, "run_id": "r", "host": "h1", "playbook": "p", "outcome": "applied", "steps": "x"},
     "'steps' is missing or not a list"),
    ({"version": 1, "run_id": "r", "host": "h1", "playbook": "p", "outcome": "applied", "steps": [{"id": "a"}]},
     "step 0 of the run journal lacks id, kind, target or state"),
])
def test_a_journal_rollback_cannot_trust_is_refused_naming_the_file(tmp_path: Path, record: dict, words: str) -> None:
    path = journal.runs_dir() / "r.h1.json"
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match=words) as e:
        journal.Journal.load(path)
    assert str(path) in str(e.value)
