"""What a step would change: files with before and after, commands, and the reason."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import field
from enum import StrEnum
from typing import Any, Final

from remediate import redact
from remediate.records import record


def sha256(data: bytes) -> str:
    """The hex sha256 of a file's bytes: how plans, journals and hosts name a content."""
    return hashlib.sha256(data).hexdigest()


@record(frozen=True)
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
        return f"{self.before_sha256} {0o644 if self.before_mode is None else self.before_mode:o} {uid} {gid}"

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
        import difflib  # loaded by the first plan that changes a file

        label = f"{self.target}:{self.path}"
        lines = difflib.unified_diff(old, new, "/dev/null" if self.before is None else f"a/{label}", f"b/{label}")
        return redact.text("".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines))


class PlanStatus(StrEnum):
    """What a step's plan says it will do to its host (the `step_planned` event's status)."""

    CHANGE = "change"  # write files or run commands
    CHECK = "check"  # only check the host
    OK = "ok"  # nothing to do


@record(frozen=True)
class ShownDiff:
    """One file's unified diff as shown (secrets masked)."""

    path: str
    diff: str


@record(frozen=True)
class ShownPlan:
    """A step's plan as people read it, secrets masked: what `plan` prints and a saved plan file keeps per step.
    `as_dict` writes its JSON form and `parse` reads it back (a saved plan file's step)."""

    step: str
    kind: str
    target: str
    status: PlanStatus
    reason: str
    diffs: tuple[ShownDiff, ...] = ()
    commands: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "kind": self.kind, "target": self.target, "status": self.status,
                "reason": self.reason, "diffs": [{"path": d.path, "diff": d.diff} for d in self.diffs],
                "commands": list(self.commands), "checks": list(self.checks)}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ShownPlan:
        return cls(str(data["step"]), str(data["kind"]), str(data["target"]), PlanStatus(data["status"]),
                   str(data["reason"]), tuple(ShownDiff(str(d["path"]), str(d["diff"])) for d in data.get("diffs") or ()),
                   tuple(map(str, data.get("commands") or ())), tuple(map(str, data.get("checks") or ())))


@record(frozen=True)
class Applied:
    """What a step's apply did, handed to its verify (a step keeps no state on itself between the two): the sha256
    each file it wrote was read back with, by path, and anything else its verify needs."""

    read_back: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


NOTHING_APPLIED: Final = Applied()


@record(frozen=True)
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

    @property
    def status(self) -> PlanStatus:
        return PlanStatus.CHANGE if self.changed else (PlanStatus.CHECK if self.checks else PlanStatus.OK)

    def shown(self) -> ShownPlan:
        """The plan as people read it, every secret masked."""
        return ShownPlan(self.step_id, self.kind, self.target, self.status, redact.text(self.reason),
                         tuple(ShownDiff(f.path, f.diff()) for f in self.files),
                         tuple(redact.text(c) for c in self.commands), tuple(redact.text(c) for c in self.checks))

    def event(self) -> dict[str, Any]:
        """The JSON form of the plan as shown (`step_planned`'s fields, a saved plan file's step)."""
        return self.shown().as_dict()
