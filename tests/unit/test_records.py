"""@record (remediate.records) against @dataclass itself: the same equality, hash values, repr text, frozenness,
unhashability and parameters, for the shapes the code uses (and its corner cases), made without exec."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from remediate.records import plain, record


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


def shapes() -> list[Any]:
    """Class bodies with every way a field gets its value in __init__, each made by dataclass and by record."""
    def plain_fields() -> type[Any]:
        class Plain:
            a: int
            b: str = "b"
        return Plain

    def every_way() -> type[Any]:
        class Every:  # no docstring: dataclass writes one from the signature
            a: int
            b: list[int] = field(default_factory=list)
            c: str = field(default="c", init=False)
            d: dict[str, int] = field(default_factory=dict, init=False)
            e: int = 5
            extra: Any = None  # a name of this module: the hints of __init__ resolve there, as dataclass's do
            seen: ClassVar[list[str]] = []

            def __post_init__(self) -> None:
                type(self).seen.append(f"{self.a}{self.b}{self.c}{self.d}{self.e}")
        return Every
    return [plain_fields, every_way]


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("index", [0, 1])
def test_a_records_init_is_the_one_dataclass_writes_made_without_exec(frozen: bool, index: int) -> None:
    body = shapes()[index]
    made, ours = dataclass(frozen=frozen)(body()), record(frozen=frozen)(body())
    assert str(inspect.signature(ours)) == str(inspect.signature(made)) and ours.__doc__ == made.__doc__
    assert ours.__init__.__annotations__ == made.__init__.__annotations__
    assert typing.get_type_hints(ours.__init__) == typing.get_type_hints(made.__init__)
    assert ours.__init__.__qualname__ == made.__init__.__qualname__
    assert ours.__init__.__code__.co_filename == "<record>" and made.__init__.__code__.co_filename == "<string>"
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1,), {}), ((1, [2]), {}), ((), {"a": 3, "e": 4}), ((1,), {"b": [5], "e": 6}), ((), {"b": [1], "a": 2}),
        ((), {}), ((1, 2, 3, 4), {}), ((1,), {"a": 2}), ((1,), {"zz": 2}), ((1,), {"c": "no"})]
    for args, kwargs in calls:
        if index == 0:
            kwargs = {k: v for k, v in kwargs.items() if k in ("a", "zz")}
        try:
            expected: Any = repr(made(*args, **kwargs))
        except TypeError as e:
            expected = str(e)
        try:
            got: Any = repr(ours(*args, **kwargs)).replace(ours.__qualname__, made.__qualname__)
        except TypeError as e:
            got = str(e)
        assert got == expected
    if index == 1:
        assert made.seen == ours.seen and len(ours.seen) >= 5  # __post_init__ ran after every field was set
        one, two = ours(1), ours(1)
        assert one.b is not two.b and one.d is not two.d  # each instance gets its own from the factory
        assert dataclasses.replace(one, e=9) == ours(1, e=9)
    if frozen:
        for target in (ours(1), made(1)):
            with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'other'"):
                target.other = 1  # the exact class refuses any name, as dataclass's does
            with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'a'"):
                del target.a


def test_plain_is_dataclass_without_eq_or_repr_and_records_refuse_what_they_do_not_make() -> None:
    def body() -> type[Any]:
        class Event:
            """An event."""

            host: str
            detail: str = ""
        return Event
    made, ours = dataclass(eq=False, repr=False)(body()), plain(body())
    assert repr(ours.__dataclass_params__) == repr(made.__dataclass_params__)
    one = ours("h")
    assert one != ours("h") and one == one and hash(one) == object.__hash__(one) and repr(one).startswith("<")
    assert str(inspect.signature(ours)) == str(inspect.signature(made)) and one.detail == ""

    with pytest.raises(TypeError, match="follows default argument"):
        @record
        class Late:
            a: int = 1
            b: int  # type: ignore[misc]
    with pytest.raises(TypeError, match="keyword-only"):
        @record
        class Keyword:
            a: int = field(kw_only=True)
    with pytest.raises(TypeError, match="__record_"):
        @record
        class Helper:
            __record_set__: int
    with pytest.raises(TypeError, match="InitVar"):
        @record
        class Given:
            a: dataclasses.InitVar[int]

    @record(frozen=True)
    class Frozen:
        a: int

    with pytest.raises(TypeError, match="cannot inherit non-frozen dataclass from a frozen one"):
        @record
        class Thawed(Frozen):
            b: int = 0

    @record
    class Loose:
        a: int

    with pytest.raises(TypeError, match="cannot inherit frozen dataclass from a non-frozen one"):
        @record(frozen=True)
        class Stiff(Loose):
            b: int = 0
