"""Saved plans, as Terraform's `plan -out`: what a reviewed plan was, sealed by a checksum, to apply it later.

The file holds the playbook's text, the inventory, hosts, variables (secret-named ones masked), the step
selection and, per host, every step's plan with a fingerprint. `apply PLANFILE` checks the host again and
refuses unless every host would get exactly the plan that was saved."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from . import redact
from .errors import ConflictError, InputError
from .journal import state_home

FORMAT: Final = "remediate-plan/1"


def _checksum(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def save(path: Path, *, playbook_path: str, inventory: Path, hosts: tuple[str, ...], extra: dict[str, Any],
         selection: dict[str, Any], plans: dict[str, dict[str, Any]]) -> None:
    """Write the plan file (0600), atomically."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "playbook": {"path": str(Path(playbook_path).resolve()), "text": Path(playbook_path).read_text()},
        "inventory": str(inventory.resolve()),
        "hosts": list(hosts),
        "extra": redact.without_secret_values(extra),
        "selection": selection,
        "plans": plans,
    }
    doc["checksum"] = _checksum(doc)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=".remediate-plan-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(doc, indent=2, default=str) + "\n").encode())
        os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load(path: Path) -> dict[str, Any]:
    """A plan file, refused unless it is one and its checksum holds (nothing in it was edited)."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such plan file", hint="make one with `remediate plan --out FILE`") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a remediate plan file: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(f"{path}: not a remediate plan file (format {doc.get('format') if isinstance(doc, dict) else None!r})",
                         hint=f"expected {FORMAT}; make one with `remediate plan --out FILE`")
    if doc.get("checksum") != _checksum(doc):
        raise InputError(f"{path}: the plan file was changed after it was saved (its checksum does not hold); "
                         "refusing it", hint="make and review a new one with `remediate plan --out FILE`")
    return doc


def playbook_path(doc: dict[str, Any]) -> str:
    """The playbook the plan was made from: its own file when unchanged, else the text the plan file keeps."""
    saved = doc["playbook"]
    path = Path(saved["path"])
    if path.is_file() and path.read_text() == saved["text"]:
        return str(path)
    folder = state_home() / "plans"
    folder.mkdir(exist_ok=True, mode=0o700)
    copy = folder / f"{doc['checksum'][:16]}-{path.name}"
    copy.write_text(saved["text"])
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


def differences(saved: list[dict[str, Any]], now: list[dict[str, Any]]) -> list[str]:
    """The steps whose plan differs between the saved plan and the host today."""
    before = {s["step"]: s for s in saved}
    after = {s["step"]: s for s in now}
    return [step for step in {**before, **after} if before.get(step) != after.get(step)]


def stale(host: str, saved: dict[str, Any] | None, fingerprint: str, events: list[dict[str, Any]]) -> ConflictError | None:
    """None when the host would get exactly the saved plan; else the refusal."""
    if saved is None:
        return ConflictError(f"{host}: the saved plan has no plan for this host; nothing was changed")
    if saved["fingerprint"] == fingerprint:
        return None
    steps = differences(saved["steps"], events)
    return ConflictError(f"{host}: the host is not as the saved plan saw it (these steps would now differ: "
                         f"{', '.join(steps) or 'their order'}); nothing was changed",
                         hint="make and review a new plan with `remediate plan --out FILE`")
