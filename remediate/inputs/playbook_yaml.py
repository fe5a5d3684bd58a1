"""Playbook YAML -> a validated Playbook: its keys, steps (known kinds, unique ids, when:) and diagnose: checks
(known check types); every error cites file:line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from remediate import yamlin as source
from remediate.errors import InputError
from remediate.inputs.binding import Playbook, RawCheck, RawStep
from remediate.kinds import BROKEN, HOST, REGISTRY, Param, load_kinds, refuse_unknown

TOP_KEYS: Final = frozenset({"name", "description", "vars", "steps", "diagnose"})
STEP_KEYS: Final = frozenset({"id", "kind", "target", "params", "description", "when"})
CHECK_KEYS: Final = frozenset({"id", "check", "params", "description", "fix"})
WHEN: Final = re.compile(r"^\s*changed\(\s*([a-z0-9][a-z0-9_-]*(?:\s*,\s*[a-z0-9][a-z0-9_-]*)*)\s*\)\s*$")
STEP_ID: Final = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")


def load(path: Path) -> Playbook:
    """Parse and validate a playbook's structure."""
    load_kinds(every=False)
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


def _diagnose(doc: dict[Any, Any], name: str) -> tuple[RawCheck, ...]:
    """The playbook's diagnose: checks, each a known check type with a unique id."""
    node = doc.get("diagnose")
    if node is None:
        return ()
    from remediate.diagnostics import REGISTRY as CHECKS  # a playbook without diagnose: loads no check type
    from remediate.diagnostics import load_checks

    load_checks(every=False)
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
    _known_names(params, REGISTRY[kind].params_for(params or {}), name, f"step {step_id!r}", kind)
    target = node.get("target", HOST)
    if not isinstance(target, str) or not target:
        raise InputError(f"{source.where(name, node, 'target')}: target: must be 'host', 'local' or an inventory host")
    line_of_params = source.where(name, node, "params") if params else at
    return RawStep(step_id, kind, target, params, line_of_params, str(node.get("description") or ""),
                   _when(node, name, step_id))


def _known_names(params: dict[Any, Any] | None, known: Mapping[str, Param], name: str, label: str, kind: str) -> None:
    """Every parameter name is one the kind or check type takes, checked as written (before any variable is known),
    so that `validate` refuses a misspelt one at its own line, with the nearest name."""
    for key in params or {}:
        if key not in known:
            refuse_unknown([key], known, source.where(name, params, key), label, kind)


def _when(node: dict[Any, Any], name: str, step_id: str) -> tuple[str, ...] | None:
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
    """Every when: names steps of this playbook (not itself); a kind that only proves (proves_only) without when:
    waits for every earlier step."""
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
