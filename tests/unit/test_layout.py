"""The package's shape: no import cycle between its modules, and the plug-in API does not drag in the engine."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import remediate

ROOT = Path(remediate.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["remediate", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at module level or inside a function, except under `if TYPE_CHECKING:`."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out += [n for child in node.orelse for n in _imports(ast.Module(body=[child], type_ignores=[]))]
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        out += _imports(node)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in known}
                continue
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])]) if node.level else (node.module or "")
            for alias in node.names:
                full = f"{target}.{alias.name}"
                deps.add(full if full in known else target)
        edges[name] = {d for d in deps if d in known and d != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back_through_others() -> None:
    assert cycles(graph()) == []


def test_the_walk_sees_a_cycle_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import x\ndef f():\n    import y\n")
    assert [n.names[0].name for n in _imports(tree) if isinstance(n, ast.Import)] == ["y"]


#: The layers, bottom first: a module imports (at run time) only from its own layer or those below. A kind or a check
#: type sees the contract, the transport, the domain and the probes; inputs look kinds up by name; the engine runs
#: what inputs bound; api is the library; the command line and serve are its two front ends.
LAYERS: list[tuple[str, ...]] = [
    ("remediate", "remediate.errors", "remediate.redact", "remediate.jsonin", "remediate.yamlin", "remediate.private",
     "remediate.collector", "remediate.contract", "remediate.plan"),
    ("remediate.transport", "remediate.mail"),
    ("remediate.probes",),
    ("remediate.kinds", "remediate.diagnostics", "remediate.steps"),
    ("remediate.inputs",),
    ("remediate.engine", "remediate.context"),
    ("remediate.api",),
    ("remediate.cli", "remediate.serve"),
]


def layer(module: str) -> int:
    """The layer of module: that of the longest prefix named in LAYERS (a module no prefix names fails loudly)."""
    found = [(len(name), i) for i, names in enumerate(LAYERS) for name in names
             if module == name or module.startswith(name + ".")]
    assert found, f"{module} is in no layer: add its package to LAYERS"
    return max(found)[1]


def upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in edges.items() for d in deps if layer(d) > layer(m))


def test_every_import_runs_down_the_layers() -> None:
    assert upward(graph()) == []


def test_the_layer_walk_sees_an_import_running_up() -> None:
    assert upward({"remediate.kinds.file": {"remediate.engine.context"}, "remediate.engine.runner": {"remediate.kinds"}}) \
        == ["remediate.kinds.file -> remediate.engine.context"]


def test_a_plug_in_importing_the_kind_api_loads_no_ssh_nor_the_engine() -> None:
    probe = ("import sys\nimport remediate.kinds, remediate.kinds.file, remediate.contract.plan, remediate.diagnostics\n"
             "print(','.join(sorted(m for m in sys.modules if m in ('paramiko', 'fabric', 'remediate.api') or "
             "m.startswith(('remediate.engine', 'remediate.inputs', 'remediate.serve', 'remediate.cli')))))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
