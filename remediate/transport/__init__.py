"""One interface for running commands and editing files, locally or over SSH."""

from __future__ import annotations

import posixpath
import re
import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import field
from typing import Any, ClassVar, Final

from remediate import redact
from remediate.contract.plan import sha256 as sha256  # re-exported: the one hash of file contents
from remediate.errors import CommandError, ConflictError, InputError, JournalWriteError, RunFolderError
from remediate.records import record
from remediate.transport.bythread import ByThread, MadeByThread
from remediate.transport.onhost import SOURCE, TOO_OLD
from remediate.transport.onhost.common import FOREIGN_LINK, OPERATION
from remediate.transport.onhost.folders import REFUSED
from remediate.transport.results import FileState as FileState  # re-exported: what reads and commands return
from remediate.transport.results import Result as Result

MAX_READ: Final = 8 * 1024 * 1024
#: Exit codes of the host-side operations (transport/onhost): what the transport acts on.
FOREIGN_LINK_EXIT: Final = FOREIGN_LINK
JOURNAL_FAILED: Final = 8
CHANGED_EXIT: Final = 9
INCOMPLETE_EXIT: Final = 10
MISSING_EXIT: Final = 3
FOLDER_REFUSED_EXIT: Final = REFUSED
#: The operation names of transport/onhost that run() may be asked for (see Transport.operation).
OPERATIONS: Final = frozenset({"read", "write", "journal_then", "journal_new_then", "list_backups", "backup",
                               "prune_backups", "take_lock", "remove", "sha256", "private_folder", "renew_lock",
                               "release_lock", "show_lock", "batch", "make_folders"})
#: Why a run folder is refused, and what to do.
FOLDER_HINT: Final = ("another user could swap what remediate keeps there (before-images, the run's journal) for links "
                      "and have it write elsewhere. Look at what is in it, then remove it, or make it a folder of the "
                      "user remediate runs as with mode 0700, and run again")


#: A batch's answer to an operation it left for later (past its budget).
NOT_ASKED: Final = -1
_INTEGER: Final = re.compile(rb"-?[0-9]+")


def read_ask(path: str) -> tuple[str, ...]:
    """Transport.read(path) as it is asked for ahead (Transport.read_ahead, Step.reads_ahead)."""
    return ("read", path, str(MAX_READ))


class NoPython(CommandError):
    """The host has no python3 (3.6 or later) that remediate can run its own operations with."""


class ForwardingRefused(OSError):
    """The SSH server will not open TCP streams for us (AllowTcpForwarding no, PermitOpen): a permanent refusal."""


#: Called on this thread before any command goes, on any transport: a run's journal saves then what it has not yet
#: (Journal.before_command: a step's "applying", left to go with its first record when nothing runs before that).
BEFORE_COMMAND: ContextVar[Callable[[], None] | None] = ContextVar("remediate_before_command", default=None)


@record
class Transport(ABC):
    """Runs commands and edits files on one host; every method means the same on every implementation."""

    name: str
    become: bool = False
    history: list[Result] = field(default_factory=list)
    #: The run's journal copy to write before its next command (returns its path and bytes when asked, so it is always
    #: the newest); see Journal.update_step(via=...). The run's own: hosts running in parallel may share this
    #: connection (a step that targets another host of the run), and another host's command, which could reach the
    #: host after this run's mutation, never takes it.
    pending_journal: ByThread[Callable[[], tuple[str, bytes]]] = ByThread()
    #: Whether open_tcp works here: None until tried, False once the server refused port forwarding.
    forwarding: bool | None = None
    #: What probes learned about this host on this connection: its remediate.probes.facts.HostFacts (facts.of makes it).
    facts: Any = None
    #: The run's own folders made on this connection (mkdir: one round trip per folder per run).
    private_dirs: set[str] = field(default_factory=set)
    #: The run's folder asked for with mkdir(later=True) and not made yet: made by the request that writes the
    #: journal's first copy into it (journal_new_then), or on its own before any other request of that run (another
    #: host's request on this connection neither makes it nor answers for its refusal).
    pending_folder: ByThread[str] = ByThread()
    #: Read-only operations the run asked for ahead, in one request (read_ahead), by their argv: each one's answer,
    #: taken (once) by the run's read or operation that asks for the same; forget_ahead drops what none took. The
    #: run's own: another host's run that shares the connection never takes an answer older than its own ask.
    ahead: ClassVar[MadeByThread[dict[tuple[str, ...], tuple[int, bytes, bytes]]]] = MadeByThread(dict)
    #: Called with every command's Result as it ends (-v shows them).
    observe: Callable[[Result], None] | None = None

    def _seen(self, result: Result) -> None:
        self.history.append(result)
        if self.observe is not None:
            self.observe(result)

    @abstractmethod
    def _exec(self, argv: Sequence[str], *, stdin: bytes | None, sudo: bool, timeout: float | None) -> tuple[int, bytes, bytes]:
        """Run argv (an operation request, see operation(), is run as one_shot(argv) says); return exit code, stdout,
        stderr."""

    @abstractmethod
    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        """A socket-like stream to host:port as this host sees it."""

    def warm(self) -> None:
        """Get ready for the first command (an SSH transport starts its agent), while the run goes on preparing."""

    @property
    def interpreter(self) -> tuple[str, ...]:
        """The python3 that runs remediate's own operations on this host (ansible_python_interpreter)."""
        return ("python3",)

    def one_shot(self, argv: Sequence[str]) -> list[str]:
        """The command that runs argv: an operation request as `python3 -I -S -c SOURCE NAME ARGS...` (the host side,
        transport/onhost, in a process of its own), any other argv as it is."""
        if argv and argv[0] == OPERATION:
            return [*self.interpreter, "-I", "-S", "-c", SOURCE, *argv[1:]]
        return list(argv)

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
        """Run one command; argv items are quoted, never interpreted by a shell. A journal copy left to ship
        (pending_journal) is written first, in the same round trip."""
        started = time.monotonic()
        if (before := BEFORE_COMMAND.get()) is not None:
            before()
        sudo = self.become if sudo is None else sudo
        shown = display or shlex.join(argv)
        if self.pending_journal is not None and sudo != self.become:  # never let a command pass an unshipped copy
            path, data = self.pending_journal()
            self.pending_journal = None
            self.write(path, data, mode=0o600)
        shipped, new = self.pending_journal, None
        if shipped is not None:
            self.pending_journal = None
            path, data = shipped()
            if self.pending_folder is not None and posixpath.dirname(path) == self.pending_folder:
                new, self.pending_folder = self.pending_folder, None  # made with the copy: one round trip
            argv = [OPERATION, "journal_new_then" if new else "journal_then", path, str(len(data)), *argv]
            stdin = data + (stdin or b"")
            shown = f"write {path} (sha256 {sha256(data)[:12]}), then {shown}"
        self._folder_first()
        try:
            code, out, err = self._exec(list(argv), stdin=stdin, sudo=sudo, timeout=timeout)
            self._python_found(argv, code, out, err)
        except BaseException:
            self.pending_folder = self.pending_folder or new  # made or not: the next request makes sure
            raise
        failed = shipped is not None and code == JOURNAL_FAILED and b"remediate: cannot write the journal" in err
        unmade = failed and new is not None and b"remediate: cannot make the run's folder" in err
        if new is not None and not unmade:
            self.private_dirs.add(new)  # made and checked, whatever came after
        if failed:
            reason = _tail(redact.text(err.decode("utf-8", "replace")))
            raise (RunFolderError if unmade else JournalWriteError)(
                f"{self.name}: the run's journal could not be written, so `{shown}` did not run: {reason}",
                hint=FOLDER_HINT if unmade and b"remediate: refusing to use " in err else None)
        result = Result(
            command=redact.text(shown),
            exit_code=code,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=round(time.monotonic() - started, 3),
        )
        self._seen(result)
        return self._checked(result) if check else result

    def _checked(self, result: Result) -> Result:
        """result, unless it failed: then CommandError naming the command, its exit code and its output's end."""
        if not result.ok:
            raise CommandError(
                f"{self.name}: `{result.command}` failed with exit code {result.exit_code}: {_tail(result.output)}"
            )
        return result

    def _python_found(self, argv: Sequence[str], code: int, out: bytes, err: bytes) -> None:
        """Raise NoPython when an operation did not run because the host's python3 is missing or too old; nothing of
        it ran then (the interpreter never started, or stopped before its first operation)."""
        if not argv or argv[0] != OPERATION or out:
            return
        said = err.decode("utf-8", "replace")
        name = self.interpreter[0]
        missing = code in (126, 127) and name in said
        # An interpreter that cannot compile the operations (Python 2) says so before running any: the compiler's
        # own report, with no traceback, not an operation's message that happens to name a SyntaxError.
        uncompiled = code == 1 and said.startswith('  File "<string>", line ') and "Traceback" not in said \
            and re.search(r"^SyntaxError: ", said, re.MULTILINE) is not None
        if not (missing or TOO_OLD in said or uncompiled):
            return
        raise NoPython(f"{self.name}: remediate runs its own file operations (read, write, lock, backup) with Python "
                       f"3.6 or later on the host, and `{shlex.join(self.interpreter)}` did not run them: "
                       f"{_tail(redact.text(said))}",
                       hint="install python3 on the host, or set ansible_python_interpreter to a Python 3.6 or later "
                            "there; nothing was changed on it")

    def operation(self, name: str, *args: str, stdin: bytes | None = None, timeout: float | None = 120,
                  check: bool = False, display: str) -> Result:
        """Run remediate's own operation `name` on the host (transport/onhost: the one implementation of each), in
        this connection's agent when it has one, else in a python3 process of its own (one_shot). A read-only one
        asked for ahead (read_ahead) is answered from there, once."""
        assert name in OPERATIONS, name
        early = self.ahead.pop((name, *args), None) if stdin is None else None
        if early is None:
            return self.run([OPERATION, name, *args], stdin=stdin, timeout=timeout, check=check, display=display)
        code, out, err = early
        result = Result(command=redact.text(f"{display} (asked ahead)"), exit_code=code,
                        stdout=out.decode("utf-8", "replace"), stderr=err.decode("utf-8", "replace"))
        self._seen(result)
        return self._checked(result) if check else result

    def read_ahead(self, asks: Sequence[tuple[str, ...]]) -> None:
        """Ask for several read-only operations (onhost.loop.READ_ONLY, e.g. ("read", path, str(MAX_READ))) in one
        round trip, before the steps that need them ask; each answer is kept for the one that asks for the same
        (then taken, so a second ask goes to the host). The host answers until its answers pass BATCH_BUDGET; the
        rest, and every one when the answer is out of step, are asked for again on their own. A connection or sudo
        that fails is raised here, as the first read would raise it (never tried twice)."""
        asks = [a for a in dict.fromkeys(asks) if a not in self.ahead]
        if len(asks) < 2:
            return  # one ask saves no round trip
        argv = [OPERATION, "batch"]
        for ask in asks:
            argv += [str(len(ask)), *ask]
        started = time.monotonic()
        self._folder_first()
        code, out, err = self._exec(argv, stdin=None, sudo=self.become, timeout=60)
        shown = "; ".join(f"read {a[1]}" if a[0] == "read" else " ".join(a) for a in asks)
        self._seen(Result(command=redact.text(f"ask ahead: {shown}"), exit_code=code,
                          stderr=err.decode("utf-8", "replace"), duration=round(time.monotonic() - started, 3)))
        answers: list[tuple[int, bytes, bytes]] = []
        while code == 0 and out and len(answers) < len(asks):
            head, _, out = out.partition(b"\n")
            fields = head.split()
            if len(fields) != 3 or not all(_INTEGER.fullmatch(f) for f in fields):
                return
            status, size, more = (int(f) for f in fields)
            if size < 0 or more < 0 or len(out) < size + more:
                return  # cut short: nothing is kept
            answers.append((status, out[:size], out[size:size + more]))
            out = out[size + more:]
        if code == 0 and len(answers) == len(asks) and not out:
            self.ahead.update((ask, answer) for ask, answer in zip(asks, answers) if answer[0] != NOT_ASKED)

    def forget_ahead(self) -> None:
        """Drop what was asked for ahead and not taken: a later read goes to the host."""
        self.ahead.clear()

    def shell(self, script: str, *args: str, stdin: bytes | None = None, sudo: bool | None = None,
              timeout: float | None = 120, check: bool = False, display: str | None = None) -> Result:
        """Run a fixed sh script with quoted positional arguments."""
        return self.run(["sh", "-c", script, "sh", *args], stdin=stdin, sudo=sudo, timeout=timeout,
                        check=check, display=display)

    def read(self, path: str) -> FileState | None:
        """The file's bytes, mode, owner and link target, or None when it does not exist.

        Refuses, before transferring anything, a path that is not a regular file or is larger than MAX_READ."""
        started = time.monotonic()
        ask = read_ask(path)
        argv = [OPERATION, *ask]
        early = self.ahead.pop(ask, None)
        if early is None:
            self._folder_first()
        code, out, err = early if early is not None else self._exec(argv, stdin=None, sudo=self.become, timeout=60)
        self._python_found(argv, code, out, err)
        self._seen(Result(command=redact.text(f"read {path}" + (" (asked ahead)" if early is not None else "")),
                          exit_code=code,
                          stderr=err.decode("utf-8", "replace"), duration=round(time.monotonic() - started, 3)))
        reason = _tail(redact.text(err.decode("utf-8", "replace")))
        if code == FOREIGN_LINK_EXIT:
            raise InputError(f"{self.name}:{path}: {reason}", hint="name the file by a path whose links are root's "
                             "(or the login user's), or remove the link")
        if code == MISSING_EXIT:
            return None
        if code == 6:
            raise InputError(f"{self.name}:{path} is not a regular file; refusing to read it", hint="check the path")
        if code == 7:
            raise InputError(f"{self.name}:{path} is {reason}; remediate reads files of at most {MAX_READ} bytes",
                             hint="check the path: this is not a configuration file")
        if code != 0:
            raise CommandError(f"{self.name}: cannot read {path}: {reason}")
        header, _, rest = out.partition(b"\n")
        link, _, content = rest.partition(b"\n")
        mode, uid, gid = header.decode().split()
        return FileState(path, content, int(mode, 8), int(uid), int(gid), link.decode("utf-8", "replace") or None)

    def write(self, path: str, content: bytes, *, mode: int | None = None, owner: str | None = None,
              expect: str | None = None, backup: str | None = None) -> str:
        """Replace path atomically; keeps the old mode and owner unless told otherwise. Returns the sha256 of the
        file as read back from disk after the rename.

        expect: "<sha256> <mode> <uid> <gid>" (see FileState.identity) or "absent": refuse (ConflictError) unless the
        file is still exactly that. backup: copy the file there first (its before-image, with its mode, owner and times:
        a new file, so a name already there fails the write). One round trip in all."""
        digest = sha256(content)
        result = self.operation("write", path, "" if mode is None else f"{mode:o}", owner or "", expect or "",
                                backup or "", digest, stdin=content, display=f"write {path} (sha256 {digest[:12]})")
        if result.exit_code == CHANGED_EXIT:
            found = result.stderr.strip().splitlines()[-1:] or ["?"]
            raise ConflictError(f"{self.name}:{path} changed since the plan (now {found[0][:80]}, planned on "
                                f"{(expect or '?')[:80]}); refusing to overwrite someone else's edit",
                                hint="run `remediate plan` again and review the new diff")
        if result.exit_code == INCOMPLETE_EXIT:
            raise CommandError(f"{self.name}:{path}: the new content did not arrive whole; the file was left as it "
                               f"was", hint="check the connection and run again")
        if not result.ok:
            raise CommandError(f"{self.name}: `{result.command}` failed with exit code {result.exit_code}: "
                               f"{_tail(result.output)}")
        return result.stdout.strip()

    def exists(self, path: str) -> bool:
        return self.shell('test -e "$1"', path, display=f"test -e {path}").ok

    def remove(self, path: str, *, expect: str | None = None) -> None:
        """rm -f; expect (FileState.identity): only while the file is still exactly that (ConflictError otherwise)."""
        result = self.operation("remove", path, *([expect] if expect else []), display=f"rm -f -- {path}")
        if result.exit_code == CHANGED_EXIT and expect:
            raise ConflictError(f"{self.name}:{path} changed meanwhile (now {result.stderr.strip()[:80]}); refusing "
                                "to remove it")
        self._checked(result)

    def mkdir(self, path: str, *, later: bool = False) -> None:
        """Make path, the folder of a run's own files, in its state folder (onhost.folders.private_folder): both
        private, made 0700 when absent. A state or run folder found there that another user could swap things in (a
        link, someone else's, writable by others) stops the run here, before anything changes, naming it and why.

        later: the folder of the run's journal, made by the request that writes the journal's first copy into it, in
        the same round trip, or on its own before any other request. Either way nothing runs after a refusal, which
        is then a RunFolderError (a JournalWriteError: the mutation that copy preceded never ran)."""
        if path in self.private_dirs or path == self.pending_folder:
            return  # made on this connection already: one round trip per folder per run
        self._folder_first()
        if later:
            self.pending_folder = path
        else:
            self._make_folder(path, CommandError)

    def _folder_first(self) -> None:
        """The folder mkdir(later=True) left, made now: another request is about to go."""
        path, self.pending_folder = self.pending_folder, None
        if path is None:
            return
        try:
            self._make_folder(path, RunFolderError)
        except RunFolderError:
            raise
        except BaseException:
            self.pending_folder = path  # lost on the way: made or not, the next request makes sure
            raise

    def _make_folder(self, path: str, error: type[CommandError]) -> None:
        result = self.operation("private_folder", path, display=f"mkdir -m 700 {path}")
        if result.exit_code == FOLDER_REFUSED_EXIT:
            said = [line for line in result.stderr.splitlines() if line.startswith("remediate: ")]
            reason = said[-1].removeprefix("remediate: ") if said else _tail(result.stderr)
            raise error(f"{self.name}: {reason}", hint=FOLDER_HINT)
        if not result.ok:
            raise error(f"{self.name}: cannot make the run's folder {path}: {_tail(result.output)}")
        self.private_dirs.add(path)

    def sha256(self, path: str) -> str | None:
        """The file's sha256, or None when it does not exist."""
        result = self.operation("sha256", path, display=f"sha256 {path}")
        if result.exit_code == MISSING_EXIT:
            return None
        if not result.ok:
            raise CommandError(f"{self.name}: cannot hash {path}: {_tail(result.output)}")
        return result.stdout.split()[0]


def _tail(text: str, lines: int = 3) -> str:
    kept = text.strip().splitlines()[-lines:]
    return " | ".join(kept) if kept else "(no output)"
