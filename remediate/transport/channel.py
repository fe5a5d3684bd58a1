"""One command on its own SSH channel: its stdout read up to a bound, its stderr read in a thread that also answers
sudo's prompt (sudo.SudoTalk) and holds the command's stdin until the command itself runs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import paramiko

from remediate.errors import RemediateError
from remediate.transport.agent import MAX_OUTPUT, SHOWN, OutputCut
from remediate.transport.sudo import SudoDialogue, SudoTalk

#: How much of a session's output one read asks for.
CHUNK = 1 << 16


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

    def __init__(self, channel: paramiko.Channel, stdin: bytes | None, become: SudoDialogue | None,
                 limit: int = MAX_OUTPUT, recv_stderr: Callable[[int], bytes] | None = None) -> None:
        self.channel, self.stdin, self.become, self.limit = channel, stdin, become, limit
        self.recv_stderr = recv_stderr or channel.recv_stderr
        self.failure: RemediateError | None = None
        self.cut: OutputCut | None = None
        self._errors: list[bytes] = []
        self._kept = 0
        self._running = threading.Event()  # the command itself runs (its marker came): its stdin may go
        self._done = threading.Event()
        self._talk = None if become is None else SudoTalk(become, channel.sendall)
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
                if self._talk is None or not self._talk.running:
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
        talk = self._talk
        try:
            while self.cut is None:
                chunk = self.recv_stderr(CHUNK)
                if not chunk:
                    break
                if talk is None or talk.running:
                    self._keep(chunk)
                    continue
                try:
                    self._keep(talk.feed(chunk))
                except RemediateError as e:  # a wrong password, or none to give: the command never runs
                    self.failure = e
                    self.channel.close()
                    return
                if talk.running:
                    self._running.set()
        except (OSError, paramiko.SSHException):
            pass
        finally:
            if talk is not None:
                self._keep(talk.rest())
            self._running.set()
