"""paramiko's internals remediate hooks into (tests/unit/test_paramiko_contract.py holds them to their contract): the
first command's ACK sent at once, the transport thread's looks at its socket made once a second and its end at once,
and the server's reason for a refused channel."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from typing import Any

import paramiko
from paramiko.common import MSG_IGNORE
from paramiko.message import Message


class _Reasons(logging.Handler):
    """Keeps the server's reason from paramiko's 'channel open FAILED' log record."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "open FAILED: " in message:
            self.last = message.split("open FAILED: ", 1)[1].rsplit(": ", 1)[0]


#: The AES-GCM ciphers paramiko may know (3.5 and later), in the order remediate prefers them.
_GCM = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def gcm_first(preferred: tuple[str, ...], supported: Iterable[str]) -> tuple[str, ...]:
    """paramiko's cipher order with AES-GCM moved first, where this paramiko supports it (3.5 and later; 3.4 has no
    GCM, and naming it there would fail every handshake a server agrees to it)."""
    known = set(supported)
    return (*(c for c in _GCM if c in known), *(c for c in preferred if c not in _GCM))


class _PromptAck(paramiko.Transport):
    """A client transport that answers every global request the server sends at once, with SSH_MSG_IGNORE.

    Why: right after authentication, OpenSSH's sshd sends `hostkeys-00@openssh.com` (no reply wanted), before it
    has turned Nagle off on the socket (it does so only when a session starts). Its answer to our first channel
    open then waits, under Nagle, for the ACK of that packet, which the client's kernel delays by its delayed-ACK
    timer (40 ms on Linux) because paramiko has nothing to send back. That was the ~45 ms stall on the first
    command of every connection; the ignore message carries the ACK at once (bench/round_trips.py shows it)."""

    #: How long the transport's thread waits on its socket before it looks again whether the connection is still
    #: wanted (paramiko's default is 0.1 s). Each look takes the GIL, ten a second for every open connection: a
    #: 100-host run paid some 100 ms of CPU for them (bench/README.md round 7). A connection's end is not waited
    #: for: stop_thread shuts the socket down, which wakes the thread at once. A ProxyCommand's pipe keeps
    #: paramiko's 0.1 s: once closed, its recv spins until that timeout.
    _active_check_timeout = 1.0

    #: AES-GCM first, where this paramiko has it (3.5 and later): one authenticated-encryption call a packet, where
    #: paramiko's default (aes128-ctr with hmac-sha2-256) also computes an HMAC and compares it byte by byte in Python
    #: on every packet received. OpenSSH 10's client also puts GCM before CTR (after chacha20-poly1305, which paramiko
    #: lacks). A server without GCM gets the rest, in paramiko's order: the tuple is an order, never a requirement.
    _preferred_ciphers = gcm_first(paramiko.Transport._preferred_ciphers,  # type: ignore[attr-defined]
                                   paramiko.Transport._cipher_info)  # type: ignore[attr-defined]

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(sock, socket.socket):  # from the first packet: key exchange is small messages too
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        elif isinstance(sock, paramiko.ProxyCommand):
            self._active_check_timeout = paramiko.Transport._active_check_timeout  # type: ignore[attr-defined]
        self._made_by = os.getpid()
        super().__init__(sock, *args, **kwargs)

    def stop_thread(self) -> None:
        """paramiko's, with the socket shut down first: the thread waiting on it wakes now, not at its next look, and
        the server sees the connection end at once. Only in the process that made it: a forked child's exit (paramiko
        stops every transport at exit) must not end its parent's connection, which shutdown would."""
        self.active = False
        if isinstance(self.sock, socket.socket) and os.getpid() == self._made_by:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected, or already shut
        super().stop_thread()

    def _parse_global_request(self, m: Message) -> None:
        super()._parse_global_request(m)  # type: ignore[misc]  # paramiko's own (test_paramiko_contract.py)
        if not self.server_mode:
            ignore = Message()
            ignore.add_byte(bytes([MSG_IGNORE]))
            ignore.add_string(b"")
            self._send_message(ignore)  # type: ignore[attr-defined]
