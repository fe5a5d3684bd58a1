from __future__ import annotations

from pathlib import Path

import pytest

from remediate.errors import InputError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host

GOOD = """\
name: demo
vars:
  base: /srv
  path: "{{ base }}/app.conf"
steps:
  - id: write
    kind: file
    params:
      path: "{{ path }}"
      content: "port={{ port }}\\n"
  - id: touch
    kind: command
    target: local
    params:
      command: [touch, "{{ base }}/x"]
      creates: "{{ base }}/x"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.yml"
    path.write_text(text)
    return path


def host(**vars: object) -> Host:
    return Host(name="h1", address="127.0.0.1", vars=vars)


def test_variables_defaults_then_inventory_then_extra(tmp_path: Path) -> None:
    book = playbook.load(write(tmp_path, GOOD))
    variables, steps = book.bind(host(port=25, base="/etc"), playbook.parse_extra(["port=2525"]))
    assert variables["path"] == "/etc/app.conf"
    assert steps[0].p == {"path": "/etc/app.conf", "content": "port=2525\n", "mode": None}
    assert steps[1].target == "local"
    assert steps[1].p["command"] == ["touch", "/etc/x"]


def test_whole_value_templates_keep_their_type(tmp_path: Path) -> None:
    book = playbook.load(write(tmp_path, GOOD.replace('[touch, "{{ base }}/x"]', '"{{ argv }}"')))
    _, steps = book.bind(host(port=1), {"argv": ["echo", "a b"]})
    assert steps[1].p["command"] == ["echo", "a b"]


@pytest.mark.parametrize(("mutate", "line", "words"), [
    (lambda t: t.replace("kind: command", "kind: teleport"), 12, "unknown kind 'teleport'"),
    (lambda t: t.replace("kind: command", "kind: [command]"), 12, "unknown kind ['command']"),
    (lambda t: t.replace("id: touch", "id: write"), 11, "used twice"),
    (lambda t: t.replace("      creates:", "      creatse:"), 16, "has no parameter 'creatse'"),
    (lambda t: t.replace('      content: "port={{ port }}\\n"\n', ""), 8, "needs the parameter 'content'"),
    (lambda t: t.replace("    target: local", "    targt: local"), 13, "unknown step key 'targt'"),
    (lambda t: t.replace('    params:\n      path: "{{ path }}"\n      content: "port={{ port }}\\n"\n', "    params: [1]\n"), 8,
     "must be a mapping"),
    (lambda t: t.replace("steps:", "stepz:"), 5, "unknown playbook key 'stepz'"),
    (lambda t: t.replace("  - id: touch", "  - id: touch\n    bad: [unclosed"), 13, "not valid YAML"),
])
def test_malformed_playbooks_cite_file_and_line(tmp_path: Path, mutate, line: int, words: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, mutate(GOOD))
    with pytest.raises(InputError) as e:
        playbook.load(path).bind(host(port=1), {})
    assert str(e.value).startswith(f"{path}:{line}:"), str(e.value)
    assert words in str(e.value)


def test_undefined_variable_names_the_step_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(InputError) as e:
        playbook.load(path).bind(host(), {})
    assert str(e.value).startswith(f"{path}:8: step 'write' uses undefined variable 'port'")


def test_parameter_types_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('content: "port={{ port }}\\n"', "content: [1, 2]"))
    with pytest.raises(InputError, match=r"book.yml:8: step 'write': parameter 'content' must be a string"):
        playbook.load(path).bind(host(), {})


def test_self_referencing_variables_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("base: /srv", 'base: "{{ path }}"'))
    with pytest.raises(InputError, match="refers to itself"):
        playbook.load(path).bind(host(port=1), {})


@pytest.mark.parametrize("pair", ["novalue", "=x", "bad key=1", "a-b=1"])
def test_bad_extra_pairs(pair: str) -> None:
    with pytest.raises(InputError, match="expected key=value"):
        playbook.parse_extra([pair])


def test_extra_values_are_typed_and_metacharacters_stay_text() -> None:
    assert playbook.parse_extra(["n=2526", "b=true", "l=[a.com, b.com]", "s=x; touch /tmp/pwned", "e="]) == {
        "n": 2526, "b": True, "l": ["a.com", "b.com"], "s": "x; touch /tmp/pwned", "e": ""}


def test_shipped_playbooks_are_found_by_name_and_unknown_names_listed() -> None:
    assert playbook.locate("toy").name == "toy.yml"
    with pytest.raises(InputError, match=r"search path(.|\n)*shipped playbooks(.|\n)*toy"):
        playbook.locate("no-such-book")


def test_every_shipped_playbook_validates() -> None:
    from importlib import resources
    for entry in resources.files("remediate.playbooks").iterdir():
        if entry.name.endswith(".yml"):
            book = playbook.load(Path(str(entry)))
            assert book.steps


def test_extra_vars_as_ansible_takes_them(tmp_path: Path) -> None:
    varsfile = tmp_path / "vars.yml"
    varsfile.write_text("lmtp_port: 2526\nremove_relay_domains: [a.com, b.com]\n")
    extra = playbook.parse_extra([f"@{varsfile}", '{"lmtp_host": "10.0.0.5", "lmtp_port": 2527}', "x=1"])
    assert extra == {"lmtp_port": 2527, "remove_relay_domains": ["a.com", "b.com"], "lmtp_host": "10.0.0.5", "x": 1}
    varsfile.write_text("- not a mapping\n")
    with pytest.raises(InputError, match="must hold a mapping"):
        playbook.parse_extra([f"@{varsfile}"])
    with pytest.raises(InputError, match="not valid JSON"):
        playbook.parse_extra(['{"a": }'])


def test_a_variable_declared_without_value_must_be_given(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("base: /srv", "base: /srv\n  port: ~  # the port the app listens on"))
    with pytest.raises(InputError) as e:
        playbook.load(path).bind(host(), {})
    assert str(e.value).startswith(f"{path}:9: step 'write' uses variable 'port', which has no value")
    assert "-e port=VALUE" in (e.value.hint or "")
    _, steps = playbook.load(path).bind(host(), {"port": 8025})
    assert steps[0].p["content"] == "port=8025\n"
