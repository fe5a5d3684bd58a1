"""One interface for running commands and editing files, locally or over SSH."""

from __future__ import annotations

import hashlib
import shlex
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Final, Sequence

from .. import redact
from ..errors import CommandError

# Reads a file with its mode and owner in one round trip: "<mode> <uid> <gid>\n<bytes>"; exit 3 when absent.
READ_SCRIPT: Final = '[ -e "$1" ] || exit 3; stat -L -c "%a %u %g" -- "$1" && exec cat -- "$1"'
# Writes stdin to $1 atomically: a private temporary file beside it, mode and owner set, fsync, rename.
WRITE_SCRIPT: Final = """set -eu
path=$1; mode=$2; owner=$3
tmp=$(mktemp -- "$(dirname -- "$path")/.remediate-tmp.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT HUP INT TERM
cat > "$tmp"
if [ -z "$mode" ] && [ -e "$path" ]; then chmod --reference="$path" -- "$tmp"; else chmod "${mode:-644}" -- "$tmp"; fi
if [ -z "$owner" ] && [ -e "$path" ]; then chown --reference="$path" -- "$tmp"; elif [ -n "$owner" ]; then chown "$owner" -- "$tmp"; fi
sync -- "$tmp" 2>/dev/null || true
mv -f -- "$tmp" "$path"
trap - EXIT HUP INT TERM"""
MISSING_EXIT: Final = 3


@dataclass(frozen=True)
class Result:
    """What one command did: its exit code and both output streams, secrets masked."""

    command: str
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def output(self) -> str:
        """Both streams, stdout first; many daemons log to stderr."""
        return self.stdout + self.stderr

    def summary(self) -> dict[str, Any]:
        tail = self.output.strip().splitlines()[-5:]
        return {"command": self.command, "exit_code": self.exit_code, "output_tail": tail}


@dataclass(frozen=True)
class FileState:
    """A file's bytes, mode and owner as read in one go."""

    path: str
    content: bytes
    mode: int
    uid: int
    gid: int

    @property
    def sha256(self) -> str:
        return sha256(self.content)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Transport(ABC):
    """Runs commands and edits files on one host; every method means the same on every implementation."""

    name: str
    become: bool = False
    history: list[Result] = field(default_factory=list)

    @abstractmethod
    def _exec(self, argv: Sequence[str], *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
        """Run argv; return exit code, stdout, stderr."""

    @abstractmethod
    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        """A socket-like stream to host:port as this host sees it."""

    def close(self) -> None:
        """Release the connection, if any."""

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        sudo: bool | None = None,
        timeout: float | None = 120,
        check: bool = False,
        display: str | None = None,
    ) -> Result:
        """Run one command; argv items are quoted, never interpreted by a shell."""
        started = time.monotonic()
        code, out, err = self._exec(list(argv), stdin=stdin, sudo=self.become if sudo is None else sudo, timeout=timeout)
        result = Result(
            command=redact.text(display or shlex.join(argv)),
            exit_code=code,
            stdout=redact.text(out.decode("utf-8", "replace")),
            stderr=redact.text(err.decode("utf-8", "replace")),
            duration=round(time.monotonic() - started, 3),
        )
        self.history.append(result)
        if check and not result.ok:
            raise CommandError(
                f"{self.name}: `{result.command}` failed with exit code {code}: {_tail(result.output)}"
            )
        return result

    def shell(self, script: str, *args: str, stdin: bytes | None = None, sudo: bool | None = None,
              timeout: float | None = 120, check: bool = False, display: str | None = None) -> Result:
        """Run a fixed sh script with quoted positional arguments."""
        return self.run(["sh", "-c", script, "sh", *args], stdin=stdin, sudo=sudo, timeout=timeout,
                        check=check, display=display)

    def read(self, path: str) -> FileState | None:
        """The file's bytes, mode and owner, or None when it does not exist."""
        code, out, err = self._exec(["sh", "-c", READ_SCRIPT, "sh", path], stdin=None, sudo=self.become, timeout=60)
        self.history.append(Result(command=f"read {path}", exit_code=code))
        if code == MISSING_EXIT:
            return None
        if code != 0:
            raise CommandError(f"{self.name}: cannot read {path}: {_tail(redact.text(err.decode('utf-8', 'replace')))}")
        header, _, content = out.partition(b"\n")
        mode, uid, gid = header.decode().split()
        return FileState(path, content, int(mode, 8), int(uid), int(gid))

    def write(self, path: str, content: bytes, *, mode: int | None = None, owner: str | None = None) -> None:
        """Replace path atomically; keeps the old mode and owner unless told otherwise."""
        self.shell(WRITE_SCRIPT, path, "" if mode is None else f"{mode:o}", owner or "", stdin=content,
                   check=True, display=f"write {path} (sha256 {sha256(content)[:12]})")

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path], display=f"test -e {path}").ok

    def remove(self, path: str) -> None:
        self.run(["rm", "-f", "--", path], check=True)

    def copy(self, src: str, dst: str) -> None:
        """Copy src to dst keeping mode, owner and times."""
        self.run(["cp", "-p", "--", src, dst], check=True)

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        self.run(["mkdir", "-p", "-m", f"{mode:o}", "--", path], check=True)

    def sha256(self, path: str) -> str | None:
        result = self.shell('[ -e "$1" ] || exit 3; sha256sum -- "$1"', path, display=f"sha256 {path}")
        if result.exit_code == MISSING_EXIT:
            return None
        if not result.ok:
            raise CommandError(f"{self.name}: cannot hash {path}: {_tail(result.output)}")
        return result.stdout.split()[0]


def _tail(text: str, lines: int = 3) -> str:
    kept = text.strip().splitlines()[-lines:]
    return " | ".join(kept) if kept else "(no output)"
