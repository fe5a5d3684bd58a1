"""Who may use serve: the token's strength, the page's login sessions (random ids that expire, bounded in number)
and a throttle on failed logins per client address (bounded too). Kept in memory: a restart logs everyone out."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Final

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
        self._expires: OrderedDict[str, float] = OrderedDict()  # sha256(id) -> when it expires, oldest first
        self._key = secrets.token_bytes(32)

    def new(self) -> str:
        now = self.clock()
        for key in [k for k, until in self._expires.items() if until <= now]:
            del self._expires[key]
        while len(self._expires) >= self.limit:
            self._expires.popitem(last=False)
        session = secrets.token_urlsafe(32)
        self._expires[_hash(session)] = now + self.lifetime
        return session

    def valid(self, session: str) -> bool:
        until = self._expires.get(_hash(session)) if session else None
        return until is not None and until > self.clock()

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


def _hash(session: str) -> str:
    return hashlib.sha256(session.encode()).hexdigest()
