"""A kind's or a check type's parameters: their declared types, and the checks that name file:line and the fix."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from remediate.errors import InputError
from remediate.records import record


@record(frozen=True)
class Param:
    """One parameter of a step kind: its type, whether it is required, its default."""

    type: type | tuple[type, ...]
    required: bool = False
    default: Any = None
    help: str = ""
    #: A command: the playbook splits it into arguments before substituting variables (see templates.py).
    command: bool = False


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """The start of a hint naming the nearest of known ("did you mean 'x'? "), or nothing when none is near."""
    import difflib  # only a misspelt name needs it

    near = difflib.get_close_matches(word, sorted(known), n=1)
    return f"did you mean {near[0]!r}? " if near else ""


def refuse_unknown(given: Iterable[str], params: Mapping[str, Param], where: str, label: str, kind: str) -> None:
    """An InputError for the first parameter given that the kind (or check type) does not take, with the nearest one
    it does take: a misspelt name is refused, never ignored."""
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise InputError(f"{where}: {label} ({kind}) has no parameter {unknown[0]!r}",
                         hint=did_you_mean(unknown[0], params) + f"{kind} takes: "
                                                                 f"{', '.join(sorted(params)) or 'no parameters'}")


def param_value(name: str, param: Param, value: Any, where: str, label: str, kind: str) -> Any:
    """value, when it suits param (present if required, of its type); else an InputError citing where and label."""
    if value is None and param.required:
        raise InputError(f"{where}: {label} ({kind}) needs the parameter {name!r}"
                         + (f": {param.help}" if param.help else ""))
    if value is not None and (not isinstance(value, param.type) or _bool_for_number(value, param.type)):
        raise InputError(f"{where}: {label}: parameter {name!r} must be {_type_name(param.type)}, "
                         f"not {type(value).__name__} ({value!r})")
    return value


def _bool_for_number(value: Any, wanted: type | tuple[type, ...]) -> bool:
    """True for true/false where a number is wanted: YAML's booleans are ints to Python, never to an operator."""
    types = wanted if isinstance(wanted, tuple) else (wanted,)
    return isinstance(value, bool) and bool not in types


def _type_name(t: type | tuple[type, ...]) -> str:
    names = [x.__name__ for x in (t if isinstance(t, tuple) else (t,))]
    return {"str": "a string", "int": "a number", "bool": "true or false", "list": "a list", "dict": "a mapping"}.get(
        names[0], names[0]) if len(names) == 1 else " or ".join(names)
