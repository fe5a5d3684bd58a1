"""Playbook YAML -> validated steps for one host; every error cites file:line."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Final

from remediate import jsonin
from remediate import yamlin as source
from remediate.diagnostics import REGISTRY as CHECKS
from remediate.diagnostics import CheckSpec, CheckType, load_checks
from remediate.errors import InputError, RemediateError
from remediate.inputs.inventory import Host
from remediate.inputs.templates import TEMPLATE, render_command
from remediate.kinds import (
    BROKEN,
    HOST,
    REGISTRY,
    Param,
    Step,
    StepOutput,
    StepSpec,
    did_you_mean,
    failure,
    load_kinds,
    refuse_unknown,
)

DEFAULT_PLAYBOOK: Final = "smtp-to-lmtp"
#: Folders of runbooks of your own, searched in order before the shipped ones (as ANSIBLE_ROLES_PATH): colon-separated.
PATH_ENV: Final = "REMEDIATE_PLAYBOOK_PATH"
SUFFIXES: Final = (".yml", ".yaml")
#: Variables remediate itself reads from a host's variables, whatever the playbook says (runner: the journal's folder).
READ_BY_REMEDIATE: Final = frozenset({"remediate_state_dir"})
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
    #: file:line of fix:, for an error about the playbook it names.
    fix_where: str = ""


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

    def checks(self, host: Host, extra: Mapping[str, Any], fixes: Mapping[str, str] | None = None) -> list[CheckType]:
        """The diagnose checks for one host with variables substituted; raises InputError before any connection.
        fixes: for each check id, how its fix playbook is named in the next command (see fix_arguments)."""
        budget = _Budget()
        variables = self.variables(host, extra, budget)
        bound = []
        for raw in self.diagnose:
            # A variable without value (`name: ~`) reads as empty here: a check must run before anyone knows it.
            lookup = _lookup(variables, raw.where, f"check {raw.id!r}", budget, given=False)
            params = _substitute(source.plain(raw.params or {}), lookup, budget, raw.where, f"check {raw.id!r}")
            fix = (fixes or {}).get(raw.id, raw.fix)
            spec = CheckSpec(id=raw.id, check=raw.check, params=params, where=raw.where, fix=fix, playbook=self.name)
            bound.append(CHECKS[raw.check](spec))
        return bound

    def fixes(self) -> dict[str, Path]:
        """For each check with fix:, the playbook file it names (see resolve_fix); InputError citing fix:'s line."""
        return {raw.id: resolve_fix(raw.fix, Path(self.path), raw.fix_where) for raw in self.diagnose if raw.fix}

    def fix_arguments(self) -> dict[str, str]:
        """For each check with fix:, how `-p` names that playbook from here: the next command works as printed."""
        return {check: argument(path) for check, path in self.fixes().items()}

    def names_used(self) -> frozenset[str]:
        """Every variable this playbook reads: its vars:, and each {{ name }} in its steps, checks and vars."""
        texts = [self.defaults, *((s.params, s.target) for s in self.steps), *(c.params for c in self.diagnose)]
        return frozenset({*self.defaults, *referenced(texts)})

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


def search_path() -> list[Path]:
    """Where a playbook is looked up by name: the folders of $REMEDIATE_PLAYBOOK_PATH in their order, then the
    shipped playbooks. Yours come first, as Ansible's roles_path and collections path come before what ships with
    it: a site can replace a shipped runbook by giving its own of the same name (which says so when used)."""
    configured = [Path(part).expanduser() for part in os.environ.get(PATH_ENV, "").split(os.pathsep) if part]
    return [*configured, shipped_folder()]


def shipped_folder() -> Path:
    return Path(str(resources.files("remediate.playbooks")))


def _stem(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _in_folder(folder: Path, name: str) -> Path | None:
    """folder/NAME.yml (or .yaml), when it is a file."""
    for suffix in SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def locate(name_or_path: str | None) -> Path:
    """A playbook file: a path that exists, else the first playbook of that name on the search path."""
    wanted = name_or_path or DEFAULT_PLAYBOOK
    path = Path(wanted)
    if path.is_file():
        return path
    if "/" not in wanted:
        for folder in search_path():
            found = _in_folder(folder, _stem(wanted))
            if found is not None:
                return found
    names = sorted(listed.name for listed in catalog())
    raise InputError(f"{wanted}: no such playbook file, and no playbook on the search path has that name",
                     hint=did_you_mean(_stem(path.name), names) + f"searched {describe_search_path()}: "
                                                                   f"{', '.join(names)}")


def describe_search_path() -> str:
    """The search path in words, for errors and `remediate playbooks`."""
    configured = search_path()[:-1]
    if not configured:
        return f"the shipped playbooks (${PATH_ENV} adds folders of your own, searched first)"
    shown = ", ".join(str(folder) + ("" if folder.is_dir() else " (missing)") for folder in configured)
    return f"${PATH_ENV} ({shown}), then the shipped playbooks"


@dataclass(frozen=True)
class Listed:
    """A playbook found on the search path: the name -p takes, its file, and the files of that name it hides."""

    name: str
    path: Path
    shipped: bool
    #: Later files of the same name (a shipped one included), which -p NAME never reaches.
    shadows: tuple[Path, ...] = ()


def catalog() -> list[Listed]:
    """Every playbook on the search path by name, the first of each name winning. In a folder of yours, a YAML file
    is a playbook when it has a top-level steps: (an inventory or a vars file beside it is not)."""
    found: dict[str, Listed] = {}
    shipped_dir = shipped_folder()
    for folder in search_path():
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if file.suffix not in SUFFIXES or not file.is_file() or not (folder == shipped_dir or looks_like_playbook(file)):
                continue
            listed = found.get(file.stem)
            if listed is None:
                found[file.stem] = Listed(file.stem, file, folder == shipped_dir)
            elif listed.path != file:
                found[file.stem] = replace(listed, shadows=(*listed.shadows, file))
    return sorted(found.values(), key=lambda listed: listed.name)


def looks_like_playbook(path: Path) -> bool:
    """A YAML file with a top-level steps: key (read as text: a broken playbook still looks like one)."""
    try:
        with path.open("rb") as f:
            head = f.read(source.MAX_DOCUMENT_BYTES)
    except OSError:
        return False
    return re.search(rb"^steps\s*:", head, re.M) is not None


def shadowed(path: Path) -> Path | None:
    """The shipped playbook that path, a playbook of a folder on the search path, hides by having its name."""
    if path.parent.resolve() not in {folder.resolve() for folder in search_path()[:-1]}:
        return None
    found = _in_folder(shipped_folder(), _stem(path.name))
    return found if found is not None and found.resolve() != path.resolve() else None


def shipped() -> list[Path]:
    """The playbooks that ship with remediate."""
    folder = resources.files("remediate.playbooks")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yml"))


def argument(path: Path) -> str:
    """How `-p` names this playbook file from here: its name when -p NAME finds this very file, else its path
    (relative to the current folder when it is below it), quoted for a shell."""
    try:
        if locate(path.stem).resolve() == path.resolve():
            return path.stem
    except InputError:
        pass
    relative = os.path.relpath(path)
    return shlex.quote(str(path.resolve()) if relative.startswith("..") else relative)


def resolve_fix(fix: str, playbook_path: Path, where: str) -> Path:
    """The playbook a diagnose check's fix: names. A path is read from the playbook's folder; a name is looked up in
    the playbook's own folder first (runbooks that fix each other sit together), then on the search path."""
    folder = playbook_path.parent
    if "/" in fix or fix.endswith(SUFFIXES):
        path = Path(fix).expanduser()
        path = path if path.is_absolute() else folder / path
        if path.is_file():
            return path
        raise InputError(f"{where}: fix: {fix!r}: no such playbook file (a relative path is read from {folder})")
    found = _in_folder(folder, fix)
    for other in search_path():
        found = found or _in_folder(other, fix)
    if found is not None:
        return found
    beside = [p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()] if folder.is_dir() else []
    known = {*beside, *(listed.name for listed in catalog())}
    raise InputError(f"{where}: fix: {fix!r} names no playbook, neither beside {playbook_path.name} nor on the "
                     "search path", hint=did_you_mean(fix, known) + f"searched {folder}, then {describe_search_path()}")


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
        _known_names(params, CHECKS[item["check"]].params, name, f"check {check_id!r}", item["check"])
        fix = item.get("fix")
        if fix is not None and not (isinstance(fix, str) and fix.strip() and "\n" not in fix):
            raise InputError(f"{source.where(name, item, 'fix')}: fix: names the playbook that fixes a finding (a name "
                             f"on the search path, or a path from this playbook's folder), not {fix!r}")
        checks.append(RawCheck(check_id, item["check"], params, source.where(name, item, "params") if params else at,
                               fix, str(item.get("description") or ""), source.where(name, item, "fix") if fix else at))
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
    _known_names(params, REGISTRY[kind].params, name, f"step {step_id!r}", kind)
    target = node.get("target", HOST)
    if not isinstance(target, str) or not target:
        raise InputError(f"{source.where(name, node, 'target')}: target: must be 'host', 'local' or an inventory host")
    line_of_params = source.where(name, node, "params") if params else at
    return RawStep(step_id, kind, target, params, line_of_params, str(node.get("description") or ""),
                   _when(node, name, step_id))


def _known_names(params: dict | None, known: Mapping[str, Param], name: str, label: str, kind: str) -> None:
    """Every parameter name is one the kind or check type takes, checked as written (before any variable is known),
    so that `validate` refuses a misspelt one at its own line, with the nearest name."""
    for key in params or {}:
        if key not in known:
            refuse_unknown([key], known, source.where(name, params, key), label, kind)


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
            when = tuple(ids[:index]) if REGISTRY[raw.kind].proves_only and index else None
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
