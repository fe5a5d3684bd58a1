"""What a host looked like at one moment, for the kit's comparisons: files (bytes, mode, owner, mtime) and the
compose project's containers (id and start time); and the differences between two such moments, in words."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from remediate.testkit.host import Container, LabHost


@dataclass(frozen=True)
class FileState:
    """One file: None content when it does not exist."""

    content: bytes | None
    mode: int = 0
    uid: int = -1
    gid: int = -1
    mtime_ns: int = 0

    @classmethod
    def of(cls, path: str) -> FileState:
        try:
            st = os.stat(path)
            return cls(Path(path).read_bytes(), st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_mtime_ns)
        except FileNotFoundError:
            return cls(None)

    def shape(self) -> str:
        return "absent" if self.content is None else f"mode {self.mode:04o}, owner {self.uid}:{self.gid}"


@dataclass(frozen=True)
class Snapshot:
    """Files and containers of a host at one moment."""

    files: dict[str, FileState]
    containers: dict[str, Container]

    @classmethod
    def take(cls, host: LabHost, paths: Iterable[str]) -> Snapshot:
        return cls({p: FileState.of(p) for p in dict.fromkeys(paths)}, host.containers())

    def content_changes(self, now: Snapshot) -> list[str]:
        """How the files' bytes, mode and owner differ now (a diff for each changed text), in words."""
        found = []
        for path, before in self.files.items():
            after = now.files.get(path) or FileState.of(path)
            if before.content != after.content:
                found.append(f"{path}: its bytes differ from before the run:\n{_diff(before.content, after.content)}")
            elif before.shape() != after.shape():
                found.append(f"{path}: was {before.shape()}, is {after.shape()}")
        return found

    def changes(self, now: Snapshot) -> list[str]:
        """content_changes, plus files rewritten with the same bytes and containers re-created or restarted."""
        found = self.content_changes(now)
        found += [f"{p}: rewritten (its mtime changed) with the same bytes" for p, before in self.files.items()
                  if before.content is not None and before.content == now.files[p].content
                  and before.mtime_ns != now.files[p].mtime_ns]
        for name, before in self.containers.items():
            after = now.containers.get(name)
            if after is None:
                found.append(f"container {name}: gone")
            elif after.id != before.id:
                found.append(f"container {name}: re-created (id {before.id[:12]} -> {after.id[:12]})")
            elif after.started_at != before.started_at:
                found.append(f"container {name}: restarted (started {before.started_at} -> {after.started_at})")
        found += [f"container {name}: new" for name in now.containers.keys() - self.containers.keys()]
        return found


def _diff(before: bytes | None, after: bytes | None) -> str:
    if before is None or after is None:
        return f"  it {'did not exist' if before is None else 'existed'} before, and {'does' if after else 'does not'} now"
    lines = difflib.unified_diff(before.decode(errors="replace").splitlines(), after.decode(errors="replace").splitlines(),
                                 "before", "now", lineterm="", n=1)
    return "\n".join(f"  {line}" for line in lines)
