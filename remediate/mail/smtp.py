"""The few SMTP/LMTP dialogue pieces remediate needs, every read bounded: a reply's line length, line count and size,
and one deadline for the whole conversation, never a wait per recv that a slow sender can renew for ever."""

from __future__ import annotations

import time
from typing import Any, Final, NoReturn

#: RFC 5321 (4.5.3.1.5) allows a reply line 512 bytes with its CRLF; four times that is still a reply.
MAX_LINE: Final = 2048
#: An EHLO reply has a dozen lines.
MAX_LINES: Final = 100
MAX_REPLY: Final = 64 * 1024
#: The longest single wait, so that the deadline and Ctrl-C are noticed however the stream blocks.
SLICE: Final = 0.25


class ReplyCut(Exception):
    """A reply stopped at a bound before it ended: why, what had come of it, and how long it had been waited for."""

    def __init__(self, why: str, received: str, elapsed: float) -> None:
        super().__init__(why)
        self.why, self.received, self.elapsed = why, received, elapsed

    def describe(self) -> str:
        """'<why> after 5.0 s; received 100 lines (6,400 bytes), beginning '220-...''"""
        lines = self.received.splitlines()
        got = (f"received {len(lines)} line{'s' if len(lines) != 1 else ''} ({len(self.received):,} bytes), "
               f"beginning {lines[0][:60]!r}") if lines else "received nothing"
        return f"{self.why} after {self.elapsed:.1f} s; {got}"


class Conversation:
    """One SMTP/LMTP conversation on a stream (a socket or an SSH channel): each reply within reply_timeout seconds,
    all of it within total seconds of the start, and no reply past MAX_LINE, MAX_LINES or MAX_REPLY."""

    def __init__(self, stream: Any, *, reply_timeout: float, total: float, started: float | None = None) -> None:
        self.stream, self.reply_timeout, self.total = stream, reply_timeout, total
        self.started = time.monotonic() if started is None else started
        self._buffer = bytearray()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def reply(self) -> str:
        """One reply: lines up to the first whose code is not followed by '-', CRs dropped; what came before the
        stream ended, if it did. ReplyCut at a bound."""
        until = min(time.monotonic() + self.reply_timeout, self.started + self.total)
        start = lines = 0
        while True:
            at = self._buffer.find(b"\n", start, start + MAX_LINE + 2)  # a line, its CR, its LF
            if at < 0:
                if len(self._buffer) - start > MAX_LINE + 1:
                    self._cut(f"a line longer than {MAX_LINE} bytes", start + MAX_LINE)
                if not self._fill(until):
                    data = bytes(self._buffer)
                    self._buffer.clear()
                    return _text(data)
                continue
            line = self._buffer[start:at].removesuffix(b"\r")
            if len(line) > MAX_LINE:
                self._cut(f"a line longer than {MAX_LINE} bytes", start + MAX_LINE)
            start, lines = at + 1, lines + 1
            if line[3:4] != b"-":
                data = bytes(self._buffer[:start])
                del self._buffer[:start]
                return _text(data)
            if lines >= MAX_LINES:
                self._cut(f"more than {MAX_LINES} lines in one reply", start)
            if start > MAX_REPLY:
                self._cut(f"more than {MAX_REPLY:,} bytes in one reply", start)

    def say(self, command: str) -> str:
        """Send one command line and return its reply."""
        left = self.started + self.total - time.monotonic()
        if left <= 0:
            self._cut(f"the dialogue's {self.total:g} s were up", 0)
        self.stream.settimeout(min(self.reply_timeout, left))
        self.stream.sendall(command.encode() + b"\r\n")
        return self.reply()

    def _fill(self, until: float) -> bool:
        """Read more; False when the stream ended. ReplyCut when the reply's time or the conversation's is up."""
        while True:
            left = until - time.monotonic()
            if left <= 0:
                ended = self.started + self.total
                self._cut(f"the dialogue's {self.total:g} s were up" if until >= ended
                          else f"no complete reply within {self.reply_timeout:g} s", len(self._buffer))
            self.stream.settimeout(min(SLICE, left))
            try:
                chunk = self.stream.recv(4096)
            except TimeoutError:  # socket.timeout, and paramiko's channels raise it too
                continue
            if not chunk:
                return False
            self._buffer += chunk
            return True

    def _cut(self, why: str, upto: int) -> NoReturn:
        raise ReplyCut(why, _text(bytes(self._buffer[:min(upto, MAX_REPLY)])), self.elapsed)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").replace("\r", "")
