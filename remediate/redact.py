"""Keeps secrets out of everything remediate prints or stores."""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "********"

# KEY=value or KEY: value where KEY names a secret; the value is masked, the key stays readable.
_SECRET_ASSIGNMENT: Final = re.compile(
    r"(?i)(?P<key>[\w.-]*(?:password|passwd|secret|token|api_?key|private_?key|credential)[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)(?P<value>[^\s\"',]+)"
)

_known: set[str] = set()


def register(secret: str | None) -> None:
    """Remember a secret value so that it is masked wherever it would appear."""
    if secret:
        _known.add(secret)


def text(value: str) -> str:
    """Return value with every known secret and every secret-looking assignment masked."""
    for secret in sorted(_known, key=len, reverse=True):
        value = value.replace(secret, MASK)
    return _SECRET_ASSIGNMENT.sub(
        lambda m: f"{m['key']}{m['sep']}{m['quote']}{MASK}", value
    )


def data(value: object) -> object:
    """Mask secrets in a JSON-like value (dicts, lists, strings), keys included."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: (MASK if _is_secret_key(str(k)) and v else data(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [data(v) for v in value]
    return value


def _is_secret_key(key: str) -> bool:
    return re.search(r"(?i)password|passwd|secret|token|api_?key|private_?key", key) is not None
