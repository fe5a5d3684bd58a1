"""Which plan the operator last saw per host, so apply need not print the same diffs again minutes later."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from remediate import private
from remediate.engine.journal import state_home
from remediate.errors import InputError

FRESH: Final = 3600  # seconds: a plan older than this is shown again in full


def normalized(events: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """What the plan says (steps, reasons, diffs, commands), without timings and without this run's own id and
    time (a backup's name holds it): the same plan made by two runs reads the same."""
    data = json.dumps([{k: v for k, v in e.items() if k not in ("duration", "brief")} for e in events], sort_keys=True)
    shown: list[dict[str, Any]] = json.loads(data.replace(run_id, "<run>").replace(run_id.split("-")[0], "<time>"))
    return shown


def _path(host: str) -> Path:
    return private.folder(state_home() / "shown") / f"{hashlib.sha256(host.encode()).hexdigest()[:16]}.json"


def remember(host: str, fingerprint: str) -> None:
    private.write_bytes(_path(host), json.dumps({"fingerprint": fingerprint, "at": time.time()}).encode())


def recently(host: str, fingerprint: str) -> str | None:
    """The time (HH:MM:SS) `remediate plan` showed exactly this plan within FRESH seconds, else None."""
    try:
        seen = json.loads(private.read_bytes(_path(host)))
    except (OSError, ValueError, InputError):
        return None
    if not isinstance(seen, dict) or seen.get("fingerprint") != fingerprint or time.time() - float(seen.get("at", 0)) > FRESH:
        return None
    return datetime.fromtimestamp(float(seen["at"])).strftime("%H:%M:%S")
