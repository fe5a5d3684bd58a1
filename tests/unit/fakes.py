"""A transport that keeps files in memory and refuses any command it was not told about."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from remediate.errors import CommandError, ConflictError, JournalWriteError
from remediate.transport import JOURNAL_FAILED, OPERATION, FileState, Result, Transport

Reply = tuple[int, str, str] | Callable[[bytes | None], tuple[int, str, str]]
#: The lock's own operations (onhost.folders), kept in memory with the files.
LOCK_OPERATIONS = frozenset({"take_lock", "renew_lock", "release_lock", "show_lock"})


class UnexpectedCommand(AssertionError):
    """The code under test ran a command the test did not allow."""


@dataclass
class FakeTransport(Transport):
    files: dict[str, FileState] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    fail_write: Callable[[str], bool] = lambda path: False

    def expect(self, command: str | list[str], reply: Reply = (0, "", "")) -> None:
        key = command if isinstance(command, str) else shlex.join(command)
        self.replies[key] = reply

    def read_ahead(self, asks: Sequence[tuple[str, ...]]) -> None:
        """The files are in memory here: nothing is asked ahead, and each read or operation answers when asked
        (tests/unit/test_transport_one_shot.py holds read_ahead itself to its contract)."""

    def _exec(self, argv: Sequence[str], *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
        if list(argv[:2]) == [OPERATION, "journal_then"]:  # the journal copy shipped with a command
            journal_path, size = argv[2], int(argv[3])
            assert stdin is not None
            if self.fail_write(journal_path):
                return JOURNAL_FAILED, b"", f"remediate: cannot write the journal {journal_path}".encode()
            self.files[journal_path] = FileState(journal_path, stdin[:size], 0o600, 0, 0)
            self.writes.append(journal_path)
            argv, stdin = argv[4:], (stdin[size:] or None)
        if argv and argv[0] == OPERATION and argv[1] in LOCK_OPERATIONS:
            return self._lock(argv[1], argv[2:], stdin)
        command = shlex.join(argv)
        if command not in self.replies:
            raise UnexpectedCommand(f"{self.name}: unexpected command {command!r}")
        self.ran.append(command)
        reply = self.replies[command]
        code, out, err = reply(stdin) if callable(reply) else reply
        return code, out.encode(), err.encode()

    def _lock(self, operation: str, args: Sequence[str], stdin: bytes | None) -> tuple[int, bytes, bytes]:
        """The lock's operations as onhost.folders does them, without a clock (no age is shown: a lease found here is
        never known to have lapsed). take_lock: create unless it exists, or replace it if it is still the bytes given;
        else show it. renew_lock, release_lock: only while it carries the token given (the journal copy a release carries written then). show_lock: read-only."""
        path, held = args[0], self.files.get(args[0])
        if operation == "take_lock":
            if held is not None and (len(args) < 2 or held.content != bytes.fromhex(args[1])):
                return 4, held.content, b""
            self.put(path, stdin or b"")
            return 0, b"", b""
        if held is None:
            return 3, b"", b""  # gone: a lease on it is lost (release_lock too: never taken for released)
        if operation == "show_lock":
            return 0, held.content, b""
        lease = json.loads(held.content or b"{}").get("lease") or {}
        if lease.get("token") != args[1]:
            return 4, held.content, b""
        if operation == "release_lock":
            if len(args) > 2:  # the journal copy the release carries: written once the token matched
                self.files[args[2]] = FileState(args[2], stdin or b"", 0o600, 0, 0)
                self.writes.append(args[2])
            del self.files[path]
        return 0, b"", b""

    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        raise UnexpectedCommand(f"{self.name}: unexpected connection to {host}:{port}")

    def put(self, path: str, content: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        data = content.encode() if isinstance(content, str) else content
        self.files[path] = FileState(path, data, mode, uid, gid)

    def read(self, path: str) -> FileState | None:
        self.history.append(Result(f"read {path}", 0))
        return self.files.get(path)

    def write(self, path: str, content: bytes, *, mode: int | None = None, owner: str | None = None,
              expect: str | None = None, backup: str | None = None) -> str:
        self._ship(f"write {path}")
        if self.fail_write(path):
            raise CommandError(f"{self.name}: `write {path}` failed with exit code 1: cat: write error: "
                               "No space left on device")
        old = self._unchanged(path, expect, "changed since the plan; refusing to overwrite someone else's edit")
        if backup is not None and old is not None:
            self.copy(path, backup)
        uid, gid = (int(x) for x in owner.split(":")) if owner else ((old.uid, old.gid) if old else (0, 0))
        self.files[path] = FileState(path, content, mode if mode is not None else (old.mode if old else 0o644), uid, gid)
        self.writes.append(path)
        self.history.append(Result(f"write {path}", 0))
        return self.files[path].sha256

    def exists(self, path: str) -> bool:
        return path in self.files or any(p.startswith(path.rstrip("/") + "/") for p in self.files)

    def _ship(self, what: str) -> None:
        """As the real transport does in run(): a journal copy left to ship goes first, in the same command."""
        if self.pending_journal is None:
            return
        shipped, self.pending_journal = self.pending_journal, None
        journal_path, data = shipped()
        if self.fail_write(journal_path):
            raise JournalWriteError(f"{self.name}: the run's journal could not be written, so `{what}` did not run: "
                                    "No space left on device")
        self.write(journal_path, data, mode=0o600)

    def _unchanged(self, path: str, expect: str | None, refusal: str) -> FileState | None:
        """The file as it is, when it is still `expect` (FileState.identity, or "absent"), as the host checks it."""
        old = self.files.get(path)
        if expect is not None and expect != (old.identity if old else "absent"):
            raise ConflictError(f"{self.name}:{path} {refusal}")
        return old

    def remove(self, path: str, *, expect: str | None = None) -> None:
        self._unchanged(path, expect, "changed meanwhile; refusing to remove it")
        self._ship(f"rm -f -- {path}")
        self.files.pop(path, None)
        self.writes.append(f"rm {path}")

    def copy(self, src: str, dst: str) -> None:
        self._ship(f"cp -p -- {src} {dst}")
        old = self.files[src]
        self.files[dst] = FileState(dst, old.content, old.mode, old.uid, old.gid)
        self.writes.append(f"cp {src} {dst}")

    def mkdir(self, path: str, *, later: bool = False) -> None:
        if not later:  # later: made by the journal's next copy, as the real transport does (nothing ships now)
            self._ship(f"mkdir {path}")
        self.writes.append(f"mkdir {path}")

    def sha256(self, path: str) -> str | None:
        state = self.files.get(path)
        return None if state is None else state.sha256
