"""YAML documents that remember where each value came from, for errors that cite file:line (inputs, compose files, rules)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scanner import Scanner

from remediate.errors import InputError
from remediate.jsonin import MAX_DEPTH

MAX_DOCUMENT_BYTES = 1024 * 1024
#: How many values a document may hold once its aliases are expanded: an alias bomb of a few hundred bytes
#: expands to billions; real inventories, playbooks and compose files hold a few thousand.
MAX_EXPANDED_VALUES = 200_000

_local = threading.local()  # one round-trip loader per thread: making one compiles its resolver's patterns anew


def _loader() -> YAML:
    """The round-trip loader (CommentedMap and CommentedSeq, each value's line and column) without its comment
    scanner: nothing here keeps or writes back a document's comments (compose files are edited as text), and
    gathering them was a quarter of every parse (2 ms of a 20-host inventory's 8). Values, lines, tags, anchors and
    errors are the round-trip loader's own (tests/unit/test_yamlin_scanner.py)."""
    loader = getattr(_local, "yaml", None)
    if loader is None:
        loader = _local.yaml = YAML(typ="rt")
        loader.Scanner = Scanner
        loader.max_depth = MAX_DEPTH + 1  # ruamel counts the scalar at the bottom as a level of its own
    return loader


def _load(text: str) -> Any:
    try:
        return _loader().load(text)
    except BaseException:
        _local.yaml = None  # never reuse a loader a failure may have left half-way
        raise


def load(path: Path, *, what: str) -> Any:
    """Parse a YAML file, or raise InputError naming file:line and what to fix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found", hint=f"check the path of the {what}") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what}: {e.strerror}") from e
    return parse(raw, str(path), what=what)


def parse(raw: bytes, name: str, *, what: str) -> Any:
    """Parse YAML bytes that came from `name`, refusing binary and oversized input."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InputError(f"{name}: the {what} is {len(raw)} bytes; more than {MAX_DOCUMENT_BYTES} is refused")
    if b"\0" in raw:
        raise InputError(f"{name}: the {what} is binary (it holds NUL bytes), not YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{name}: the {what} is not UTF-8 (byte {e.start})") from None
    try:
        doc = _load(text)
    except MaxDepthExceededError as e:
        line = f":{e.problem_mark.line + 1}" if e.problem_mark is not None else ""
        raise InputError(f"{name}{line}: the {what} nests more than {MAX_DEPTH} levels deep; refusing it",
                         hint="flatten it: real inventories, playbooks and compose files nest a dozen levels at most") from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = e.problem or e.context or "invalid YAML"
        raise InputError(f"{name}{line}: the {what} is not valid YAML: {problem}") from None
    except YAMLError as e:
        raise InputError(f"{name}: the {what} is not valid YAML: {e}") from None
    except RecursionError:
        raise InputError(f"{name}: the {what} nests too deeply to be read") from None
    except (ValueError, IndexError) as e:  # ruamel.yaml resolves `._` as a float, `-_` as an int, then fails on it
        raise InputError(f"{name}: the {what} holds a value YAML 1.1 reads as a number but which is not one ({e})",
                         hint="quote that value") from None
    _bounded(doc, name, what)
    return doc


def _bounded(doc: Any, name: str, what: str) -> None:
    """Refuse a document whose aliases expand past MAX_EXPANDED_VALUES or nest it past MAX_DEPTH, or that contains
    itself; in linear time."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (values, depth) of a container already measured
    open_: set[int] = set()

    def size(node: Any, level: int) -> tuple[int, int]:
        if not isinstance(node, (dict, list)):
            return 1, 0
        key = id(node)
        if key in open_:
            raise InputError(f"{where(name, node)}: the {what} contains itself through an alias (*name inside &name)")
        if level + sizes.get(key, (0, 1))[1] - 1 > MAX_DEPTH:
            raise InputError(f"{where(name, node)}: the {what} nests more than {MAX_DEPTH} levels deep (counting what "
                             "its aliases, *name, bring in); refusing it", hint="flatten it, or use fewer aliases")
        if key in sizes:
            return sizes[key]
        open_.add(key)
        total, deepest = 1, 0
        for child in (node.values() if isinstance(node, dict) else node):
            values, below = size(child, level + 1)
            total, deepest = total + values, max(deepest, below)
            if total > MAX_EXPANDED_VALUES:
                raise InputError(f"{name}: the {what} expands to more than {MAX_EXPANDED_VALUES} values through its "
                                 "aliases (*name); refusing it (an alias bomb?)", hint="write the values out, or use fewer aliases")
        open_.discard(key)
        sizes[key] = (total, deepest + 1)
        return sizes[key]

    size(doc, 1)


def where(name: str, node: Any, key: Any = None, index: int | None = None) -> str:
    """Return 'name:line' for a mapping key, a sequence item, or a node itself."""
    line = None
    try:
        if isinstance(node, CommentedMap) and key is not None and key in node:
            line = node.lc.key(key)[0]
        elif isinstance(node, CommentedSeq) and index is not None:
            line = node.lc.item(index)[0]
        elif isinstance(node, (CommentedMap, CommentedSeq)):
            line = node.lc.line
    except (AttributeError, KeyError, IndexError, TypeError):
        line = None
    return f"{name}:{line + 1}" if line is not None else name


def only_keys(name: str, node: dict[Any, Any], allowed: frozenset[str], what: str) -> None:
    """Refuse the first key of node that is not allowed, citing its line."""
    for key in node:
        if key not in allowed:
            raise InputError(f"{where(name, node, key)}: unknown {what} key {key!r}",
                             hint=f"a {what} has {', '.join(sorted(allowed))}")


def plain(value: Any) -> Any:
    """Convert ruamel containers to plain dicts, lists and scalars."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value
