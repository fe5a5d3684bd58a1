"""Keeps secrets out of everything remediate prints: display text only, never what rollback replays."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Any, Final

MASK: Final = "********"
#: The sudo password's variable (cli.PASSWORD_ENV): its value is a known secret from the start, not only once sudo
#: has asked for it, for under a rule that never asks it would otherwise be shown wherever a command printed it.
BECOME_PASSWORD_ENV: Final = "REMEDIATE_BECOME_PASSWORD"

_WORDS: Final = r"password|passwd|secret|token|api[_-]?key|private[_-]?key|credential|authorization"
# "pass" as a whole part of a key (smtp_pass, pass_db), as is_secret_key takes it: not "bypass" nor "passenger".
_PASS: Final = r"(?:(?<![\w.-])|(?<=_))pass(?![^\W_]|[.-])"
# KEY=value, KEY: value or "KEY": "value" where KEY names a secret: the key stays readable; a quoted value is masked
# to its closing quote, any other to the end of its line (a passphrase has spaces: "correct horse battery staple").
_SECRET_ASSIGNMENT: Final = (
    rf"(?i)(?<![\w.-])(?=[\w.-]*?(?:{_WORDS}|{_PASS}))(?P<key>[\w.-]*+)(?<![_-]file)(?<![_-]path)(?<![_-]dir)"
    r"(?P<sep>[\"']?[ \t]*[=:][ \t]*)"
    r"(?:(?P<quote>\")(?:\\.|[^\"\\\n])*+(?P<end>\")?|(?P<squote>')[^'\n]*+(?P<send>')?|[^\s\"'][^\r\n]*+)"
)
# A bearer token wherever it stands (an Authorization header quoted in a log), and the password of a URL's userinfo.
_BEARER: Final = r"(?i)\b(?P<scheme>bearer)[ \t]++[\w.~+/=-]++"
_URL_PASSWORD: Final = r"(?i)(?<![a-z0-9+.-])(?P<head>[a-z][a-z0-9+.-]*+://[^\s:/@]*+:)[^\s/@]++@"
# Every pattern here starts only where a run of its characters starts and never gives back what a run matched
# (*+, ++): a line of "tokentoken..." took the previous pattern minutes, cubic in its length.
# A text that holds none of these, case folded, holds nothing the patterns above mask: one case-sensitive scan of the
# folded text, some fifty times cheaper than one case-blind pattern, settles that for almost every line remediate shows.
_NEEDLES: Final = re.compile(r"pass|secret|token|api[_-]?key|private[_-]?key|credential|authorization|bearer|://")
_SECRET_KEY: Final = re.compile(rf"(?i){_WORDS}|(?:^|_)pass(?:_|$)")
# A key that names where a secret is kept (ansible_ssh_private_key_file, vault_password_file) holds a path, not a
# secret: it is shown, and is what an operator needs to see when a login fails.
_PATH_KEY: Final = re.compile(r"(?i)[_-](?:file|path|dir)$")

_known: set[str] = set()
#: Bumped by each register: a sorting of the secrets made before it is not used after it.
_generation = 0
#: The secrets as last sorted, longest first, under what they were sorted from: the become password's value, the
#: generation and how many secrets were known (a test that discards one is seen too).
_sorted: tuple[tuple[str | None, int, int], tuple[str, ...]] = ((None, -1, -1), ())


def register(secret: str | None) -> None:
    """Remember a secret value so that it is masked wherever it would be shown."""
    global _generation
    if secret:
        _known.add(secret)
        _generation += 1


def _secrets() -> tuple[str, ...]:
    """Every secret to mask, longest first: those registered, and $REMEDIATE_BECOME_PASSWORD as the environment holds
    it now (set, changed or unset since the last call: the environment is read each time, only the sorting is kept)."""
    global _sorted
    given = os.environ.get(BECOME_PASSWORD_ENV)
    # read before _known is: a secret registered while this sorts makes the next call sort again
    source = (given, _generation, len(_known))
    cached = _sorted
    if cached[0] == source:
        return cached[1]
    ordered = tuple(sorted(_known | {given} if given else _known, key=len, reverse=True))
    _sorted = (source, ordered)
    return ordered


def text(value: str) -> str:
    """value as shown to a person or a log: every known secret and every secret-looking assignment masked.

    A known secret is masked with the whole run of non-blank characters around it, so the mask never shows
    where inside a word the secret stood (a password "mail" in "mailserver" must not be spelt out by the mask)."""
    for secret in _secrets():
        if secret in value:
            value = re.sub(r"(?<!\S)\S*" + re.escape(secret) + r"\S*+", MASK, value)
    if _NEEDLES.search(value.casefold()) is None:
        return value
    assignment, bearer, url_password = _patterns()
    value = assignment.sub(_masked_assignment, value)
    value = bearer.sub(lambda m: f"{m['scheme']} {MASK}", value)
    return url_password.sub(lambda m: f"{m['head']}{MASK}@", value)


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """The three masking patterns, compiled when a text first holds a needle (1-2 ms of start-up otherwise)."""
    return re.compile(_SECRET_ASSIGNMENT), re.compile(_BEARER), re.compile(_URL_PASSWORD)


def _masked_assignment(m: re.Match[str]) -> str:
    if m["quote"]:
        return f"{m['key']}{m['sep']}{m['quote']}{MASK}{m['end'] or ''}"
    if m["squote"]:
        return f"{m['key']}{m['sep']}{m['squote']}{MASK}{m['send'] or ''}"
    return f"{m['key']}{m['sep']}{MASK}"


def data(value: object) -> object:
    """Mask secrets in a JSON-like value (dicts, lists, strings) for display, keys included."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: (_masked(v) if is_secret_key(str(k)) else data(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [data(v) for v in value]
    return value


def _masked(value: object) -> object:
    """value under a secret key: every value inside masked, its shape kept, so that what shows it never breaks on
    a string where it expected a mapping (`inventory --host` shows each variable as {value, from})."""
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return MASK if value else value  # an empty or false value tells nothing


def without_secret_values(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables to store: the value of every secret-named key left out (shown as the mask), the rest exact."""
    return {k: (MASK if is_secret_key(k) and v else v) for k, v in variables.items()}


@functools.lru_cache(maxsize=4096)  # a run shows the same few dozen keys in every event
def is_secret_key(key: str) -> bool:
    """True for a key whose value is a secret (db_password, api_key), false for one that names where it is kept."""
    return _SECRET_KEY.search(key) is not None and _PATH_KEY.search(key) is None
