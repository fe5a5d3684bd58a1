"""Who is asking: people's named tokens, kept hashed in serve's state folder and managed with `remediate serve tokens`,
and the verified identity (Person) every decision carries into the audit log, never a name someone typed.

A token is shown once, when it is made; the file keeps its SHA-256 alone (a token is 256 random bits, so a plain hash
is enough: nothing to guess from it). The file is re-read when it changes, so `serve tokens revoke` takes effect on
the next request of a running serve."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from remediate.errors import InputError

__all__ = ["ADMIN", "NAME", "Person", "Tokens", "TokenEntry"]

#: The role every rules file has: every permission, on every rule and host.
ADMIN: Final = "admin"
#: What a person's or a role's name may be: it goes into audit lines and chat messages as it is.
NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
PREFIX: Final = "rmt_"
FILE: Final = "tokens.json"


@dataclass(frozen=True)
class Person:
    """A verified identity: who (a token's name, the proxy's user, a chat user mapped to one) and how it was proven."""

    name: str
    roles: frozenset[str]
    via: str  # "token", "session", "proxy", "slack", ...

    @property
    def said(self) -> str:
        """As the audit log words it: 'alice (token)'."""
        return f"{self.name} ({self.via})"


@dataclass(frozen=True)
class TokenEntry:
    name: str
    roles: tuple[str, ...]
    digest: str  # sha256 hex of the token
    created: float
    revoked: float | None = None
    #: Chat identities mapped to this person: {"slack": "U0123ABC"}.
    chat: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What `serve tokens list` shows: never the digest."""
        return {"name": self.name, "roles": list(self.roles), "created": self.created, "revoked": self.revoked,
                "chat": dict(self.chat)}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The named tokens of one state folder (FILE, 0600 in a 0700 folder); thread-safe, re-read when it changes."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._entries: tuple[TokenEntry, ...] = ()

    def entries(self) -> tuple[TokenEntry, ...]:
        with self._lock:
            try:
                info = self.path.stat()
            except FileNotFoundError:
                self._seen, self._entries = None, ()
                return ()
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp != self._seen:
                self._entries = _read(self.path)
                self._seen = stamp
            return self._entries

    def person(self, token: str, via: str = "token") -> Person | None:
        """The live (not revoked) token's person, or None."""
        if not token.startswith(PREFIX):
            return None
        wanted = digest(token)
        found = None
        for entry in self.entries():  # every entry compared, in constant time each
            if secrets.compare_digest(entry.digest, wanted) and entry.revoked is None:
                found = entry
        return Person(found.name, frozenset(found.roles), via) if found else None

    def chat_person(self, service: str, user: str) -> Person | None:
        """The person a chat user is mapped to (a live token with that chat id), or None."""
        for entry in self.entries():
            if entry.revoked is None and entry.chat.get(service) == user:
                return Person(entry.name, frozenset(entry.roles), service)
        return None

    def add(self, name: str, roles: Iterable[str], chat: dict[str, str] | None = None) -> str:
        """A new token for `name` (refused while it has a live one): returned once, never kept."""
        _check_name(name, "a person's name")
        roles = tuple(dict.fromkeys(roles))
        if not roles:
            raise InputError(f"{name}: a token needs at least one --role", hint=f"--role {ADMIN} gives every permission")
        for role in roles:
            _check_name(role, "a role")
        token = PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            entries = list(_read(self.path)) if self.path.exists() else []
            if any(e.name == name and e.revoked is None for e in entries):
                raise InputError(f"{name} has a token already", hint=f"revoke it first: remediate serve tokens revoke {name}")
            entries.append(TokenEntry(name, roles, digest(token), time.time(), None, dict(chat or {})))
            _write(self.path, entries)
            self._seen = None
        return token

    def revoke(self, name: str) -> bool:
        """Revoke `name`'s live token; False when it has none."""
        with self._lock:
            entries = list(_read(self.path)) if self.path.exists() else []
            live = [e for e in entries if e.name == name and e.revoked is None]
            if not live:
                return False
            now = time.time()
            entries = [TokenEntry(e.name, e.roles, e.digest, e.created, now, e.chat) if e in live else e for e in entries]
            _write(self.path, entries)
            self._seen = None
        return True


def _check_name(value: str, what: str) -> None:
    if not NAME.match(value):
        raise InputError(f"{value!r} is not {what}", hint="use letters, digits, '.', '_', '@' or '-' (64 at most)")


def _read(path: Path) -> tuple[TokenEntry, ...]:
    try:
        doc = json.loads(path.read_text())
        return tuple(TokenEntry(str(e["name"]), tuple(str(r) for r in e["roles"]), str(e["digest"]), float(e["created"]),
                                None if e.get("revoked") is None else float(e["revoked"]),
                                {str(k): str(v) for k, v in (e.get("chat") or {}).items()})
                     for e in doc["tokens"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a tokens file ({e})",
                         hint="restore it from a backup, or move it away and add the tokens again") from None


def _write(path: Path, entries: list[TokenEntry]) -> None:
    """Write-then-rename, 0600, fsynced: a SIGKILL leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    doc = {"version": 1, "tokens": [{"name": e.name, "roles": list(e.roles), "digest": e.digest, "created": e.created,
                                     "revoked": e.revoked, "chat": e.chat} for e in entries]}
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)
