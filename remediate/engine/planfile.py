"""Saved plans, as Terraform's `plan -out`: what a reviewed plan was, to apply exactly that later.

The file holds the playbook's text, the inventory, hosts, variables (secret-named ones masked), the step
selection and, per host, every step's plan (for people) with its identity (identity.py: structural, never the
text shown). It is sealed with an HMAC-SHA256 under a key kept 0600 in the operator's state home: anyone who can
write the file but not read the key cannot change it and seal it again. `apply PLANFILE` refuses a file whose seal
does not hold, checks every host again, and applies only if each would get exactly the saved plan."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from remediate import jsonin, private, redact
from remediate.engine.journal import state_home
from remediate.errors import ConflictError, InputError

FORMAT: Final = "remediate-plan/2"
KEY_NAME: Final = "plan.key"
KEY_BYTES: Final = 32


def key() -> bytes:
    """The operator's plan key: 32 random bytes in the state home, made once (0600, whole: written beside it, then
    linked to its name, so that a process or thread reading it never sees it half-made), never shown."""
    path = state_home() / KEY_NAME
    try:
        found = private.read_bytes(path)
    except FileNotFoundError:  # made here, once: every later call only reads it (no write, no fsync)
        private.create_bytes(path, secrets.token_bytes(KEY_BYTES))
        found = private.read_bytes(path)
    if len(found) != KEY_BYTES:
        raise InputError(f"{path}: not a remediate plan key ({len(found)} bytes, expected {KEY_BYTES})",
                         hint="remove it; a new key is made (plan files sealed with the old one are then refused)")
    return found


def key_id() -> str:
    """Which plan key this machine's identities are made under, naming nothing of the key: two machines (serve
    replicas, a rollout's operator and its workers) see the same identity for the same plan only under one key."""
    return hmac.new(key(), b"remediate plan key id", hashlib.sha256).hexdigest()[:16]


def _seal(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "seal"}
    text = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    return hmac.new(key(), text.encode(), hashlib.sha256).hexdigest()


def document(*, playbook_path: str, playbook_text: bytes, inventory: Path, hosts: tuple[str, ...],
             extra: Mapping[str, Any], selection: Mapping[str, Any], plans: Mapping[str, Mapping[str, Any]],
             rollout: Mapping[str, Any]) -> dict[str, Any]:
    """The saved plan as the file holds it, sealed with the operator's key (serve keeps it so, without a file). The
    rollout (--serial, --max-fail-percent, --rollback-fleet-on-abort) is part of what was reviewed: apply takes it
    from here, and only --forks from its command line."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "playbook": {"path": str(Path(playbook_path).resolve()), "text": playbook_text.decode("utf-8")},
        "inventory": str(inventory.resolve()),
        "hosts": list(hosts),
        "extra": redact.without_secret_values(dict(extra)),
        "selection": dict(selection),
        "rollout": dict(rollout),
        "plans": {host: dict(plan) for host, plan in plans.items()},
    }
    doc["seal"] = _seal(doc)
    return dict(json.loads(json.dumps(doc, default=str)))  # as the file holds it, whatever is kept without one


def save(path: Path, doc: Mapping[str, Any]) -> None:
    """Write a plan document (document()) to its file (0600), atomically."""
    private.write_bytes(Path(os.path.abspath(path)), (json.dumps(doc, indent=2, default=str) + "\n").encode())


def load(path: Path) -> dict[str, Any]:
    """A plan file, refused unless it is one and its seal holds under this operator's key (nothing in it was
    edited since this operator's `remediate plan --out` wrote it)."""
    try:
        doc = jsonin.loads(path.read_bytes(), what=f"{path}: the plan file",
                           hint="make and review a plan with `remediate plan --out FILE`")
    except FileNotFoundError:
        raise InputError(f"{path}: no such plan file", hint="make one with `remediate plan --out FILE`") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the plan file: {e}") from None
    found = doc.get("format") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or found != FORMAT:
        old = found == "remediate-plan/1"
        raise InputError(f"{path}: " + ("a plan file of an older remediate, sealed by a plain checksum that anyone "
                                        "could recompute; refusing it" if old else
                                        f"not a remediate plan file (format {found!r})"),
                         hint=f"make and review a new one with `remediate plan --out FILE` (format {FORMAT})")
    seal = doc.get("seal")
    if not isinstance(seal, str) or not hmac.compare_digest(seal, _seal(doc)):
        raise InputError(f"{path}: the plan file's seal does not hold under your plan key ({state_home() / KEY_NAME}): "
                         "it was changed after it was saved, or saved by another user or on another machine; "
                         "refusing it", hint="make and review a new one with `remediate plan --out FILE`")
    return doc


def playbook_path(doc: dict[str, Any]) -> str:
    """The playbook the plan was made from: its own file when unchanged, else the text the plan file keeps."""
    saved = doc["playbook"]
    path = Path(saved["path"])
    if path.is_file() and path.read_text() == saved["text"]:
        return str(path)
    text = saved["text"].encode("utf-8")
    copy = private.folder(state_home() / "plans") / f"{hashlib.sha256(text).hexdigest()[:16]}-{path.name}"
    private.write_bytes(copy, text)
    return str(copy)


def extra(doc: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The plan's variables, with every masked secret given again by the operator (-e)."""
    values = dict(doc.get("extra") or {})
    changing = sorted(k for k in given if values.get(k) != redact.MASK)
    if changing:
        raise InputError(f"-e {changing[0]}: a saved plan's variables are part of what was reviewed",
                         hint="-e may only give a masked secret again; for other values make a new plan")
    for key, value in values.items():
        if value == redact.MASK and key not in given:
            raise InputError(f"variable {key} is a secret, masked in the plan file",
                             hint=f"give it again: remediate apply PLANFILE -e {key}=...")
    values.update({k: v for k, v in given.items() if k in values})
    return values


def differences(saved: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]]) -> list[str]:
    """The steps whose plan differs between the saved plan and the host today."""
    before = {s["step"]: s for s in saved}
    after = {s["step"]: s for s in now}
    return [step for step in {**before, **after} if before.get(step) != after.get(step)]


def stale(host: str, saved: Mapping[str, Any] | None, identity: str,
          events: Sequence[Mapping[str, Any]]) -> ConflictError | None:
    """None when the host would get exactly the saved plan (its identity is the same); else the refusal, naming the
    steps whose plan reads differently (for people: the decision is the identity's alone)."""
    if saved is None:
        return ConflictError(f"the saved plan has no plan for {host}; nothing was changed")
    if hmac.compare_digest(str(saved.get("identity")), identity):
        return None
    steps = differences(saved["steps"], events)
    what = (f"these steps would now differ: {', '.join(steps)}" if steps else
            "something the plan does not show has changed: a masked secret, a file's bytes, a step's parameters, "
            "the playbook's text, how the inventory reaches a host, or the version of remediate or of a plug-in")
    return ConflictError(f"the host is not as the saved plan saw it ({what}); nothing was changed",
                         hint="make and review a new plan with `remediate plan --out FILE`")
