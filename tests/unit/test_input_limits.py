"""Input that grows without bound is refused with file:line before it costs memory or a stack: nesting, expansion."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediate import jsonin, playbook, source
from remediate.errors import InputError


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
