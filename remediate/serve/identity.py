"""Who is asking: people's named tokens, kept hashed in serve's state folder and managed with `remediate serve tokens`,
and the verified identity (Person) every decision carries into the audit log, never a name someone typed.

A token is shown once, when it is made; the file keeps its SHA-256 alone (a token is 256 random bits, so a plain hash
is enough: nothing to guess from it). The file is re-read when it changes, so `serve tokens revoke` takes effect on
the next request of a running serve. It is trusted only as a regular file (never a symlink) owned by serve's user and
writable by nobody else, as sshd's StrictModes trusts an authorized_keys. A change (add, revoke) is read, made and
renamed into place with no other process's change between: it is written under STATE_DIR/tokens.lock (flock) only
if the file still holds what it was made from, else made again."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from remediate import private
from remediate.errors import InputError

__all__ = ["ADMIN", "NAME", "Person", "Tokens", "TokenEntry"]

LOG = logging.getLogger(__name__)

#: The role every rules file has: every permission, on every rule and host.
ADMIN: Final = "admin"
#: What a person's or a role's name may be: it goes into audit lines and chat messages as it is.
NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
PREFIX: Final = "rmt_"
FILE: Final = "tokens.json"
LOCK: Final = "tokens.lock"
#: How many times a change is made again when another process changed the file meanwhile, before giving up.
ATTEMPTS: Final = 20


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
        self._seen: tuple[int, int, int, int] | None = None
        self._entries: tuple[TokenEntry, ...] = ()

    def entries(self) -> tuple[TokenEntry, ...]:
        """The file's entries (read again when it changed); InputError when it is not to be trusted."""
        with self._lock:
            try:
                info = os.lstat(self.path)
            except FileNotFoundError:
                self._seen, self._entries = None, ()
                return ()
            seen = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)  # ctime: a chmod or chown too
            if seen != self._seen:
                self._entries = _read(self.path)
                self._seen = seen
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
        """The person a chat user is mapped to (the one live token with that chat id), or None; None too when two
        live tokens claim it (a file `tokens add` did not write), logged."""
        found = [e for e in self.entries() if e.revoked is None and e.chat.get(service) == user]
        if len(found) > 1:
            LOG.warning("%s user %s is mapped to %s at once: taken as nobody (revoke all but one)", service, user,
                        ", ".join(e.name for e in found))
            return None
        return Person(found[0].name, frozenset(found[0].roles), service) if found else None

    def add(self, name: str, roles: Iterable[str], chat: dict[str, str] | None = None) -> str:
        """A new token for `name` (refused while it has a live one, or while its chat id is another live person's):
        returned once, never kept."""
        _check_name(name, "a person's name")
        roles = tuple(dict.fromkeys(roles))
        if not roles:
            raise InputError(f"{name}: a token needs at least one --role", hint=f"--role {ADMIN} gives every permission")
        for role in roles:
            _check_name(role, "a role")
        chat = dict(chat or {})
        token = PREFIX + secrets.token_urlsafe(32)

        def added(entries: list[TokenEntry]) -> list[TokenEntry]:
            live = [e for e in entries if e.revoked is None]
            if any(e.name == name for e in live):
                raise InputError(f"{name} has a token already", hint=f"revoke it first: remediate serve tokens revoke {name}")
            for service, user in chat.items():
                holder = next((e.name for e in live if e.chat.get(service) == user), None)
                if holder is not None:
                    raise InputError(f"{service} user {user} is {holder}'s already: one {service} user is one person",
                                     hint=f"revoke {holder}'s token first: remediate serve tokens revoke {holder}")
            return [*entries, TokenEntry(name, roles, digest(token), time.time(), None, chat)]

        self._change(added)
        return token

    def revoke(self, name: str) -> bool:
        """Revoke `name`'s live token; False when it has none."""
        done = False

        def revoked(entries: list[TokenEntry]) -> list[TokenEntry] | None:
            nonlocal done
            live = [e for e in entries if e.name == name and e.revoked is None]
            if not live:
                return None
            now, done = time.time(), True
            return [TokenEntry(e.name, e.roles, e.digest, e.created, now, e.chat) if e in live else e for e in entries]

        self._change(revoked)
        return done

    def _change(self, change: Callable[[list[TokenEntry]], list[TokenEntry] | None]) -> None:
        """`change` made to the file's entries and written (None: nothing to write), with no other process's change
        lost: made from what the file held, and written (under the lock) only if it holds that still."""
        with self._lock:
            for _ in range(ATTEMPTS):
                before = _read(self.path)
                after = change(list(before))
                with _locked(self.path.with_name(LOCK)):
                    if _read(self.path) != before:
                        continue  # another process changed it meanwhile: made again from what it holds now
                    if after is not None:
                        _write(self.path, after)
                    self._seen = None
                    return
        raise InputError(f"{self.path}: changed by another process {ATTEMPTS} times while this change was made",
                         hint="run the command again")


def _check_name(value: str, what: str) -> None:
    if not NAME.match(value):
        raise InputError(f"{value!r} is not {what}", hint="use letters, digits, '.', '_', '@' or '-' (64 at most)")


def _read(path: Path) -> tuple[TokenEntry, ...]:
    """The entries of the tokens file (none when there is no file); InputError when it is not a tokens file or is not
    to be trusted: a symlink, not a regular file, owned by another user, or writable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ()
    except OSError as e:
        why = "it is a symlink: serve reads only a regular file" if os.path.islink(path) else (e.strerror or str(e))
        raise InputError(f"{path}: refused: {why}", hint=_TRUST_HINT) from None
    with os.fdopen(fd, "rb") as given:
        _trusted(path, os.fstat(given.fileno()))
        raw = given.read()
    try:
        doc = json.loads(raw)
        return tuple(TokenEntry(str(e["name"]), tuple(str(r) for r in e["roles"]), str(e["digest"]), float(e["created"]),
                                None if e.get("revoked") is None else float(e["revoked"]),
                                {str(k): str(v) for k, v in (e.get("chat") or {}).items()})
                     for e in doc["tokens"])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a tokens file ({e})",
                         hint="restore it from a backup, or move it away and add the tokens again") from None


_TRUST_HINT: Final = ("serve trusts only a regular tokens file owned by its own user, mode 0600: check who changed it "
                      "(its tokens may be planted), then `chown` it to serve's user and `chmod 600` it, or move it "
                      "away and add the tokens again")


def _trusted(path: Path, info: os.stat_result) -> None:
    """Refused (InputError) unless the opened file is a regular file of serve's user that nobody else may write."""
    if not stat.S_ISREG(info.st_mode):
        why = "it is not a regular file"
    elif info.st_uid != os.geteuid():
        why = f"it is owned by uid {info.st_uid}, not serve's user (uid {os.geteuid()})"
    elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        why = f"its mode {stat.S_IMODE(info.st_mode):04o} lets others write it"
    else:
        return
    raise InputError(f"{path}: refused: {why}", hint=_TRUST_HINT)


def state_folder(directory: Path) -> Path:
    """serve's state directory, made 0700 when missing, once it is trusted as the state home is (private.folder): a
    link, or a folder another user could change, is refused in serve's words, before anything is made in it."""
    try:
        return private.folder(directory)
    except private.Untrusted as e:
        raise InputError(f"{e.path}: {e.why}; serve keeps its incidents and people's tokens in its state directory "
                         "and will not trust a folder another user could change",
                         hint="give --state-dir a folder only serve's user can write (mode 700, under folders only it "
                              "or root own), or fix the folder's owner and mode") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (made 0600 when missing), held for the block: one writer at a time, any process.
    Its folder is serve's state directory (state_folder)."""
    state_folder(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock goes with its last descriptor


def _write(path: Path, entries: list[TokenEntry]) -> None:
    """Written whole to a private temporary file of a random name (one a killed writer left never blocks the next),
    fsynced, renamed in, and its folder synced (private.write_bytes): a SIGKILL leaves the old file or the new one,
    and a token added or revoked is still so after a power cut once this returns. Under _locked, which has trusted
    (or made) the folder."""
    doc = {"version": 1, "tokens": [{"name": e.name, "roles": list(e.roles), "digest": e.digest, "created": e.created,
                                     "revoked": e.revoked, "chat": e.chat} for e in entries]}
    private.write_bytes(path, json.dumps(doc, indent=1).encode(), sync=True)
