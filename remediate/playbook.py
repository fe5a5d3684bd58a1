"""Playbook YAML -> validated steps for one host; every error cites file:line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Final

from . import jsonin, source
from .checks import REGISTRY as CHECKS
from .checks import CheckSpec, CheckType, load_checks
from .errors import InputError, RemediateError
from .inventory import Host
from .steps import BROKEN, HOST, REGISTRY, Step, StepOutput, StepSpec, failure, load_kinds
from .templates import TEMPLATE, render_command

DEFAULT_PLAYBOOK: Final = "smtp-to-lmtp"
TOP_KEYS: Final = frozenset({"name", "description", "vars", "steps", "diagnose"})
STEP_KEYS: Final = frozenset({"id", "kind", "target", "params", "description", "when"})
CHECK_KEYS: Final = frozenset({"id", "check", "params", "description", "fix"})
WHEN: Final = re.compile(r"^\s*changed\(\s*([a-z0-9][a-z0-9_-]*(?:\s*,\s*[a-z0-9][a-z0-9_-]*)*)\s*\)\s*$")
STEP_ID: Final = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
#: The most characters one value may expand to through {{ var }}, and all the expansion of one host's variables, steps
#: and checks together: variables that each name the one before twice double at every line, and 30 such lines of
#: a playbook of 800 bytes reach gigabytes.
MAX_VALUE_CHARS: Final = 1024 * 1024
MAX_EXPANDED_CHARS: Final = 16 * MAX_VALUE_CHARS


@dataclass(frozen=True)
class RawStep:
    id: str
    kind: str
    target: str
    params: Any
    where: str
    description: str
    #: None: always run. Else the ids of the steps one of which must change something in this run.
    when: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RawCheck:
    """A diagnose: check as written: its type, params (not yet substituted), and the playbook that fixes a finding."""

    id: str
    check: str
    params: Any
    where: str
    fix: str | None
    description: str = ""


@dataclass(frozen=True)
class Playbook:
    """A validated playbook, not yet bound to a host."""

    name: str
    description: str
    path: str
    defaults: Mapping[str, Any]
    steps: tuple[RawStep, ...]
    diagnose: tuple[RawCheck, ...] = ()
    #: file:line of each variable under vars:, for errors about its value.
    var_lines: Mapping[str, str] = field(default_factory=dict)

    def checks(self, host: Host, extra: Mapping[str, Any]) -> list[CheckType]:
        """The diagnose checks for one host with variables substituted; raises InputError before any connection."""
        budget = _Budget()
        variables = self.variables(host, extra, budget)
        bound = []
        for raw in self.diagnose:
            # A variable without value (`name: ~`) reads as empty here: a check must run before anyone knows it.
            lookup = _lookup(variables, raw.where, f"check {raw.id!r}", budget, given=False)
            params = _substitute(source.plain(raw.params or {}), lookup, budget, raw.where, f"check {raw.id!r}")
            spec = CheckSpec(id=raw.id, check=raw.check, params=params, where=raw.where, fix=raw.fix, playbook=self.name)
            bound.append(CHECKS[raw.check](spec))
        return bound

    def variables(self, host: Host, extra: Mapping[str, Any], budget: _Budget | None = None) -> dict[str, Any]:
        """Playbook defaults < inventory vars < -e, with {{ var }} references resolved."""
        merged = {**self.defaults, **host.vars, **extra}
        merged["inventory_hostname"] = host.name
        resolver = _Resolver(merged, lambda name: self._given_at(name, host, extra), budget or _Budget())
        return {name: resolver.value(name) for name in merged}

    def _given_at(self, name: str, host: Host, extra: Mapping[str, Any]) -> str:
        """Where a variable's value was given, for an error: -e, the inventory (file:line) or vars: (file:line)."""
        if name in extra:
            return "-e"
        if name in host.vars:
            return host.origins.get(name) or host.where or f"inventory host {host.name!r}"
        return self.var_lines.get(name, self.path)

    def bind(self, host: Host, extra: Mapping[str, Any]) -> tuple[dict[str, Any], list[Step]]:
        """The steps for one host with variables substituted; raises InputError before any connection."""
        budget = _Budget()
        variables = self.variables(host, extra, budget)
        steps = []
        for index, raw in enumerate(self.steps):
            kind = REGISTRY[raw.kind]
            known = {**variables, **_outputs(self.steps[:index])}
            params = {name: (_render_command if name in kind.params and kind.params[name].command else _render)(
                          value, known, raw.where, f"step {raw.id!r}", budget)
                      for name, value in source.plain(raw.params or {}).items()}
            target = _render(raw.target, variables, raw.where, f"step {raw.id!r}", budget)
            spec = StepSpec(id=raw.id, kind=raw.kind, target=str(target), params=params, where=raw.where,
                            description=raw.description, when=raw.when)
            try:
                steps.append(kind(spec))
            except RemediateError:
                raise
            except Exception as e:  # a bug in a kind's validate(): named with its package, not remediate's
                raise failure(raw.kind, raw.id, e) from e
        return variables, steps


def locate(name_or_path: str | None) -> Path:
    """A playbook file: a path that exists, else the name of one shipped with remediate."""
    wanted = name_or_path or DEFAULT_PLAYBOOK
    path = Path(wanted)
    if path.is_file():
        return path
    shipped = resources.files("remediate.playbooks")
    stem = wanted.removesuffix(".yml")
    candidate = shipped / f"{stem}.yml"
    if "/" not in wanted and candidate.is_file():
        return Path(str(candidate))
    names = sorted(p.name[:-4] for p in shipped.iterdir() if p.name.endswith(".yml"))
    raise InputError(f"{wanted}: no such playbook file, and no shipped playbook has that name",
                     hint=f"shipped playbooks: {', '.join(names)}")


def shipped() -> list[Path]:
    """The playbooks that ship with remediate."""
    folder = resources.files("remediate.playbooks")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yml"))


def load(path: Path) -> Playbook:
    """Parse and validate a playbook's structure."""
    load_kinds()
    name = str(path)
    doc = source.load(path, what="playbook")
    if not isinstance(doc, dict):
        raise InputError(f"{name}: a playbook is a mapping with name: and steps:")
    source.only_keys(name, doc, TOP_KEYS, "playbook")
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise InputError(f"{source.where(name, doc, 'name')}: the playbook needs a name: string")
    defaults = doc.get("vars") or {}
    if not isinstance(defaults, dict):
        raise InputError(f"{source.where(name, doc, 'vars')}: vars: must be a mapping of names to defaults")
    steps_node = doc.get("steps")
    if not isinstance(steps_node, list) or not steps_node:
        raise InputError(f"{source.where(name, doc, 'steps')}: steps: must be a non-empty list")
    steps: list[RawStep] = []
    for index, node in enumerate(steps_node):
        at = source.where(name, steps_node, index=index)
        steps.append(_raw_step(node, at, name, {s.id for s in steps}))
    steps = _with_dependencies(steps, steps_node, name)
    return Playbook(doc["name"], str(doc.get("description") or ""), name, source.plain(defaults), tuple(steps),
                    _diagnose(doc, name), {str(k): source.where(name, defaults, k) for k in defaults})


def _diagnose(doc: dict, name: str) -> tuple[RawCheck, ...]:
    """The playbook's diagnose: checks, each a known check type with a unique id."""
    node = doc.get("diagnose")
    if node is None:
        return ()
    load_checks()
    if not isinstance(node, list):
        raise InputError(f"{source.where(name, doc, 'diagnose')}: diagnose: must be a list of checks")
    checks: list[RawCheck] = []
    for index, item in enumerate(node):
        at = source.where(name, node, index=index)
        check_id = _entry(item, at, name, CHECK_KEYS, "check", {c.id for c in checks})
        if not isinstance(item.get("check"), str) or item.get("check") not in CHECKS:
            raise InputError(f"{source.where(name, item, 'check')}: check {check_id!r} has unknown type {item.get('check')!r}",
                             hint=f"check types: {', '.join(sorted(CHECKS))}")
        params = item.get("params")
        if params is not None and not isinstance(params, dict):
            raise InputError(f"{source.where(name, item, 'params')}: params: of check {check_id!r} must be a mapping")
        fix = item.get("fix")
        if fix is not None and not (isinstance(fix, str) and STEP_ID.match(fix)):
            raise InputError(f"{source.where(name, item, 'fix')}: fix: names the playbook that fixes a finding, not {fix!r}")
        checks.append(RawCheck(check_id, item["check"], params, source.where(name, item, "params") if params else at,
                               fix, str(item.get("description") or "")))
    return tuple(checks)


def _entry(node: Any, at: str, name: str, keys: frozenset[str], what: str, seen: set[str]) -> str:
    """A step or diagnose check as written: a mapping of known keys with a well-formed id not used before; its id."""
    type_key = "kind" if what == "step" else "check"
    label = "step" if what == "step" else "diagnose check"
    if not isinstance(node, dict):
        raise InputError(f"{at}: a {label} is a mapping with id:, {type_key}: and params:")
    source.only_keys(name, node, keys, label)
    entry_id = node.get("id")
    if not isinstance(entry_id, str) or not STEP_ID.match(entry_id):
        raise InputError(f"{source.where(name, node, 'id')}: a {what} needs an id: of lower-case letters, digits, - and _")
    if entry_id in seen:
        raise InputError(f"{source.where(name, node, 'id')}: {what} id {entry_id!r} is used twice")
    return entry_id


def _raw_step(node: Any, at: str, name: str, seen: set[str]) -> RawStep:
    step_id = _entry(node, at, name, STEP_KEYS, "step", seen)
    kind = node.get("kind")
    if isinstance(kind, str) and kind in BROKEN:
        raise InputError(f"{source.where(name, node, 'kind')}: step {step_id!r}: {BROKEN[kind]}",
                         hint="reinstall or remove that package")
    if not isinstance(kind, str) or kind not in REGISTRY:  # a list is no kind, and cannot even be looked up
        raise InputError(f"{source.where(name, node, 'kind')}: step {step_id!r} has unknown kind {kind!r}",
                         hint=f"known kinds: {', '.join(sorted(REGISTRY))}")
    params = node.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError(f"{source.where(name, node, 'params')}: params: of step {step_id!r} must be a mapping")
    target = node.get("target", HOST)
    if not isinstance(target, str) or not target:
        raise InputError(f"{source.where(name, node, 'target')}: target: must be 'host', 'local' or an inventory host")
    line_of_params = source.where(name, node, "params") if params else at
    return RawStep(step_id, kind, target, params, line_of_params, str(node.get("description") or ""),
                   _when(node, name, step_id))


def _when(node: dict, name: str, step_id: str) -> tuple[str, ...] | None:
    """`when: always` (None) or `when: changed(a, b)` (the ids); checked against the playbook afterwards."""
    if "when" not in node:
        return ()  # the kind's default, settled by _with_dependencies
    value = node["when"]
    if value == "always":
        return None
    match = WHEN.match(value) if isinstance(value, str) else None
    if not match:
        raise InputError(f"{source.where(name, node, 'when')}: step {step_id!r}: when: must be always or "
                         f"changed(STEP, ...), not {value!r}", hint="for example when: changed(relay-transport)")
    return tuple(part.strip() for part in match.group(1).split(","))


def _with_dependencies(steps: list[RawStep], nodes: list[Any], name: str) -> list[RawStep]:
    """Every when: names steps of this playbook (not itself); a check kind without when: waits for every earlier step."""
    ids = [s.id for s in steps]
    settled = []
    for index, (raw, node) in enumerate(zip(steps, nodes)):
        when = raw.when
        if when == ():
            when = tuple(ids[:index]) if REGISTRY[raw.kind].checks_only and index else None
        for dep in when or ():
            if dep not in ids or dep == raw.id:
                raise InputError(f"{source.where(name, node, 'when')}: step {raw.id!r}: when: names "
                                 f"{'itself' if dep == raw.id else 'no step ' + repr(dep)}",
                                 hint=f"steps of this playbook: {', '.join(ids)}")
        settled.append(replace(raw, when=when))
    return settled


def parse_extra(pairs: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """-e as Ansible takes it: key=value (strings, except whole numbers, true/false and [a, b] lists), @FILE (a YAML
    or JSON mapping), or a JSON object; later ones win."""
    extra: dict[str, Any] = {}
    for pair in pairs:
        if pair.startswith("@"):
            doc = source.load(Path(pair[1:]), what="variables file")
            if not isinstance(doc, dict):
                raise InputError(f"{pair[1:]}: -e @FILE must hold a mapping of variable names to values")
            extra.update(source.plain(doc))
            continue
        if pair.lstrip().startswith("{"):
            doc = jsonin.loads(pair, what=f"-e {_brief(pair)}", hint='for example -e \'{"lmtp_port": 2525}\'')
            if not isinstance(doc, dict):
                raise InputError(f"-e {_brief(pair)}: a JSON value for -e must be an object")
            extra.update(doc)
            continue
        key, sep, value = pair.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise InputError(f"-e {pair!r}: expected key=value with a key of letters, digits and _",
                             hint="for example -e lmtp_port=2525")
        extra[key] = _typed(value)
    return extra


def _brief(pair: str) -> str:
    """An -e argument as an error quotes it: whole when short, else its start."""
    return repr(pair) if len(pair) <= 60 else repr(pair[:50]) + f"... ({len(pair)} characters)"


def _typed(value: str) -> Any:
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value.startswith("[") and value.endswith("]"):
        return [v.strip() for v in value[1:-1].split(",") if v.strip()]
    return value


class _Budget:
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


class _Resolver:
    """Variables resolved once each, in any order: {{ var }} references followed, refused when they loop or explode."""

    def __init__(self, merged: Mapping[str, Any], given_at: Any, budget: _Budget) -> None:
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

        value = _substitute(self.merged[name], lookup, self.budget, at, what)
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


def _outputs(earlier: tuple[RawStep, ...]) -> dict[str, StepOutput]:
    """steps.ID.NAME for every output an earlier step's kind declares."""
    return {f"steps.{raw.id}.{name}": StepOutput(raw.id, name) for raw in earlier for name in REGISTRY[raw.kind].outputs}


def _lookup(variables: Mapping[str, Any], where: str, what: str, budget: _Budget, *, given: bool = True) -> Any:
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


def _render(value: Any, variables: Mapping[str, Any], where: str, what: str, budget: _Budget) -> Any:
    return _substitute(value, _lookup(variables, where, what, budget), budget, where, what)


def _render_command(value: Any, variables: Mapping[str, Any], where: str, what: str, budget: _Budget) -> Any:
    """A command param: split before substitution (templates.py), so one variable is one argument."""
    return render_command(value, _lookup(variables, where, what, budget), f"{where}: {what}")


def _inline(value: Any) -> str:
    if isinstance(value, StepOutput):
        raise InputError(f"{value} must be a whole param value, not part of a text: a step's output is known only "
                         "when that step has been checked", hint=f'write the param as "{value}" alone')
    return "" if value is None else str(value)


def _substitute(value: Any, lookup: Any, budget: _Budget, where: str, what: str) -> Any:
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value)
        if whole:
            return lookup(whole.group(1))
        return _interpolate(value, lookup, budget, where, what)
    if isinstance(value, (list, dict)):
        budget.descend(where, what)
        try:
            if isinstance(value, list):
                return [_substitute(v, lookup, budget, where, what) for v in value]
            return {k: _substitute(v, lookup, budget, where, what) for k, v in value.items()}
        finally:
            budget.level -= 1
    return value


def _interpolate(text: str, lookup: Any, budget: _Budget, where: str, what: str) -> str:
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
