"""One persistent agent per connection: a run's commands answered by one Python process on the host.

An SSH session per command costs the host a fork of sshd, a login shell and a python3 for each of remediate's own
operations (read, write, lock...). The agent (transport/onhost's SOURCE, started as `python3 -I -S -c BOOT` on a
session of its own, SOURCE then sent on its stdin: boot_frame) answers all of a run's operations with the same
functions a one-shot runs, and runs every other command as a session would. The token that frames its answers reaches
it on stdin, never on a command line.

Nothing runs before the agent says it is ready, so when it cannot start (sudo will not start it, no python3) each
command runs in a session of its own, having run nothing twice; the transport says so with -v.
"""

from __future__ import annotations

import functools
import importlib.util
import marshal
import os
import secrets
import select
import sys
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from remediate import private, redact
from remediate.errors import CommandError, RemediateError
from remediate.transport import onhost
from remediate.transport.onhost import BOOT, SOURCE
from remediate.transport.sudo import MAX_CHATTER as MAX_CHATTER
from remediate.transport.sudo import SudoDialogue as SudoDialogue
from remediate.transport.sudo import SudoTalk, WrongPassword

if TYPE_CHECKING:
    import subprocess

#: Payloads larger than this are sent from a thread, so that a command writing much output while its stdin is
#: still arriving cannot stall both directions.
INLINE_SEND: Final = 256 * 1024
#: How long sudo may take to start the agent (PAM, a directory service) before the run gives up on the connection.
SUDO_WAIT: Final = 30.0
#: At most this many bytes of a command's stdout, and as many of its stderr, are read from the host (see OutputCut).
MAX_OUTPUT: Final = 16 * 1024 * 1024
#: The most the agent keeps of a stream on the host (onhost.common.MAX_KEPT): past it the command is stopped.
HOST_KEPT: Final = MAX_OUTPUT + 1
#: The longest line read outside an answer's payload: an answer's header, or a line a login shell prints first.
MAX_LINE: Final = 64 * 1024
#: How much of a cut output's beginning its error keeps.
SHOWN: Final = 1024



def by_deadline(recv: Callable[[int], bytes], settimeout: Callable[[float | None], None],
                timeout: float | None) -> Callable[[int], bytes]:
    """recv, bounded by one deadline for the whole command, not per call: a command that trickles its output still
    ends at its timeout (socket.timeout)."""
    if timeout is None:
        return recv
    end = time.monotonic() + timeout

    def bounded(size: int) -> bytes:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no end within {timeout:g} s")
        settimeout(left)
        return recv(size)
    return bounded

class AgentLost(Exception):
    """The agent's channel ended, or answered out of step, in the middle of a command."""


class OutputCut(Exception):
    """A command printed more than `limit` bytes on one stream, and nothing past the bound was read. The command
    counts as failed: a cut output is never parsed or used. `began`: its first bytes, for the message (none when an
    answer's header announced too much); `size`, `code`: the full length and the exit code, when the host said them."""

    def __init__(self, stream: str, limit: int, *, size: int | None = None, began: bytes = b"",
                 code: int | None = None) -> None:
        super().__init__(f"more than {limit} bytes on {stream}")
        self.stream, self.limit, self.size, self.began, self.code = stream, limit, size, began[:SHOWN], code

    def error(self, host: str, shown: str, then: str) -> CommandError:
        """The error for the command `shown` (masked): it failed, and its output is not used; `then`: what became of
        its session or agent."""
        size = f", {self.size} bytes in all" if self.size is not None else ""
        code = f", exit code {self.code}" if self.code is not None else ""
        began = self.began[:80].decode("utf-8", "replace")
        shown_start = f"; it began {redact.text(began)!r}" if began else ""
        return CommandError(f"{host}: `{shown}` printed more than {self.limit} bytes on {self.stream}{size}{code}: "
                            f"output cut at {self.limit} bytes and the command counts as failed ({then}){shown_start}",
                            hint="remediate reads at most that much of each output stream of a command: send a "
                                 "larger output to a file on the host, or shorten it there (head, tail, --since)")


def agent_command(python: Sequence[str] = ("python3",)) -> list[str]:
    """The command that starts the agent with the given interpreter: BOOT, which runs SOURCE from its stdin."""
    return [*python, "-I", "-S", "-c", BOOT]


def bytecode() -> str:
    """This interpreter's bytecode, as onhost/boot.py names a host's: its cache tag and magic number."""
    return f"{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}"


_compiling = threading.Lock()


def boot_frame() -> bytes:
    """What the agent reads first (onhost/boot.py): SOURCE compiled here as `python3 -I -S -c SOURCE` compiles it, and
    as text, zlib-compressed (20 KB where it is 58: every host reads it past, and skipping it is cheaper through ssh).
    A host whose python3 has this interpreter's bytecode runs the code and skips compiling SOURCE (10 ms of its CPU on
    each connection); any other decompresses the text and compiles it, as before."""
    with _compiling:  # once per process, however many connections start their agents at once
        return _boot_frame()


@functools.cache
def _boot_frame() -> bytes:
    source = SOURCE.encode()
    code = _compiled(source)
    text = zlib.compress(source, 1)  # 0.7 ms once a run; level 9 saves 4 KB more for 4 ms
    return b"%s %d %d\n" % (bytecode().encode(), len(code), len(text)) + code + text


def _compiled(text: bytes) -> bytes:
    """SOURCE's code, marshalled. Kept as Python keeps a module's (a hash-checked .pyc, PEP 552, in onhost's
    __pycache__, beside the package's own and trusted as they are), so a run does not compile it again. Where that
    folder cannot be written (a package installed by root, run by another user) it is kept in the user's cache folder
    (own_cache), private as the state home is. Read only while it holds this interpreter's magic number and SOURCE's
    hash, and whole; not written when Python writes no bytecode (PYTHONDONTWRITEBYTECODE)."""
    key = importlib.util.source_hash(text)
    beside = Path(importlib.util.cache_from_source(str(Path(onhost.__file__).with_name(f"agent-{key.hex()}.py"))))
    header = importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little") + key
    for read in (beside.read_bytes, lambda: private.read_bytes(own_cache(make=False) / beside.name, code=True)):
        code = _kept(read, header)
        if code is not None:
            return code
    code = marshal.dumps(compile(SOURCE, "<string>", "exec", dont_inherit=True, optimize=0))
    if not sys.dont_write_bytecode and not _write_whole(beside, header + code):
        try:
            private.write_bytes(own_cache(make=True) / beside.name, header + code)
        except (OSError, RuntimeError, RemediateError):
            pass  # compiled again by the next run, as before
    return code


def _kept(read: Callable[[], bytes], header: bytes) -> bytes | None:
    """The code a kept copy holds, if it reads, is SOURCE's for this interpreter, and is whole (a copy cut short is
    compiled again, never sent)."""
    try:
        kept = read()
        if kept.startswith(header):
            marshal.loads(kept[len(header):])
            return kept[len(header):]
    except (OSError, RuntimeError, RemediateError, EOFError, ValueError, TypeError):
        pass
    return None


def own_cache(*, make: bool) -> Path:
    """$XDG_CACHE_HOME/remediate (~/.cache/remediate when that is unset or relative: private.xdg_base), once trusted
    as the state home is (private.folder): a folder of the user's that nobody else can write. make: made (0700) if
    missing; else a missing one raises FileNotFoundError. InputError when HOME is relative or empty, RuntimeError
    when there is no home folder."""
    path = private.xdg_base("XDG_CACHE_HOME", ".cache", "cache folder") / "remediate"
    if make:
        return private.folder(path)
    private.check_folder(path)
    return path


def _write_whole(path: Path, data: bytes) -> bool:
    """data as the file path, whole or not at all (another run may write it at the same time); False, writing
    nothing, when its folder cannot be written."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False


class Agent:
    """The agent on one channel. Not thread-safe: the transport holds a lock around run()."""

    def __init__(self, channel: Any, name: str, command: str, sudo: SudoDialogue | None = None,
                 limit: int = MAX_OUTPUT) -> None:
        self.channel, self.name = channel, name
        #: The most bytes of one command's stdout (and of its stderr) this agent reads.
        self.limit = limit
        self.token = secrets.token_hex(16).encode()
        #: Why the agent could not start (when run() returned None).
        self.why = ""
        self._ready = False
        self._buffer = bytearray()
        self._recv: Callable[[int], bytes] = channel.recv  # run() bounds it by the command's deadline
        channel.exec_command(command)
        if sudo is not None:
            self.why = self._through_sudo(sudo)
        if not self.why:
            try:
                channel.sendall(boot_frame() + self.token + b"\n")
            except OSError:  # its command ended at once (no python3 after sudo's marker): nothing was sent, nothing ran
                self.why = self._stderr() or "python3 ended at once"

    def _through_sudo(self, sudo: SudoDialogue) -> str:
        """Wait until sudo has started the agent, answering its prompt once; "" then, else why it did not.

        The token (and any command) is sent only after the marker, so sudo can never read it as a password."""
        self.channel.settimeout(SUDO_WAIT)
        talk = SudoTalk(sudo, self.channel.sendall, self.name)
        said, seen = b"", 0
        while not talk.running:
            chunk = self.channel.recv_stderr(4096)
            if not chunk:
                said += talk.rest()
                return said.decode("utf-8", "replace").strip()[-300:] or "sudo ended without starting it"
            seen += len(chunk)
            if seen > MAX_CHATTER:  # the token never went: closing the channel ends it having run nothing
                return f"sudo printed more than {MAX_CHATTER} bytes without starting it"
            try:
                said += talk.feed(chunk)
            except WrongPassword:
                self.close()
                raise
            except RemediateError as e:  # no password to give: commands sudo allows without one still work
                return f"sudo asks for a password to start it ({e})"
            said = said[-MAX_CHATTER:]
        return ""

    def run(self, argv: Sequence[str], stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes] | None:
        """Run argv; its exit code, stdout and stderr. None when the agent never started (nothing ran).

        Raises socket.timeout past timeout, AgentLost if the channel ends mid-command or answers out of step, and
        OutputCut when the answer announces more than `limit` bytes on a stream: it is refused before any of it is
        read, and the agent must then be closed (the rest of the answer is still on its way)."""
        if self.why:  # never started: nothing may be sent (sudo may still be reading a password)
            return None
        data = stdin or b""
        words = [a.encode("utf-8", "surrogateescape") for a in argv]
        request = b" ".join([self.token, str(len(data)).encode(), *(str(len(w)).encode() for w in words)])
        payload = b"".join([request, b"\n", *words, data])
        self._recv = by_deadline(self.channel.recv, self.channel.settimeout, timeout)
        sender = None
        if len(payload) <= INLINE_SEND:
            self.channel.sendall(payload)
        else:
            sender = threading.Thread(target=self._send, args=(payload,), daemon=True)
            sender.start()
        if not self._ready:
            skipped = 0
            while True:  # a login shell may print something first (a banner from .bashrc): skip it
                line = self._line()
                if line is None:
                    self.why = self._stderr() or "python3 ended at once"
                    return None
                if line == self.token + b" ready":
                    break
                skipped += len(line) + 1
                if skipped > MAX_CHATTER:  # the request is sent: whether it ran is not known, so never "nothing ran"
                    raise AgentLost(f"{self.name}: the remote agent's session printed more than {MAX_CHATTER} bytes "
                                    "before the agent said it was ready")
            self._ready = True
        header = self._line()
        if header is None:
            raise AgentLost(f"{self.name}: the remote agent ended during a command: {self._stderr() or 'no reason given'}")
        fields = header.split(b" ")
        if len(fields) != 4 or fields[0] != self.token or not all(f.isdigit() for f in fields[2:]) \
                or not fields[1].lstrip(b"-").isdigit():
            raise AgentLost(f"{self.name}: the remote agent answered out of step")
        code, out_size, err_size = (int(f) for f in fields[1:])
        for stream, size in (("stdout", out_size), ("stderr", err_size)):
            if size > self.limit:  # at the agent's own cap, the command was stopped there: its total is not known
                capped = size == HOST_KEPT
                raise OutputCut(stream, self.limit, size=None if capped else size, code=None if capped else code)
        out = self._exactly(out_size)
        err = self._exactly(err_size)
        if sender is not None:
            sender.join(timeout)
        return code, out, err

    def _send(self, payload: bytes) -> None:
        try:
            self.channel.sendall(payload)
        except OSError:
            pass

    def _fill(self) -> bool:
        chunk = self._recv(1 << 16)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def _line(self) -> bytes | None:
        """The next line (without its newline), None if the channel ends first; AgentLost past MAX_LINE bytes."""
        start = 0
        while True:
            at = self._buffer.find(b"\n", start, MAX_LINE + 1)
            if at >= 0:
                line = bytes(self._buffer[:at])
                del self._buffer[:at + 1]
                return line
            if len(self._buffer) > MAX_LINE:
                raise AgentLost(f"{self.name}: the remote agent answered out of step (a line of more than {MAX_LINE} "
                                "bytes)")
            start = len(self._buffer)
            if not self._fill():
                return None

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise AgentLost(f"{self.name}: the remote agent ended during a command")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _stderr(self) -> str:
        """What the agent's process said on stderr (why it ended), as far as it has arrived."""
        chunks: list[bytes] = []
        read = 0
        try:
            while read < MAX_LINE and self.channel.recv_stderr_ready():  # of which the last 300 characters are shown
                chunk = self.channel.recv_stderr(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                read += len(chunk)
        except OSError:
            pass
        return b"".join(chunks).decode("utf-8", "replace").strip()[-300:]

    def close(self) -> None:
        try:
            self.channel.close()
        except Exception:  # noqa: BLE001 - closing a channel that is already gone
            pass


class PipeChannel:
    """The channel calls Agent makes, on a local process's pipes: the agent without SSH, for tests and benchmarks."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def exec_command(self, command: str) -> None:
        import subprocess

        self.process = subprocess.Popen(["sh", "-c", "exec " + command], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def sendall(self, data: bytes) -> None:
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except BrokenPipeError:
            pass

    def recv(self, size: int) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        return os.read(self.process.stdout.fileno(), size)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def recv_stderr_ready(self) -> bool:  # as paramiko's: whether stderr has bytes to read now
        assert self.process is not None and self.process.stderr is not None
        return bool(select.select([self.process.stderr], [], [], 0.5)[0])

    def recv_stderr(self, size: int) -> bytes:
        assert self.process is not None and self.process.stderr is not None
        return os.read(self.process.stderr.fileno(), size)

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
