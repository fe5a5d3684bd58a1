"""{{ var }} substitution for one host: variables resolved in any order, refused when they loop, nest too deep or
expand past a budget; every error names the line the value came from."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from remediate import jsonin
from remediate.errors import InputError
from remediate.inputs.templates import TEMPLATE, Lookup, render_command
from remediate.kinds import StepOutput

#: The most characters one value may expand to through {{ var }}, and all the expansion of one host's variables, steps
#: and checks together: variables that each name the one before twice double at every line, and 30 such lines of
#: a playbook of 800 bytes reach gigabytes.
MAX_VALUE_CHARS: Final = 1024 * 1024
MAX_EXPANDED_CHARS: Final = 16 * MAX_VALUE_CHARS


class Budget:
    """The expansion one host's variables, steps and checks have cost so far, and how deep substitution has gone."""

    def __init__(self) -> None:
        self.spent = 0
        self.level = 0
        self._measured: dict[int, tuple[Any, int, int]] = {}  # id -> (container, size, depth): each measured once

    def size(self, value: Any) -> int:
        """About how many characters value stands for once written out, each shared part counted where it stands."""
        return self.measure(value)[0]

    def measure(self, value: Any) -> tuple[int, int]:
        """value's size, and how many containers deep it nests, a variable it holds counted with its own depth."""
        if isinstance(value, str):
            return len(value), 0
        if not isinstance(value, (list, dict)):
            return 8, 0
        known = self._measured.get(id(value))
        if known is not None and known[0] is value:
            return known[1], known[2]
        size, depth = 2, 0
        for item in ([*value.keys(), *value.values()] if isinstance(value, dict) else value):
            below = self.measure(item)  # a variable it holds is measured already: this recursion stays shallow
            size, depth = size + below[0] + 2, max(depth, below[1])
        self._measured[id(value)] = (value, size, depth + 1)
        return size, depth + 1

    def charge(self, value: Any, where: str, what: str) -> Any:
        """value, once what it adds to this host's expansion is within MAX_EXPANDED_CHARS."""
        self.spent += self.size(value)
        if self.spent > MAX_EXPANDED_CHARS:
            raise InputError(f"{where}: {what}: the variables of this host expand to more than "
                             f"{MAX_EXPANDED_CHARS // MAX_VALUE_CHARS} MiB altogether; refusing them",
                             hint="a variable that names another several times doubles at every step; write the value out")
        return value

    def descend(self, where: str, what: str) -> None:
        self.level += 1
        if self.level > jsonin.MAX_DEPTH:
            raise InputError(f"{where}: {what} nests more than {jsonin.MAX_DEPTH} levels deep, counting each "
                             "variable it names in turn", hint="shorten the chain of variables that each name the next")


class Resolver:
    """Variables resolved once each, in any order: {{ var }} references followed, refused when they loop or explode."""

    def __init__(self, merged: Mapping[str, Any], given_at: Callable[[str], str], budget: Budget) -> None:
        self.merged = merged
        self.given_at = given_at
        self.budget = budget
        self.done: dict[str, Any] = {}
        self.chain: list[str] = []

    def value(self, name: str) -> Any:
        if name in self.done:
            return self.done[name]
        at, what = self.given_at(name), f"variable {name!r}"
        if name in self.chain:
            raise InputError(f"{at}: {what} refers to itself through {' -> '.join([*self.chain, name])}")

        def lookup(ref: str) -> Any:
            if ref not in self.merged:
                raise InputError(f"{at}: {what} uses undefined variable {ref!r}")
            self.budget.descend(at, what)
            self.chain.append(name)
            try:
                return self.budget.charge(self.value(ref), at, what)
            finally:
                self.chain.pop()
                self.budget.level -= 1

        value = substitute(self.merged[name], lookup, self.budget, at, what)
        size, depth = self.budget.measure(value)
        if size > MAX_VALUE_CHARS:
            raise _too_long(at, what)
        if depth > jsonin.MAX_DEPTH:
            raise InputError(f"{at}: {what} nests more than {jsonin.MAX_DEPTH} levels deep with the lists and mappings "
                             "of the variables it names", hint="flatten it")
        self.done[name] = value
        return value


def _too_long(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what} expands to more than {MAX_VALUE_CHARS // (1024 * 1024)} MiB through the "
                      "variables it names; refusing it",
                      hint="a variable that names another several times doubles at every step; write the value out")


def lookup_in(variables: Mapping[str, Any], where: str, what: str, budget: Budget, *, given: bool = True) -> Lookup:
    """A variable lookup that names the step and the line when a variable is undefined (or, when it must be given,
    has no value), and charges what it returns to the host's budget."""
    def lookup(ref: str) -> Any:
        if ref not in variables:
            if ref.startswith("steps."):
                raise InputError(f"{where}: {what} uses {{{{ {ref} }}}}, which no earlier step gives",
                                 hint="a step's outputs are listed by `remediate kinds KIND`; name an earlier step")
            raise InputError(f"{where}: {what} uses undefined variable {ref!r}",
                             hint="define it under vars:, in the inventory, or with -e")
        if given and variables[ref] is None:  # `name: ~` under vars: is a value the operator must give
            raise InputError(f"{where}: {what} uses variable {ref!r}, which has no value",
                             hint=f"give it with -e {ref}=VALUE or in the inventory (the playbook's vars: say what it is)")
        return budget.charge(variables[ref], where, what)
    return lookup


def render(value: Any, variables: Mapping[str, Any], where: str, what: str, budget: Budget) -> Any:
    return substitute(value, lookup_in(variables, where, what, budget), budget, where, what)


def render_command_param(value: Any, variables: Mapping[str, Any], where: str, what: str, budget: Budget) -> Any:
    """A command param: split before substitution (templates.py), so one variable is one argument."""
    return render_command(value, lookup_in(variables, where, what, budget), f"{where}: {what}")


def referenced(value: Any) -> frozenset[str]:
    """The variables the {{ name }} templates in value name (steps.ID.NAME outputs aside), however nested."""
    found = {match.group(1) for text in _strings(value) for match in TEMPLATE.finditer(text)}
    return frozenset(name for name in found if not name.startswith("steps."))


def _strings(value: Any) -> Iterator[str]:
    """Every string in a value (mapping keys too), however nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _inline(value: Any) -> str:
    if isinstance(value, StepOutput):
        raise InputError(f"{value} must be a whole param value, not part of a text: a step's output is known only "
                         "when that step has been planned", hint=f'write the param as "{value}" alone')
    return "" if value is None else str(value)


def substitute(value: Any, lookup: Lookup, budget: Budget, where: str, what: str) -> Any:
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value)
        if whole:
            return lookup(whole.group(1))
        return _interpolate(value, lookup, budget, where, what)
    if isinstance(value, (list, dict)):
        budget.descend(where, what)
        try:
            if isinstance(value, list):
                return [substitute(v, lookup, budget, where, what) for v in value]
            return {k: substitute(v, lookup, budget, where, what) for k, v in value.items()}
        finally:
            budget.level -= 1
    return value


def _interpolate(text: str, lookup: Lookup, budget: Budget, where: str, what: str) -> str:
    """text with each {{ var }} replaced by its value as text; refused before it is built when past MAX_VALUE_CHARS."""
    parts, length, start = [], 0, 0
    for match in TEMPLATE.finditer(text):
        found = lookup(match.group(1))
        length += match.start() - start + budget.size(found)
        if length > MAX_VALUE_CHARS:
            raise _too_long(where, what)
        parts += [text[start:match.start()], _inline(found)]
        start = match.end()
    parts.append(text[start:])
    return "".join(parts)
