"""Who may use serve: the shared token's strength, the page's login sessions (random ids that expire, bounded in
number, each bound to the named token it logged in with), a throttle on failed logins per client address (bounded too),
and the authenticating proxy serve may trust for the person's name. Kept in memory: a restart logs everyone out."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from remediate.serve.identity import NAME

LOG = logging.getLogger(__name__)

#: serve cannot measure a token's entropy; it refuses one whose characters cannot hold this many bits whatever they
#: are (its length times log2 of the smallest usual alphabet its characters fall in: 32 hex digits, 22 base64).
MIN_TOKEN_BITS: Final = 128
ALPHABETS: Final = (("0123456789", 10), ("0123456789abcdef", 16), ("0123456789ABCDEF", 16),
                    ("0123456789abcdefghijklmnopqrstuvwxyz", 36),
                    ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 62),
                    ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/=-_", 64))
TOKEN_HINT: Final = ("make one with `openssl rand -hex 32` (or `python3 -c 'import secrets; "
                     "print(secrets.token_hex(32))'`) into $REMEDIATE_SERVE_TOKEN or a --token-file")
SESSION_SECONDS: Final = 12 * 3600
MAX_SESSIONS: Final = 1000
FAILURES: Final = 5  # failed logins per address per FAILURE_WINDOW, then 429 until the oldest is old enough
FAILURE_WINDOW: Final = 60.0
MAX_ADDRESSES: Final = 10_000
#: The header the proxy sends with the user header, holding the contents of serve's --proxy-secret-file.
PROXY_SECRET_HEADER: Final = "x-remediate-proxy-secret"


def token_bits(token: str) -> float:
    """The most bits `token` can hold: its length times log2 of the smallest alphabet holding all its characters
    (printable ASCII, 95, when none of the usual ones does)."""
    size = next((n for letters, n in ALPHABETS if set(token) <= set(letters)), 95)
    return len(token) * math.log2(size)


def token_problem(token: str) -> str | None:
    """Why serve must not start with this token, or None."""
    bits = token_bits(token)
    if bits < MIN_TOKEN_BITS:
        return (f"serve's token is too short: {len(token)} characters hold at most {int(bits)} bits; it needs "
                f"{MIN_TOKEN_BITS} (32 hex digits, or 22 base64 characters)")
    return None


class Sessions:
    """The page's logins: a random id per login, valid for `lifetime` seconds; the oldest forgotten past `limit`.
    Only a hash of each id is kept. Each session has its own CSRF value, an HMAC of its id under a per-process key."""

    def __init__(self, *, lifetime: float = SESSION_SECONDS, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self.clock = clock
        # sha256(id) -> when it expires and the digest of the named token it logged in with, oldest first
        self._expires: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._key = secrets.token_bytes(32)

    def new(self, token_digest: str = "") -> str:
        """A new session for whoever holds the named token of this digest (its person is looked up at each request,
        so a revoked token ends its sessions)."""
        now = self.clock()
        for key in [k for k, (until, _) in self._expires.items() if until <= now]:
            del self._expires[key]
        while len(self._expires) >= self.limit:
            self._expires.popitem(last=False)
        session = secrets.token_urlsafe(32)
        self._expires[_hash(session)] = (now + self.lifetime, token_digest)
        return session

    def valid(self, session: str) -> bool:
        return self.token_digest(session) is not None

    def token_digest(self, session: str) -> str | None:
        """The digest of the token this live session logged in with ("" for one made without), or None."""
        found = self._expires.get(_hash(session)) if session else None
        return found[1] if found is not None and found[0] > self.clock() else None

    def csrf(self, session: str) -> str:
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()


class Throttle:
    """At most `failures` failed logins per client address in any `window` seconds; the addresses least recently
    failing are forgotten past `limit`, so memory stays bounded whoever knocks."""

    def __init__(self, *, failures: int = FAILURES, window: float = FAILURE_WINDOW, limit: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self.limit = limit
        self.clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, address: str) -> float:
        """Seconds before this address may try again; 0 when it may now."""
        times = self._seen.get(address)
        if times is None or len(times) < self.failures:
            return 0.0
        return max(0.0, times[0] + self.window - self.clock())

    def failed(self, address: str) -> None:
        times = self._seen.pop(address, None) or deque(maxlen=self.failures)
        times.append(self.clock())
        self._seen[address] = times  # the most recent at the end
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._seen.pop(address, None)


@dataclass
class Proxy:
    """The authenticating proxy in front of serve (oauth2-proxy and the like): its user header names the person, but
    only on a request that also carries the proxy's secret (PROXY_SECRET_HEADER, compared in constant time), or, when
    serve was given no secret, on a request from a loopback peer. Anyone else's header is ignored, and logged once
    per address."""

    header: str
    secret: str | None = None
    _logged: set[str] = field(default_factory=set)

    def user(self, headers: Mapping[str, str], peer: str | None) -> str | None:
        """The user the proxy vouches for, or None (no header, not from the proxy, not a name, or either header sent
        more than once: a proxy that appends its header to the client's would otherwise let the client's win)."""
        values, secrets_given = _all(headers, self.header.lower()), _all(headers, PROXY_SECRET_HEADER)
        if not values:
            return None
        if len(values) > 1 or len(secrets_given) > 1:
            self._once(peer, f"ignored {self.header} from {peer or '-'}: {self.header} or {PROXY_SECRET_HEADER} sent "
                             "more than once (the proxy must replace the client's, not add its own)")
            return None
        value = values[0].strip()
        if not value:
            return None
        if self.secret is not None:
            given = secrets_given[0] if secrets_given else ""
            trusted = hmac.compare_digest(given.encode(), self.secret.encode())
            why = "without the proxy's secret" if not given else "with a wrong proxy secret"
        else:
            trusted = _loopback(peer)
            why = "from a peer that is not loopback (serve has no --proxy-secret-file)"
        if not trusted:
            self._once(peer, f"ignored {self.header} from {peer or '-'}: {why}")
            return None
        if not NAME.match(value):
            self._once(peer, f"ignored {self.header} from {peer or '-'}: its value is not a person's name")
            return None
        return value

    def _once(self, peer: str | None, line: str) -> None:
        key = peer or "-"
        if key in self._logged:
            return
        if len(self._logged) >= MAX_ADDRESSES:
            self._logged.clear()
        self._logged.add(key)
        LOG.warning("%s", line)


def _all(headers: Mapping[str, str], key: str) -> list[str]:
    """Every value of header `key` (lower case): starlette's Headers keeps each one; a plain mapping holds one."""
    getlist = getattr(headers, "getlist", None)
    if callable(getlist):
        return [str(v) for v in getlist(key)]
    value = headers.get(key)
    return [] if value is None else [value]


def _loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


def _hash(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()
