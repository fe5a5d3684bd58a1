"""yamlin reads YAML with the round-trip loader minus its comment scanner: every document gives the values, types,
lines, columns, tags and errors the full round-trip loader gives, and no comment is gathered on the way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scanner import RoundTripScanner

from remediate import yamlin
from remediate.errors import InputError

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


def test_reading_gathers_no_comment(monkeypatch: pytest.MonkeyPatch) -> None:
    def gathered(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a comment was gathered")

    monkeypatch.setattr(RoundTripScanner, "_gather_comments", gathered)
    doc = yamlin.parse(b"# head\nall:  # the group\n  hosts:\n    h1: {}  # one\n", "inventory.yml", what="inventory")
    assert list(doc["all"]["hosts"]) == ["h1"] and yamlin.where("inventory.yml", doc["all"], "hosts") == \
        "inventory.yml:3"
    with pytest.raises(InputError, match=r"^inventory.yml:2: the inventory is not valid YAML"):
        yamlin.parse(b"a: b\n  c: d  # x\n", "inventory.yml", what="inventory")
