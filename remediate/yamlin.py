"""YAML documents that remember where each value came from, for errors that cite file:line (inputs, compose files, rules)."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import MaxDepthExceededError
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from remediate.errors import InputError
from remediate.jsonin import MAX_DEPTH

MAX_DOCUMENT_BYTES = 1024 * 1024
#: How many values a document may hold once its aliases are expanded: an alias bomb of a few hundred bytes
#: expands to billions; real inventories, playbooks and compose files hold a few thousand.
MAX_EXPANDED_VALUES = 200_000

_local = threading.local()  # one round-trip loader per thread: making one compiles its resolver's patterns anew

try:  # libyaml's parser and composer (ruamel.yaml.clib), where the platform has them
    from _ruamel_yaml import CParser as _CParser  # type: ignore[import-not-found]
except ImportError:  # the pure-Python loader reads everything
    _CParser = None
#: The deepest a document may be, by _nesting's bound, for libyaml's composer: it recurses in C (some 300 bytes of
#: stack a level: 30,000 levels overflow an 8 MB stack, 200 a 64 KiB one), where the pure composer refuses past
#: MAX_DEPTH in Python. Twice MAX_DEPTH, so that a document the pure loader would refuse as too deep seldom gets here.
C_NESTING: Final = 2 * MAX_DEPTH
#: What libyaml (YAML 1.1) reads otherwise than the round-trip loader (YAML 1.2), or might: tabs, a BOM (columns
#: counted otherwise), and 1.1's line breaks NEL, LS and PS (and directives: _DIRECTIVE). A text holding any is read
#: by the pure loader.
_C_AVOIDS: Final = ("\t", "\x85", "\u2028", "\u2029", "\ufeff")
#: Syntax the two parsers read otherwise, sent to the pure loader (a false alarm, say a `!` in a quoted command,
#: costs only time): a carriage return that ends a line alone (a line break to both, but not to _nesting, nor to
#: the directive test); a tag (!!str, !custom, !: the round-trip constructor keeps what the pure parser tags as a
#: TaggedScalar, which libyaml's nodes do not say); a block scalar's header running into a comment (`|#`: libyaml
#: reads it, YAML 1.2 does not); a block scalar first on its line, as a top-level one is (libyaml takes its `#`
#: lines for comments); an anchor (the pure parser keeps an anchored scalar's anchor, as a ScalarInt or the like;
#: libyaml's nodes do not, and its anchor names are YAML 1.1's); and a `?` in a flow collection (libyaml reads
#: `[?]]`, which the pure parser refuses). A quoted or bracketed key with its `:` right after it in a flow sequence
#: is found in the nodes (_json_key).
_DIVERGES: Final = re.compile(r"\r(?!\n)|(?:^|[\s\[{,:])!|[|>][0-9+-]*#|(?m:^(?:--- *| *)[|>])|(?:^|[\s\[{,?:-])&[^\s&]"
                              r"|[\[{,]\s*\?")
#: A directive line (%YAML, %TAG): what it sets outlives the document in ruamel's loader.
_DIRECTIVE: Final = re.compile(r"(?:^|[\r\n])%")


def _loader() -> YAML:
    """The round-trip loader (CommentedMap and CommentedSeq, each value's line and column): every text _fast does
    not read, and every error, in the words and at the line it has always given."""
    loader = getattr(_local, "yaml", None)
    if loader is None:
        loader = _local.yaml = YAML(typ="rt")
        loader.max_depth = MAX_DEPTH + 1  # ruamel counts the scalar at the bottom as a level of its own
    return loader


def _load(text: str) -> Any:
    read, doc = _fast(text)
    if read:
        return doc
    try:
        return _loader().load(text)
    except BaseException:
        _local.yaml = None  # never reuse a loader a failure may have left half-way
        raise
    finally:
        if _DIRECTIVE.search(text):  # a %YAML 1.1 or %TAG stays with the loader: the thread's next text gets a new one
            _local.yaml = None


def _fast(text: str) -> tuple[bool, Any]:
    """(True, the document) as libyaml's parser and composer make its nodes, under the round-trip loader's own
    constructor and resolver: the same values, types, tags, lines and columns, five to seven times faster. (False,
    None) for the pure loader to read, and to word any error as it always has: a text libyaml might read otherwise
    (_C_AVOIDS), one that could nest deep enough to overflow libyaml's stack, or one it refuses or finds too deep."""
    if (_CParser is None or any(c in text for c in _C_AVOIDS) or _DIRECTIVE.search(text) or _nesting(text) > C_NESTING
            or _DIVERGES.search(text)):
        return False, None
    try:
        loader = _c_loader()(text)
        node = loader.get_single_node()
        if node is not None and _unsuited(node, text):
            return False, None  # the pure composer says how deep, at its line, or what it refuses
        return True, None if node is None else loader.construct_document(node)
    except Exception:  # noqa: BLE001 - whatever libyaml or the constructor refuses, the pure loader words
        return False, None


def _c_loader() -> type:
    """The loader class: libyaml's CParser with ruamel's round-trip constructor and versioned resolver (what
    YAML(typ="rt") uses), made once."""
    made: type | None = getattr(_c_loader, "made", None)
    if made is None:
        class CRoundTrip(_CParser, RoundTripConstructor, VersionedResolver):  # type: ignore[misc]
            comment_handling = None  # comments are not read: libyaml's parser drops them

            def __init__(self, text: str) -> None:
                _CParser.__init__(self, text)
                self._parser = self._composer = self
                RoundTripConstructor.__init__(self, loader=self)
                VersionedResolver.__init__(self, None, loader=self)
        made = _c_loader.made = CRoundTrip  # type: ignore[attr-defined]
    return made


def _nesting(text: str) -> int:
    """An upper bound of how deep text's nodes can nest: every flow bracket, and two levels a column of the deepest
    line's indentation and leading indicators (a block node is deeper than its parent's column, but for an
    indentless sequence, which is one level)."""
    brackets = text.count("[") + text.count("{")
    if brackets > C_NESTING:
        return brackets
    widest = max((len(line) - len(line.lstrip(" -?:")) for line in text.split("\n")), default=0)
    return brackets + 2 * widest + 2


def _unsuited(root: Node, text: str) -> bool:
    """In one walk of the composed document: whether the pure loader must read it after all, because it is deeper
    than MAX_DEPTH (the scalar at the bottom counted, as the pure composer counts; a node an alias repeats measured
    once, one that holds itself too deep) or holds a pair the pure parser refuses (_json_key). On the way, a plain
    scalar's style becomes the pure parser's (None, where libyaml says ''): a TaggedScalar keeps it."""
    depths: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, measured = stack.pop()
        children = ([item for pair in node.value for item in pair] if isinstance(node, MappingNode)
                    else list(node.value) if isinstance(node, SequenceNode) else [])
        if measured:
            depths[id(node)] = 1 + max((depths[id(child)] for child in children), default=0)
            continue
        if id(node) in depths:
            if depths[id(node)] < 0:  # still being measured: it holds itself
                return True
            continue
        if isinstance(node, ScalarNode) and node.style == "":
            node.style = None
        if isinstance(node, SequenceNode) and node.flow_style and _json_key(node, text):
            return True
        depths[id(node)] = -1
        stack.append((node, True))
        stack.extend((child, False) for child in children if depths.get(id(child), -1) < 0)
    return depths[id(root)] > MAX_DEPTH


def _json_key(sequence: SequenceNode, text: str) -> bool:
    """Whether a pair in this flow sequence has a quoted or bracketed key with its `:` right after it and a value
    right after that (`["":]`, `['':a]`, `[[]:-]`): libyaml reads those, the pure parser refuses them (in a flow
    mapping, `{"a":b}`, both read it alike)."""
    for key, _ in (pair for child in sequence.value if isinstance(child, MappingNode) for pair in child.value):
        if isinstance(key, ScalarNode) and key.style not in ('"', "'"):
            continue  # a plain key: the same to both
        after = text[key.end_mark.index:].lstrip(" ")
        if after[:1] == ":" and after[1:2] not in (" ", "\r", "\n", ""):
            return True
    return False


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
