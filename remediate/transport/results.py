"""What a transport's commands and reads give back: a command's Result, a file's FileState."""

from __future__ import annotations

from typing import Any

from remediate import redact
from remediate.contract.plan import sha256
from remediate.records import record


@record(frozen=True)
class Result:
    """What one command did: its exit code and both output streams, exactly (the command line is for display)."""

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
        """For the journal and the screen: secrets masked."""
        tail = redact.text(self.output).strip().splitlines()[-5:]
        return {"command": self.command, "exit_code": self.exit_code, "output_tail": tail}


@record(frozen=True)
class FileState:
    """A file's bytes, mode and owner as read in one go."""

    path: str
    content: bytes
    mode: int
    uid: int
    gid: int
    #: For a symbolic link: the canonical path of the file it points to (the content is that file's).
    link: str | None = None

    @property
    def sha256(self) -> str:
        return sha256(self.content)

    @property
    def identity(self) -> str:
        """What a write compares before it writes (onhost.files.write): content, mode and owner."""
        return f"{self.sha256} {self.mode:o} {self.uid} {self.gid}"
