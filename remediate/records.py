"""`@record`: a dataclass whose __eq__, __repr__ and __hash__ are made without compiling code for each class.

Python 3.11's dataclass compiles every method it adds with its own exec: six for a frozen class (__init__, __repr__,
__eq__, __hash__, __setattr__, __delattr__), 0.5-1 ms of CPU a class, and some 60 classes are made at the start of
every `remediate plan` and `apply`. A record is the same dataclass (fields(), replace(), asdict(), frozen, __init__ as
dataclass makes them) with __eq__, __repr__ and __hash__ that do what dataclass's own do, field for field (the same
fields compared, hashed and shown, the same tuple hashed, the same recursion guard), built from closures instead:
about half the cost of a frozen class. tests/unit/test_records.py holds them to dataclass's own."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")


@overload
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """@dataclass or @dataclass(frozen=True), the same class; its eq, repr and hash made without exec."""
    def wrap(cls: type[T]) -> type[T]:
        return _made(cls, frozen)
    return wrap if cls is None else wrap(cls)


def _made(cls: type[T], frozen: bool) -> type[T]:
    own = cls.__dict__
    # dataclass's own reading of an explicit __hash__: Python sets __hash__ = None in a class that defines __eq__.
    given_hash = own.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (given_hash is dataclasses.MISSING or (given_hash is None and "__eq__" in own))
    cls = dataclasses.dataclass(cls, eq=False, repr=False, frozen=frozen)
    params = cls.__dict__["__dataclass_params__"]
    params.eq = params.repr = True  # as @dataclass(frozen=...) records them
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if "__repr__" not in own:
        _add(cls, "__repr__", _repr([f.name for f in fields if f.repr]))
    if "__eq__" not in own:
        _add(cls, "__eq__", _eq(_values([f.name for f in fields if f.compare])))
    if explicit_hash:
        return cls
    if frozen:  # dataclass's table for eq=True, unsafe_hash=False: a frozen class hashes its fields, another none
        _add(cls, "__hash__", _hash(_values([f.name for f in fields if (f.compare if f.hash is None else f.hash)])))
    else:
        cls.__hash__ = None  # type: ignore[assignment]
    return cls


def _add(cls: type, name: str, fn: Callable[..., Any]) -> None:
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    setattr(cls, name, fn)


def _values(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """The tuple of those fields' values, as dataclass's generated code writes it: (self.a, self.b, )."""
    if not names:
        return lambda self: ()
    if len(names) == 1:
        (name,) = names
        return lambda self: (getattr(self, name),)
    get: Callable[[Any], tuple[Any, ...]] = attrgetter(*names)
    return get


def _eq(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented
    return __eq__


def _hash(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))
    return __hash__


#: (id(object), thread) of the records being shown: a record that holds itself shows "..." there, as dataclass's.
_running: set[tuple[int, int]] = set()


def _repr(names: list[str]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        key = id(self), threading.get_ident()
        if key in _running:
            return "..."
        _running.add(key)
        try:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        finally:
            _running.discard(key)
        return f"{self.__class__.__qualname__}({shown})"
    return __repr__
