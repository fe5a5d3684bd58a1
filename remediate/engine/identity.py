"""A plan's identity: what will run, built from structure (never from the text shown to people).

Two plans have the same identity only when the same playbook text, bound to the same variables, would run the same
steps with the same parameters on files that hold the same bytes. It covers, per host: the playbook's text, every
resolved variable (exact: a secret changed at the same length is another plan), the step selection, each step's
kind, target, `when:` and every bound parameter (verify:, undo:, unless:, creates: included), and each step's plan:
its files with their before and after sha256, mode and owner, its commands and checks exactly, its data and outputs;
and the sha256 of every file the plan read. Masking is for display only and plays no part here.

A run's own id and its start time (a backup's name holds them) are replaced by placeholders, so that the same plan
made by two runs has one identity."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from remediate.contract.plan import FileChange, Plan

VERSION: Final = 3  # 2: a plan's reason (the text shown to people) no longer counts; 3: the other hosts a plan's
#  steps contact, as the inventory says to reach them, and the code that plans and applies (remediate's version and
#  each kind's package and version)


def canonical(value: Any) -> Any:
    """value as plain JSON data, every type kept apart: bytes by their sha256, sets sorted, dataclasses by field."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return {"$bytes": hashlib.sha256(value).hexdigest(), "len": len(value)}
    if isinstance(value, FileChange):
        return {"path": value.path, "target": value.target, "before": value.before_sha256, "after": value.after_sha256,
                "before_mode": value.before_mode, "before_owner": canonical(value.before_owner)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"$type": type(value).__name__, **{f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: canonical(v) for k, v in value.items()}
        pairs = [[canonical(k), canonical(v)] for k, v in value.items()]  # YAML allows keys of any type
        return {"$map": sorted(pairs, key=lambda pair: json.dumps(pair, sort_keys=True))}
    if isinstance(value, (set, frozenset)):
        return {"$set": sorted((canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(value, Sequence):
        return [canonical(v) for v in value]
    return {"$type": type(value).__name__, "repr": repr(value)}


def plan_entry(plan: Plan) -> dict[str, Any]:
    # not plan.reason: it is the text shown to people, and holds what the plan saw (a log's count of matching lines,
    # the time of a reply), which a second look changes although the same steps would run the same way
    return {"step": plan.step_id, "kind": plan.kind, "target": plan.target,
            "files": [canonical(f) for f in plan.files], "commands": list(plan.commands), "checks": list(plan.checks),
            "data": canonical(plan.data), "outputs": canonical(plan.outputs)}


def of_host(*, host: str, playbook_text: bytes, variables: Mapping[str, Any], skipped: frozenset[str],
            steps: Sequence[tuple[str, str, str, Mapping[str, Any], tuple[str, ...] | None]], plans: Sequence[Plan],
            reads: Mapping[tuple[str, str], str | None], run_id: str, key: bytes,
            others: Mapping[str, Any] | None = None, code: Mapping[str, str] | None = None) -> str:
    """The identity of one host's plan: an HMAC-SHA256 under the operator's plan key, so that a plan file, which
    keeps it, gives nobody a hash to guess a secret variable from. steps: (id, kind, target, params, when) as bound;
    others: the inventory hosts the steps contact besides this one, each as the run would reach it (reached());
    code: what plans, applies and verifies the steps (remediate's version, each kind's package and version): a plan
    saved by other code is another plan, as Terraform refuses a plan made by another version."""
    doc = {
        "version": VERSION,
        "host": host,
        "playbook": hashlib.sha256(playbook_text).hexdigest(),
        "variables": canonical(variables),
        "skipped": sorted(skipped),
        "steps": [{"id": i, "kind": k, "target": t, "params": canonical(p), "when": None if w is None else list(w)}
                  for i, k, t, p, w in steps],
        "plans": [plan_entry(p) for p in plans],
        "reads": sorted([target, path, digest] for (target, path), digest in reads.items()),
        "others": {name: reached(h) for name, h in sorted((others or {}).items())},
        "code": dict(sorted((code or {}).items())),
    }
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, allow_nan=False)
    # The run's own id and its time prefix (a backup's name holds them): the same plan from two runs is one plan.
    text = text.replace(run_id, "\x00run\x00").replace(run_id.split("-")[0], "\x00time\x00")
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


#: A host's fields that say where the inventory is, not how the host is reached: its line, each variable's origin,
#: and the key and known_hosts paths resolved against the inventory's folder (its variables hold them as written).
PLACE: Final = frozenset({"where", "origins", "key_file", "known_hosts_file"})


def reached(host: Any) -> dict[str, Any]:
    """An inventory host as a run reaches it, as its inventory says: address, port, user, become, interpreter and
    every variable (the key files as written); not where that inventory is (a moved or reformatted one is the same
    plan, as for the host remediated, whose variables are its part of the identity)."""
    return {f.name: canonical(getattr(host, f.name)) for f in dataclasses.fields(host) if f.name not in PLACE}
