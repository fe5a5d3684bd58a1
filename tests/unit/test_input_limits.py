"""Input that grows without bound is refused with file:line before it costs memory or a stack: nesting, expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediate import jsonin
from remediate import yamlin as source
from remediate.errors import InputError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host


def test_deep_json_in_extra_vars_is_an_input_error_not_a_recursion_error() -> None:
    deep = '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(InputError, match=r"^-e '\{\"a\":\[\[\[.*\(200006 characters\) nests 100001 levels deep; "
                                         r"JSON deeper than 64 levels is refused"):
        playbook.parse_extra([deep])


def test_json_nesting_is_bounded_at_64_levels_and_brackets_in_strings_do_not_count() -> None:
    deepest: list = []
    for _ in range(63):
        deepest = [deepest]
    assert jsonin.loads("[" * 64 + "]" * 64, what="x") == deepest
    assert jsonin.loads(b'{"s": "' + b"[" * 500 + b'\\"{{"}', what="x") == {"s": "[" * 500 + '"{{'}
    assert jsonin.depth('{"a": [1, {"b": "]]]]"}]}') == 3
    with pytest.raises(InputError, match="^plan.json nests 65 levels deep"):
        jsonin.loads("[" * 65 + "]" * 65, what="plan.json")
    with pytest.raises(InputError, match="^plan.json is not valid JSON: Expecting value"):
        jsonin.loads('{"a": }', what="plan.json")
    with pytest.raises(InputError, match="^plan.json nests 70 levels deep"):  # an unclosed string is read once
        jsonin.loads("[" * 70 + '"' + '\\"' * 200_000, what="plan.json")
    with pytest.raises(InputError, match="^plan.json is not UTF-8"):
        jsonin.loads(b'{"a": "\xff"}', what="plan.json")


def test_a_variables_file_nested_past_the_bound_is_refused_at_its_line(tmp_path: Path) -> None:
    varsfile = tmp_path / "vars.yml"
    varsfile.write_text("".join("  " * i + f"k{i}:\n" for i in range(70)))
    with pytest.raises(InputError, match=rf"^{varsfile}:65: the variables file nests more than 64 levels deep"):
        playbook.parse_extra([f"@{varsfile}"])
    varsfile.write_text("".join("  " * i + f"k{i}:\n" for i in range(60)))
    assert "k0" in playbook.parse_extra([f"@{varsfile}"])


def test_aliases_cannot_nest_a_document_past_the_bound() -> None:
    doc = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"
    with pytest.raises(InputError, match="nests more than 64 levels deep .counting what its aliases"):
        source.parse(doc.encode(), "deep.yml", what="compose file")


def doubling(levels: int) -> str:
    """The playbook of issue #22: each variable names the one before twice, 804 bytes that expanded to 2.1 GB."""
    lines = ["name: bomb", "vars:", '  v0: "xx"']
    lines += [f'  v{i}: "{{{{v{i - 1}}}}}{{{{v{i - 1}}}}}"' for i in range(1, levels + 1)]
    lines += ["steps:", "  - id: w", "    kind: file", f'    params: {{path: /tmp/x, content: "{{{{ v{levels} }}}}"}}']
    return "\n".join(lines) + "\n"


def test_a_variable_doubling_chain_is_refused_at_the_first_variable_past_1_mib(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text(doubling(30))
    assert len(path.read_bytes()) < 900
    with pytest.raises(InputError, match=rf"^{path}:23: variable 'v20' expands to more than 1 MiB through the "
                                         "variables it names; refusing it"):
        playbook.load(path).bind(Host(name="h1", address="127.0.0.1"), {})
    path.write_text(doubling(18))  # 512 KiB: a large value, not a bomb
    variables, _ = playbook.load(path).bind(Host(name="h1", address="127.0.0.1"), {})
    assert len(variables["v18"]) == 2 ** 19


def test_lists_that_share_a_variable_count_it_where_it_stands(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yml"
    path.write_text("name: bomb\nvars:\n  v0: [x, x]\n" + "".join(
        f'  v{i}: ["{{{{v{i - 1}}}}}", "{{{{v{i - 1}}}}}"]\n' for i in range(1, 40))
        + 'steps:\n  - id: w\n    kind: command\n    params: {command: [echo, "{{ v39 }}"]}\n')
    with pytest.raises(InputError, match=rf"^{path}:20: variable 'v17' expands to more than 1 MiB"):
        playbook.load(path).bind(Host(name="h1", address="127.0.0.1"), {})


def test_a_host_s_variables_together_expand_to_16_mib_at_most(tmp_path: Path) -> None:
    path = tmp_path / "book.yml"
    path.write_text("name: wide\nvars:\n  big: ~\nsteps:\n" + "".join(
        f'  - id: w{i}\n    kind: file\n    params: {{path: /tmp/x, content: "{{{{ big }}}}"}}\n' for i in range(30)))
    with pytest.raises(InputError, match=rf"^{path}:\d+: step 'w18': the variables of this host expand to more "
                                         "than 16 MiB altogether"):
        playbook.load(path).bind(Host(name="h1", address="127.0.0.1"), {"big": "y" * 900_000})


def test_a_long_chain_of_variables_is_an_input_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "chain.yml"
    path.write_text("name: chain\nvars:\n" + "".join(f'  v{i}: "{{{{v{i + 1}}}}}"\n' for i in range(2000))
                    + '  v2000: x\nsteps:\n  - id: w\n    kind: file\n    params: {path: /tmp/x, content: "{{ v0 }}"}\n')
    with pytest.raises(InputError, match=rf"^{path}:67: variable 'v64' nests more than 64 levels deep, counting each "
                                         "variable it names"):
        playbook.load(path).bind(Host(name="h1", address="127.0.0.1"), {})


def test_lists_that_hold_variables_nest_64_levels_at_most(tmp_path: Path) -> None:
    path = tmp_path / "deep.yml"
    nested = ["[" * 40 + ("x" if i == 0 else f'"{{{{v{i - 1}}}}}"') + "]" * 40 for i in range(30)]
    path.write_text("name: deep\nvars:\n" + "".join(f"  v{i}: {text}\n" for i, text in enumerate(nested))
                    + 'steps:\n  - id: w\n    kind: command\n    params: {command: "{{ v29 }}"}\n')
    with pytest.raises(InputError, match=rf"^{path}:4: variable 'v1' nests more than 64 levels deep"):
        playbook.load(path).bind(Host(name="h1", address="127.0.0.1"), {})
