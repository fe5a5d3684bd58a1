"""What a step would change: files with before and after, commands, and the reason."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from remediate import redact


def sha256(data: bytes) -> str:
    """The hex sha256 of a file's bytes: how plans, journals and hosts name a content."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileChange:
    """One file a step would write, with both sides for the diff and the journal."""

    path: str
    target: str
    before: bytes | None
    after: bytes
    #: The file's mode and owner as the plan saw them (None for a new file).
    before_mode: int | None = None
    before_owner: tuple[int, int] | None = None

    @property
    def expect(self) -> str:
        """What the file must still be when it is written: content, mode and owner, or absent."""
        if self.before is None:
            return "absent"
        uid, gid = self.before_owner or (0, 0)
        return f"{self.before_sha256} {self.before_mode or 0o644:o} {uid} {gid}"

    @property
    def before_sha256(self) -> str | None:
        return None if self.before is None else sha256(self.before)

    @property
    def after_sha256(self) -> str:
        return sha256(self.after)

    def diff(self) -> str:
        """A unified diff, secrets masked; binary files are summarised."""
        try:
            old = (self.before or b"").decode("utf-8").splitlines(keepends=True)
            new = self.after.decode("utf-8").splitlines(keepends=True)
        except UnicodeDecodeError:
            return f"Binary file {self.path} changes ({len(self.before or b'')} -> {len(self.after)} bytes)\n"
        label = f"{self.target}:{self.path}"
        lines = difflib.unified_diff(old, new, "/dev/null" if self.before is None else f"a/{label}", f"b/{label}")
        return redact.text("".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines))


@dataclass(frozen=True)
class Applied:
    """What a step's apply did, handed to its verify (a step keeps no state on itself between the two): the sha256
    each file it wrote was read back with, by path, and anything else its verify needs."""

    read_back: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


NOTHING_APPLIED: Final = Applied()


@dataclass(frozen=True)
class Plan:
    """A step's verdict on a host: nothing to do and why, or the changes it would make."""

    step_id: str
    kind: str
    target: str
    reason: str
    files: tuple[FileChange, ...] = ()
    commands: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    #: What the step gives later steps ({{ steps.ID.NAME }}), whether or not it changes anything.
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.files or self.commands)

    def event(self) -> dict[str, Any]:
        return {
            "step": self.step_id,
            "kind": self.kind,
            "target": self.target,
            "status": "change" if self.changed else ("check" if self.checks else "ok"),
            "reason": redact.text(self.reason),
            "diffs": [{"path": f.path, "diff": f.diff()} for f in self.files],
            "commands": [redact.text(c) for c in self.commands],
            "checks": [redact.text(c) for c in self.checks],
        }
