"""yamlin reads every document as the full round-trip loader reads it: the values, types, lines, columns, tags and
errors it gives (libyaml's fast path included: test_yamlin_c), over every YAML file of the repository and texts that
once read otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from remediate import yamlin

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "a: !!str 1\nb: !custom x\n",
    "x: &a [1, 2]\ny: *a\n# a comment\nz: {k: v}  # another\n",
    "- 0x1F\n- 1_000\n- 1e3\n- .inf\n- ~\n- 2001-12-14\n- yes\n- 'q'\n- \"d\"\n- |\n  block\n",
    "? [a]\n: b\n",
    "%YAML 1.1\n---\nx: yes\n",
    "a:\n  - b  # after\n  # between\n  - e\n\n\n# trailing\n",
    "a: b\n  c: d\n",
    "k: 'unclosed\n",
    "a: [1, 2\n",
    # errors a round-trip loader without its comment scanner once worded and placed otherwise (review, 7a6ca84)
    '"modules:\n  - expect: "^220 "\n  - send: "QUIT"\n',
    'all:\n  hosts:\n    web1:\n      ansible_host: "10.0.0.1\n    web2:\n      ansible_host: 10.0.0.2\n',
    "steps:\n  - id: a\n    cmd: 'it's here'\n  - id: b\n",
    "a: [1, 2\nb: 3\n# c\nc: 4\n",
]


def place(x: CommentedMap, key: Any, value: Any) -> Any:
    """Where a key and its value are, but an empty value's place: ruamel's pure parser puts it at the next token,
    libyaml's (yamlin._fast) right after the colon, and nothing reads it (file:line errors cite the key's line)."""
    found = x.lc.data.get(key)
    return found[:2] if found is not None and value is None else found


def shape(x: Any) -> Any:
    """A document as data, with the line and column of every key, value and item (what file:line errors cite)."""
    if isinstance(x, CommentedMap):
        return ("map", [(k, type(k).__name__, place(x, k, v), shape(v)) for k, v in x.items()],
                x.lc.line, x.lc.col, x.tag.value)
    if isinstance(x, CommentedSeq):
        return ("seq", [(x.lc.item(i), shape(v)) for i, v in enumerate(x)], x.lc.line, x.lc.col)
    return type(x).__name__, repr(x), getattr(getattr(x, "tag", None), "value", None)


def read(text: str, how: Any) -> Any:
    try:
        return shape(how(text))
    except (YAMLError, ValueError) as e:  # the errors must match too
        return "error", type(e).__name__, str(e)


def full(text: str) -> Any:
    return YAML(typ="rt").load(text)


def ours(text: str) -> Any:
    return yamlin._load(text)


def corpus() -> list[str]:
    files = [p for pattern in ("playbooks/**/*.yml", "lab/**/*.yml", "bench/**/*.yml", "tests/**/*.yml",
                               "tests/**/*.yaml") for p in sorted(ROOT.glob(pattern))]
    assert len(files) >= 10
    return [p.read_text() for p in files] + TEXTS


def test_every_document_reads_as_the_full_round_trip_loader_reads_it() -> None:
    for text in corpus():
        assert read(text, ours) == read(text, full), text[:200]
