"""Keeps secrets out of everything remediate prints: display text only, never what rollback replays."""

from __future__ import annotations

import re
from typing import Any, Final, Mapping

MASK: Final = "********"

# KEY=value or KEY: value where KEY names a secret; the value is masked, the key stays readable.
_SECRET_ASSIGNMENT: Final = re.compile(
    r"(?i)(?P<key>[\w.-]*(?:password|passwd|secret|token|api_?key|private_?key|credential)[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>[\"']?)(?P<value>[^\s\"',]+)"
)
# A text with none of these words has no secret assignment: one linear scan spares the costly pattern above.
_SECRET_WORD: Final = re.compile(r"(?i)password|passwd|secret|token|api_?key|private_?key|credential")
_SECRET_KEY: Final = re.compile(r"(?i)password|passwd|secret|token|api_?key|private_?key|credential|(?:^|_)pass(?:_|$)")

_known: set[str] = set()


def register(secret: str | None) -> None:
    """Remember a secret value so that it is masked wherever it would be shown."""
    if secret:
        _known.add(secret)


def text(value: str) -> str:
    """value as shown to a person or a log: every known secret and every secret-looking assignment masked.

    A known secret is masked with the whole run of non-blank characters around it, so the mask never shows
    where inside a word the secret stood (a password "mail" in "mailserver" must not be spelt out by the mask)."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in value:
            value = re.sub(r"\S*" + re.escape(secret) + r"\S*", MASK, value)
    if not _SECRET_WORD.search(value):
        return value
    return _SECRET_ASSIGNMENT.sub(lambda m: f"{m['key']}{m['sep']}{m['quote']}{MASK}", value)


def data(value: object) -> object:
    """Mask secrets in a JSON-like value (dicts, lists, strings) for display, keys included."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(str(k)) and v else data(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [data(v) for v in value]
    return value


def without_secret_values(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables to store: the value of every secret-named key left out (shown as the mask), the rest exact."""
    return {k: (MASK if is_secret_key(k) and v else v) for k, v in variables.items()}


def is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None
