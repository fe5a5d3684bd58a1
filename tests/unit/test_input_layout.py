"""The inputs package stays readable: each module does one job in at most 400 lines, each function in at most 60."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import remediate.inputs

INPUTS = Path(remediate.inputs.__file__).parent
MODULES = sorted(INPUTS.glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_an_inputs_module_is_at_most_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_an_inputs_function_is_at_most_60_lines(path: Path) -> None:
    tree = ast.parse(path.read_text())
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None
            and node.end_lineno - node.lineno + 1 > 60]
    assert long == []


def test_the_playbook_module_still_offers_what_the_rest_of_remediate_imports() -> None:
    from remediate.inputs import playbook
    from remediate.inputs.binding import Playbook
    from remediate.inputs.playbook_yaml import load
    from remediate.inputs.search_path import locate

    assert (playbook.Playbook, playbook.load, playbook.locate) == (Playbook, load, locate)
    assert all(hasattr(playbook, name) for name in playbook.__all__)
