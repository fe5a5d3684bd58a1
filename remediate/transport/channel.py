"""One command on its own SSH channel: its stdout read up to a bound, its stderr read in a thread that also answers
sudo's prompt and holds the command's stdin until the command itself runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from remediate.errors import ConnectError, RemediateError
from remediate.transport.agent import MAX_CHATTER, MAX_OUTPUT, SHOWN, OutputCut

#: How much of a session's output one read asks for.
CHUNK = 1 << 16


@dataclass
class Become:
    """How one sudo command is told apart from its command: the prompt sudo writes, and the command's own marker."""

    prompt: str
    password: Callable[[], bytes]
    marker: str | None = None


def read_bounded(recv: Callable[[int], bytes], limit: int, stream: str) -> bytes:
    """What recv gives until it ends, or OutputCut as soon as it passes limit bytes (at most one chunk past it read).

    The error keeps the output's beginning, not its end: the end is only known by reading on, which is the unbounded
    read (in time) that the bound is there to stop."""
    data = bytearray()
    while True:
        chunk = recv(CHUNK)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise OutputCut(stream, limit, began=bytes(data[:SHOWN]))


class Dialogue:
    """Feeds one channel's stdin and reads its stderr; with sudo, answers the prompt and holds stdin for the marker.

    At most `limit` bytes of stderr are kept: past them, `cut` says so and the channel is closed."""

    def __init__(self, channel: paramiko.Channel, stdin: bytes | None, become: Become | None,
                 limit: int = MAX_OUTPUT, recv_stderr: Callable[[int], bytes] | None = None) -> None:
        self.channel, self.stdin, self.become, self.limit = channel, stdin, become, limit
        self.recv_stderr = recv_stderr or channel.recv_stderr
        self.failure: RemediateError | None = None
        self.cut: OutputCut | None = None
        self._errors: list[bytes] = []
        self._kept = 0
        self._running = threading.Event()  # the command itself runs (its marker came): its stdin may go
        self._done = threading.Event()
        self._marker_seen = False
        self._threads = [threading.Thread(target=self._read_stderr, daemon=True)]
        if become is None or become.marker is not None:
            self._threads.append(threading.Thread(target=self._feed, daemon=True))

    @property
    def stderr(self) -> bytes:
        return b"".join(self._errors)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float | None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _feed(self) -> None:
        try:
            if self.become is not None:
                self._running.wait()
                if not self._marker_seen:
                    return
            if self.stdin:
                self.channel.sendall(self.stdin)
        except OSError:
            pass
        finally:
            try:
                self.channel.shutdown_write()
            except OSError:
                pass

    def _keep(self, data: bytes) -> None:
        """Keep stderr bytes, up to the limit; past it, say so and close the channel (the command then stops)."""
        if self.cut is not None or not data:
            return
        if self._kept + len(data) > self.limit:
            began = bytearray()
            for part in (*self._errors, data):
                began += part[:SHOWN - len(began)]
            self.cut = OutputCut("stderr", self.limit, began=bytes(began))
            self._errors.clear()
            self.channel.close()
            return
        self._errors.append(data)
        self._kept += len(data)

    def _read_stderr(self) -> None:
        pending = b""
        prompts = 0
        hold = len(self.become.prompt) + len(self.become.marker or "") + 2 if self.become is not None else 0
        try:
            while self.cut is None:
                chunk = self.recv_stderr(CHUNK)
                if not chunk:
                    break
                if self.become is None or self._marker_seen:
                    self._keep(chunk)
                    continue
                pending += chunk
                pending, prompts = self._answer(pending, prompts)
                if len(pending) > MAX_CHATTER:  # no prompt and no marker in it: all but its end is the command's
                    self._keep(pending[:-hold])
                    pending = pending[-hold:]
        except (OSError, paramiko.SSHException):
            pass
        finally:
            self._keep(pending)
            self._running.set()

    def _answer(self, pending: bytes, prompts: int) -> tuple[bytes, int]:
        """Consume sudo's prompts (answering the first) and the command's marker; return what is left and the count."""
        assert self.become is not None
        prompt = self.become.prompt.encode()
        marker = (self.become.marker + "\n").encode() if self.become.marker else None
        while True:
            if prompt in pending:
                before, _, pending = pending.partition(prompt)
                self._keep(before)
                prompts += 1
                if prompts > 1:
                    self.failure = ConnectError("sudo refused the become password",
                                                hint="check REMEDIATE_BECOME_PASSWORD and the user's sudoers entry")
                    self.channel.close()
                    return b"", prompts
                try:
                    self.channel.sendall(self.become.password() + b"\n")
                except RemediateError as e:
                    self.failure = e
                    self.channel.close()
                    return b"", prompts
                continue
            if marker is not None and marker in pending:
                before, _, after = pending.partition(marker)
                self._keep(before)
                self._keep(after)
                self._marker_seen = True
                self._running.set()
                return b"", prompts
            return pending, prompts
