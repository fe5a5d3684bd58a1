"""The operator's own machine, through subprocess: for local files and for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from remediate.errors import CommandError
from remediate.records import record
from remediate.transport import Transport


@record
class LocalTransport(Transport):
    """Runs argv lists with subprocess (no shell); sudo only when become is set and we are not root."""

    @property
    def interpreter(self) -> tuple[str, ...]:
        """remediate's own operations run with the Python remediate runs on."""
        return (sys.executable,)

    def _exec(self, argv: Sequence[str], *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
        argv = self.one_shot(argv)
        if sudo and os.geteuid() != 0:
            argv = ["sudo", "-n", "-H", "--", *argv]
        try:
            done = subprocess.run(list(argv), input=stdin or b"", capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError:
            return 127, b"", f"{argv[0]}: command not found".encode()
        except subprocess.TimeoutExpired:
            raise CommandError(f"{self.name}: `{argv[0]}` did not finish within {timeout} s") from None
        return done.returncode, done.stdout, done.stderr

    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        return socket.create_connection((host, port), timeout=timeout)
