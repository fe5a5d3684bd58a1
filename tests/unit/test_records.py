"""@record (remediate.records) against @dataclass itself: the same equality, hash values, repr text, frozenness,
unhashability and parameters, for the shapes the code uses (and its corner cases), made without exec."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from remediate.records import record


def pair(frozen: bool) -> tuple[type[Any], type[Any]]:
    """The same class body made twice: by dataclass and by record."""
    def body() -> type[Any]:
        class Thing:
            """A record under test."""

            name: str
            size: int = 0
            tags: tuple[str, ...] = ()
            note: str = field(default="", compare=False)
            secret: str = field(default="s3", repr=False)
            cache: list[int] = field(default_factory=list, hash=False)
        return Thing
    return dataclass(frozen=frozen)(body()), record(frozen=frozen)(body())


@pytest.mark.parametrize("frozen", [True, False])
def test_a_record_is_the_dataclass_it_stands_for(frozen: bool) -> None:
    made, ours = pair(frozen)
    samples: list[dict[str, Any]] = [{"name": "a"}, {"name": "a", "size": 2}, {"name": "a", "note": "other"},
                                     {"name": "b", "tags": ("x",), "secret": "t", "cache": [1]}, {"name": "a", "size": 2}]
    for one in samples:
        for two in samples:
            assert (made(**one) == made(**two)) == (ours(**one) == ours(**two))
            assert (made(**one) != made(**two)) == (ours(**one) != ours(**two))
        assert repr(made(**one)) == repr(ours(**one))
        if frozen:
            assert hash(made(**one)) == hash(ours(**one))  # the very same tuple is hashed
    assert made.__eq__(made("a"), "a") is NotImplemented and ours.__eq__(ours("a"), "a") is NotImplemented
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(made)]
    assert repr(ours.__dataclass_params__) == repr(made.__dataclass_params__)
    assert ours.__match_args__ == made.__match_args__ and ours.__doc__ == made.__doc__
    for method in ("__repr__", "__eq__", *(("__hash__",) if frozen else ())):
        assert getattr(ours, method).__qualname__ == getattr(made, method).__qualname__
    changed = dataclasses.replace(ours("a"), size=3)
    assert changed == ours("a", 3) and dataclasses.asdict(changed) == dataclasses.asdict(made("a", 3))
    if frozen:
        with pytest.raises(dataclasses.FrozenInstanceError):
            ours("a").size = 1  # type: ignore[misc]
        assert {ours("a"), ours("a", note="n")} == {ours("a")}
    else:
        assert ours.__hash__ is None and made.__hash__ is None
        with pytest.raises(TypeError, match="unhashable"):
            hash(ours("a"))


def test_a_record_keeps_what_its_class_defines_and_inherits_as_a_dataclass_does() -> None:
    @record(frozen=True)
    class Own:
        a: int

        def __eq__(self, other: object) -> bool:
            return True

        def __repr__(self) -> str:
            return "own"

    @record(frozen=True)
    class Hashed:
        a: int

        def __hash__(self) -> int:
            return 7

    assert Own(1) == Own(2) and repr(Own(1)) == "own" and hash(Own(3)) == hash((3,))  # frozen: hashed as dataclass
    assert hash(Hashed(1)) == 7 and Hashed(1) == Hashed(1) and Hashed(1) != Hashed(2)

    @record(frozen=True)
    class Child(Hashed):
        b: str = "x"

    assert repr(Child(1)) == "test_a_record_keeps_what_its_class_defines_and_inherits_as_a_dataclass_does.<locals>." \
                             "Child(a=1, b='x')"
    assert Child(1) != Hashed(1) and Child(1) == Child(1) and hash(Child(1)) == hash((1, "x"))


def test_no_field_one_field_and_a_value_unequal_to_itself_compare_as_a_dataclasss() -> None:
    @record(frozen=True)
    class Empty:
        pass

    @record(frozen=True)
    class One:
        value: float

    nan = float("nan")
    assert Empty() == Empty() and hash(Empty()) == hash(()) and repr(Empty()).endswith("Empty()")
    assert One(nan) == One(nan) and One(float("nan")) != One(float("nan"))  # the tuple compares the same object
    assert hash(One(2.0)) == hash((2.0,))


def test_a_record_that_holds_itself_is_shown_with_an_ellipsis_where_it_recurs() -> None:
    @record
    class Node:
        children: list[Any]

    @dataclass
    class Made:
        children: list[Any]

    node, made = Node([]), Made([])
    node.children.append(node)
    made.children.append(made)
    assert repr(node).endswith(".Node(children=[...])") and repr(made).endswith(".Made(children=[...])")
    assert repr(node) == repr(node)  # the guard is released after each showing
