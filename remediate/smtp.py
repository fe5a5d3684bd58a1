"""The few SMTP/LMTP dialogue pieces remediate needs: read a (multi-line) reply, send a command."""

from __future__ import annotations

from typing import Any


def read_reply(stream: Any) -> str:
    """One reply: lines up to the one whose code is followed by a space ('250 ...'), CRs dropped."""
    data = b""
    while True:
        chunk = stream.recv(4096)
        if not chunk:
            break
        data += chunk
        last = data.rstrip(b"\r\n").split(b"\n")[-1]
        if data.endswith(b"\n") and len(last) >= 4 and last[3:4] == b" ":
            break
    return data.decode("utf-8", "replace").replace("\r", "")


def say(stream: Any, command: str) -> str:
    """Send one command line and return the reply."""
    stream.sendall(command.encode() + b"\r\n")
    return read_reply(stream)
