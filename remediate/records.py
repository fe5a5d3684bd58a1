"""`@record` and `@plain`: dataclasses made without compiling code for each class.

Python 3.11's dataclass compiles every method it adds with its own exec: six for a frozen class (__init__, __repr__,
__eq__, __hash__, __setattr__, __delattr__), 0.15-0.3 ms of CPU a class, and some 80 classes are made at the start of
every `remediate plan` and `apply`. A record is the same dataclass (fields(), replace(), asdict(), frozen, the same
__init__ signature) with methods that do what dataclass's own do, field for field (the same fields set, compared,
hashed and shown, the same tuple hashed, the same recursion guard), made without exec:
- __eq__, __repr__, __hash__, and a frozen class's __setattr__ and __delattr__, from closures;
- __init__ from a template compiled once for each shape of class (how many fields, which have defaults or
  factories, frozen or not), given the class's names (types.CodeType.replace) and its defaults.
A frozen record that inherits from another dataclass keeps dataclass's own __setattr__, __delattr__ and checks.
`@plain` is `@dataclass(eq=False, repr=False)` made the same way: the events, built once and printed once.
tests/unit/test_records.py holds them to dataclass's own."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import threading
import types
from collections.abc import Callable
from operator import attrgetter
from typing import Any, Final, TypeVar, dataclass_transform, overload

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


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def plain(cls: type[T], /) -> type[T]:
    """@dataclass(eq=False, repr=False), the same class (equal only to itself, hashed and shown as an object), its
    __init__ made without exec."""
    return _dataclass(cls, frozen=False)


def _made(cls: type[T], frozen: bool) -> type[T]:
    own = cls.__dict__
    # dataclass's own reading of an explicit __hash__: Python sets __hash__ = None in a class that defines __eq__.
    given_hash = own.get("__hash__", dataclasses.MISSING)
    explicit_hash = not (given_hash is dataclasses.MISSING or (given_hash is None and "__eq__" in own))
    cls = _dataclass(cls, frozen)
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


def _dataclass(cls: type[T], frozen: bool) -> type[T]:
    """dataclass(cls, eq=False, repr=False, frozen=frozen) with the __init__ (and, when frozen, the __setattr__ and
    __delattr__) it would add, made without exec, and its docstring as it would write it."""
    own = cls.__dict__
    given_doc = own.get("__doc__")
    if not given_doc:  # written below, once the class has its __init__: dataclass's would be object's signature
        cls.__doc__ = "-"
    # dataclass's own frozen methods and checks where a dataclass is inherited from (it compares their frozenness)
    inherits = frozen and any(hasattr(b, "__dataclass_fields__") for b in cls.__mro__[1:])
    cls = dataclasses.dataclass(cls, init=False, eq=False, repr=False, frozen=inherits)
    params = cls.__dict__["__dataclass_params__"]
    params.init = True
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if "__init__" not in own:
        _add(cls, "__init__", _init(cls, fields, frozen))
    if frozen and not inherits:
        for name in ("__setattr__", "__delattr__"):
            if name in own:  # dataclass's own refusal
                raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
        params.frozen = True
        names = frozenset(f.name for f in fields)
        _add(cls, "__setattr__", _frozen_set(cls, names))
        _add(cls, "__delattr__", _frozen_del(cls, names))
    if not given_doc:  # as dataclass writes it, now that the class has its __init__
        try:
            cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
        except (TypeError, ValueError):
            cls.__doc__ = cls.__name__
    return cls


class _Factory:
    """The default of an __init__ parameter whose field has a default_factory (dataclass's shows the same)."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()
#: The __init__ of each shape of class, compiled once: (frozen, has __post_init__, what each field __init__ sets is
#: set from: "p" a parameter, "f" a parameter or the field's factory, "F" the factory), its names placeholders.
_shapes: dict[tuple[bool, bool, str], types.CodeType] = {}
#: The names an __init__'s helpers have in its closure: no field may be named so.
_HELPER: Final = "__record_"


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...], frozen: bool) -> Callable[..., None]:
    """cls's __init__ as dataclass writes it: each field set from its parameter, its default or its factory, in
    field order (object.__setattr__ when frozen), then __post_init__ when the class has one. A field neither in
    __init__ nor made by a factory is left to its class attribute, as dataclass leaves it. Its globals are the
    class's module's, as dataclass's are (typing.get_type_hints reads its annotations there); its helpers are in
    its closure."""
    later = False
    for f in fields:
        if f.kw_only or f.name == "self" or f.name.startswith(_HELPER):
            raise TypeError(f"{cls.__qualname__}: @record makes no keyword-only field, nor one named self or "
                            f"{_HELPER}...; use @dataclass")
        if f.init and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING):
            later = True
        elif f.init and later:  # dataclass's own refusal
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
    if any(isinstance(f.type, dataclasses.InitVar) or "InitVar" in str(f.type)
           for f in cls.__dict__["__dataclass_fields__"].values() if f not in fields):
        raise TypeError(f"{cls.__qualname__}: @record takes no InitVar; use @dataclass")
    made = [f for f in fields if f.init or f.default_factory is not dataclasses.MISSING]  # those __init__ sets
    how = "".join(("f" if f.init else "F") if f.default_factory is not dataclasses.MISSING else "p" for f in made)
    shape = (frozen, hasattr(cls, "__post_init__"), how)
    code = _shapes.get(shape) or _shapes.setdefault(shape, _template(*shape))
    names = {f"_{k}": f.name for k, f in enumerate(made)}
    code = code.replace(co_varnames=tuple(names.get(n, n) for n in code.co_varnames),
                        co_names=tuple(names.get(n, n) for n in code.co_names),
                        co_consts=tuple(names.get(c, c) if isinstance(c, str) else c for c in code.co_consts),
                        co_qualname=f"{cls.__qualname__}.__init__")
    helpers: dict[str, Any] = {f"{_HELPER}set__": object.__setattr__, f"{_HELPER}factory__": _FACTORY}
    helpers.update((f"{_HELPER}f{k}__", f.default_factory) for k, f in enumerate(made) if how[k] != "p")
    module = sys.modules.get(cls.__module__)
    given = tuple(f.default if how[k] == "p" else _FACTORY for k, f in enumerate(made)
                  if f.init and (f.default is not dataclasses.MISSING or how[k] == "f"))
    init = types.FunctionType(code, vars(module) if module is not None else {}, "__init__", given or None,
                              tuple(types.CellType(helpers[name]) for name in code.co_freevars))
    init.__annotations__ = {**{f.name: f.type for f in fields if f.init}, "return": None}
    return init


def _template(frozen: bool, post_init: bool, how: str) -> types.CodeType:
    """The code of an __init__ of that shape, with placeholder names (_k for the k-th field it sets), and its
    helpers free: how it sets a frozen field, the factory's marker, and each factory (__record_fk__)."""
    values = {"p": "_{k}", "f": f"{_HELPER}f{{k}}__() if _{{k}} is {_HELPER}factory__ else _{{k}}",
              "F": f"{_HELPER}f{{k}}__()"}
    lines = [(f"{_HELPER}set__(self, '_{k}', {{}})" if frozen else f"self._{k} = {{}}").format(values[c].format(k=k))
             for k, c in enumerate(how)]
    if post_init:
        lines.append("self.__post_init__()")
    params = ", ".join(["self", *(f"_{k}" for k, c in enumerate(how) if c != "F")])
    helpers = ", ".join([f"{_HELPER}set__", f"{_HELPER}factory__", *(f"{_HELPER}f{k}__" for k, c in enumerate(how))])
    text = (f"def {_HELPER}make__({helpers}):\n def __init__({params}):\n"
            + "".join(f"  {line}\n" for line in lines or ["pass"]) + " return __init__\n")
    make = next(c for c in compile(text, "<record>", "exec").co_consts if isinstance(c, types.CodeType))
    return next(c for c in make.co_consts if isinstance(c, types.CodeType))


def _frozen_set(cls: type[Any], names: frozenset[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)
    return __setattr__


def _frozen_del(cls: type[Any], names: frozenset[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    return __delattr__


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
