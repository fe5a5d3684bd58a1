"""Small files and short functions: no product file over 400 lines, no function over 60 (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import remediate

ROOT = Path(remediate.__file__).parent
MAX_LINES = 400
MAX_FUNCTION = 60


def too_long(path: Path) -> list[str]:
    text = path.read_text()
    found = [f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines"] if text.count("\n") > MAX_LINES else []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}() is {length} lines")
    return found


def test_no_product_file_over_400_lines_and_no_function_over_60() -> None:
    assert [line for path in sorted(ROOT.rglob("*.py")) for line in too_long(path)] == []


def test_the_measure_sees_a_long_function(tmp_path: Path) -> None:
    global ROOT
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    saved, ROOT = ROOT, tmp_path
    try:
        assert too_long(tmp_path / "long.py") == ["long.py:1: f() is 61 lines"]
    finally:
        ROOT = saved
