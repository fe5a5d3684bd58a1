"""One interface for running commands and editing files, locally or over SSH."""

from __future__ import annotations

import shlex
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from remediate import redact
from remediate.contract.plan import sha256 as sha256  # re-exported: the one hash of file contents
from remediate.errors import CommandError, ConflictError, InputError, JournalWriteError

# Shell lines that refuse (exit 12) a path with a symbolic link among its folders that neither root nor the user
# remediate runs as owns: another user's link would lead remediate's reads and writes where they choose.
FOREIGN_LINKS: Final = """rest=${1#/} at=
case $1 in /*) at= ;; *) at=. ;; esac
while case $rest in */*) true ;; *) false ;; esac; do
    at=$at/${rest%%/*} rest=${rest#*/}
    if [ -L "$at" ]; then
        uid=$(stat -c %u -- "$at")
        [ "$uid" = 0 ] || [ "$uid" = "$(id -u)" ] || {
            echo "$at, a folder in the path, is a symbolic link owned by uid $uid; refusing to follow it" >&2; exit 12; }
    fi
done
"""
FOREIGN_LINK_EXIT: Final = 12
# Reads a regular file of at most $2 bytes with its mode, owner and, for a symbolic link, the canonical path it
# points to, in one round trip: "<mode> <uid> <gid>\n<link or empty>\n<bytes>". Exit 3: absent; 6: not a
# regular file (a device, a folder, a FIFO); 7: larger than $2. Nothing is transferred before those checks.
READ_SCRIPT: Final = FOREIGN_LINKS + """[ -e "$1" ] || exit 3
[ -f "$1" ] || { echo "not a regular file" >&2; exit 6; }
facts=$(stat -L -c '%s %a %u %g' -- "$1") || exit 1
size=${facts%% *}
[ "$size" -le "$2" ] || { echo "$size bytes" >&2; exit 7; }
link=
[ -L "$1" ] && link=$(readlink -f -- "$1")
printf '%s\\n%s\\n' "${facts#* }" "$link"
exec head -c "$2" -- "$1"
"""
MAX_READ: Final = 8 * 1024 * 1024


def _new_file(descriptor: int, name: str, through: str) -> str:
    """Shell lines that create the file named by "$<name>" as a new file, open on the descriptor, or end the script
    (exit 2) having written nothing, and set "$<through>" to a name for that descriptor (/proc/self/fd/N, where
    /proc exists).

    noclobber (set -C) is O_EXCL only for a name that does not exist: dash and bash open an existing name that is
    not a regular file (a link to a device or a FIFO) for writing without it. So a name that exists, even as a
    dangling link, is refused before any open; and what was opened must be a regular file that the name itself
    (not a link) still names, or nothing is written, chmod-ed or chown-ed through it (a name planted in between)."""
    return f"""if [ -e "${name}" ] || [ -L "${name}" ]; then echo "sh: cannot create ${name}: File exists" >&2; exit 2; fi
set -C
exec {descriptor}> "${name}"
set +C
{through}=/proc/self/fd/{descriptor}
[ -e "${through}" ] || {through}=${name}
[ -f "${through}" ] && [ ! -L "${name}" ] && [ "${through}" -ef "${name}" ] \\
    || {{ echo "${name} was replaced as it was created; refusing to use it" >&2; exit 2; }}"""


# Shell lines for the scripts that make a new file beside another: "$tmp", a new private file in "$dir" (_new_file),
# held open on descriptor 3, removed on exit; "$fd" names it through that descriptor. A name someone planted there,
# a link or a file, makes the script fail: it is never opened for writing, chmod-ed, chown-ed or removed, and what is
# written to "$fd" lands in our file even if the name is swapped meanwhile.
PRIVATE_TEMP: Final = """tmp=${dir:-/}/.remediate-tmp.$$
umask 077
""" + _new_file(3, "tmp", "fd") + """
trap 'rm -f -- "$tmp"' EXIT HUP INT TERM"""
# Writes stdin to $1 atomically: a private temporary file beside it, mode and owner set, fsync, rename. With $4 it
# first proves the file is still as planned ("<sha256> <mode> <uid> <gid>", or "absent"; exit 9 with what it found
# otherwise), and with $5 it copies the file there first (the before-image: a new file, created as _new_file does and
# written through its descriptor, never through a name), all in the one round trip. With $6 (the content's sha256) a
# content that did not arrive whole is never renamed into place (exit 10). The temporary file is PRIVATE_TEMP's.
WRITE_SCRIPT: Final = FOREIGN_LINKS + """set -eu
path=$1; mode=$2; owner=$3; expect=${4:-}; backup=${5:-}; want=${6:-}
[ -L "$path" ] && { echo "$path is a symbolic link; refusing to replace it" >&2; exit 5; }
facts=
if [ -e "$path" ]; then facts=$(stat -c '%a %u %g' -- "$path"); fi
if [ -n "$expect" ]; then
    now=absent
    if [ -n "$facts" ]; then sum=$(sha256sum < "$path"); now="${sum%% *} $facts"; fi
    [ "$now" = "$expect" ] || { printf '%s\\n' "$now" >&2; exit 9; }
fi
if [ -n "$backup" ]; then
umask 077
""" + _new_file(4, "backup", "copy") + """
cp -p -- "$path" "$copy"
exec 4>&-
fi
case $path in */*) dir=${path%/*} ;; *) dir=. ;; esac
""" + PRIVATE_TEMP + """
keep=${facts%% *}
chmod "${mode:-${keep:-644}}" -- "$fd"
if [ -n "$owner" ]; then chown "$owner" -- "$fd"
elif [ -n "$facts" ]; then
    ids=${facts#* }
    # Owned by us with our group, like the new file: nothing to change (one process fewer per write).
    [ -O "$path" ] && [ -G "$path" ] && [ -G "$tmp" ] || chown "${ids% *}:${ids#* }" -- "$fd"
fi
cat >&3
exec 3>&-
sum=$(sha256sum < "$tmp")
[ -z "$want" ] || [ "${sum%% *}" = "$want" ] || { echo "the content arrived incomplete (sha256 ${sum%% *})" >&2; exit 10; }
sync -- "$tmp" 2>/dev/null || true
mv -fT -- "$tmp" "$path"
trap - EXIT HUP INT TERM
printf '%s\\n' "${sum%% *}"
"""
#: Writes the run's journal copy from the first SIZE bytes of stdin (durably, 0600), then runs the command, which
#: reads the rest of stdin: the journal reaches the host in the same round trip as the mutation it describes.
#: The temporary name is fixed (the run's folder is ours, 0700) and made as _new_file does: never through a name
#: found there, which is left as it is (exit 2 in the subshell); a file of ours that failed is removed (exit 3).
JOURNAL_THEN: Final = """journal=$1 size=$2; shift 2
tmp=$journal.tmp.$$
(
umask 077
""" + _new_file(4, "tmp", "fd") + """
head -c "$size" >&4 && [ "$(wc -c < "$fd")" -eq "$size" ] && { sync -- "$tmp" 2>/dev/null || true; } \\
    && mv -fT -- "$tmp" "$journal" || { rm -f -- "$tmp"; exit 3; }
) && exec "$@"
echo "remediate: cannot write the journal $journal" >&2
exit 8"""
#: Makes $1, a folder for a run's own files (its before-images, the host's journal), in a state folder
#: (`.remediate` beside a changed file, or remediate_state_dir): each is made 0700 when absent, and each found there
#: must be a real folder (never a link), owned by the user remediate runs as, that neither its group nor others may
#: write in; otherwise exit 11 naming it and why, having made nothing in it. The run folder is made from inside the
#: state folder once that is checked (cd -P, then `.` is checked, then the name must still be that folder), so it is
#: never made through a link swapped in meanwhile. Then no one else can swap anything inside either: renaming or
#: removing a folder that holds something takes write permission on it.
PRIVATE_FOLDER_SCRIPT: Final = """umask 077
case $1 in /*) run=$1 ;; *) run=$PWD/$1 ;; esac
state=${run%/*} name=${run##*/}
refuse() {
    printf 'remediate: refusing to use %s: %s\\n' "$1" "$2" >&2
    exit 11
}
check() {
    [ -L "$1" ] && refuse "$2" "it is a symbolic link"
    [ -d "$1" ] || refuse "$2" "it is not a folder"
    set -- "$1" "$2" $(stat -c '%u %a %U' -- "$1")
    [ -O "$1" ] || refuse "$2" "it is owned by $5 (uid $3), not by the user remediate runs as (uid $(id -u))"
    [ $((0$4 & 022)) -eq 0 ] || refuse "$2" "it is writable by others (mode $4)"
}
[ -d "${state%/*}/" ] || mkdir -p -- "${state%/*}/" || exit 1
[ -e "$state" ] || [ -L "$state" ] || mkdir -- "$state" || [ -e "$state" ] || [ -L "$state" ] || exit 1
[ -L "$state" ] && refuse "$state" "it is a symbolic link"
[ -d "$state" ] || refuse "$state" "it is not a folder"
cd -P -- "$state" 2>/dev/null || { check "$state" "$state"; cd -P -- "$state" || exit 1; }
check . "$state"
same() {
    [ ! -L "$state" ] && [ "$state" -ef . ] || refuse "$state" "it was replaced while remediate checked it"
}
same
if [ -e "$name" ] || [ -L "$name" ]; then check "$name" "$run"; else mkdir -- "$name" || { same; exit 1; }; fi
same
"""
REMOVE_SCRIPT: Final = 'rm -f -- "$1"'
SHA256_SCRIPT: Final = '[ -e "$1" ] || exit 3; sha256sum < "$1"'
JOURNAL_FAILED: Final = 8
CHANGED_EXIT: Final = 9
INCOMPLETE_EXIT: Final = 10
MISSING_EXIT: Final = 3
FOLDER_REFUSED_EXIT: Final = 11


class ForwardingRefused(OSError):
    """The SSH server will not open TCP streams for us (AllowTcpForwarding no, PermitOpen): a permanent refusal."""


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
        """What WRITE_SCRIPT compares before it writes: content, mode and owner."""
        return f"{self.sha256} {self.mode:o} {self.uid} {self.gid}"


@dataclass
class Transport(ABC):
    """Runs commands and edits files on one host; every method means the same on every implementation."""

    name: str
    become: bool = False
    history: list[Result] = field(default_factory=list)
    #: The run's journal copy to write before the next command (returns its path and bytes when asked, so it is
    #: always the newest); see Journal.update_step(via=...).
    pending_journal: Callable[[], tuple[str, bytes]] | None = None
    #: Whether open_tcp works here: None until tried, False once the server refused port forwarding.
    forwarding: bool | None = None
    #: What probes learned about this host on this connection: its remediate.probes.facts.HostFacts (facts.of makes it).
    facts: Any = None
    #: The run's own folders made on this connection (mkdir: one round trip per folder per run).
    private_dirs: set[str] = field(default_factory=set)
    #: Called with every command's Result as it ends (-v shows them).
    observe: Callable[[Result], None] | None = None

    def _seen(self, result: Result) -> None:
        self.history.append(result)
        if self.observe is not None:
            self.observe(result)

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
        """Run one command; argv items are quoted, never interpreted by a shell. A journal copy left to ship
        (pending_journal) is written first, in the same round trip."""
        started = time.monotonic()
        sudo = self.become if sudo is None else sudo
        shown = display or shlex.join(argv)
        if self.pending_journal is not None and sudo != self.become:  # never let a command pass an unshipped copy
            path, data = self.pending_journal()
            self.pending_journal = None
            self.write(path, data, mode=0o600)
        shipped = self.pending_journal
        if shipped is not None:
            self.pending_journal = None
            path, data = shipped()
            argv = ["sh", "-c", JOURNAL_THEN, "sh", path, str(len(data)), *argv]
            stdin = data + (stdin or b"")
            shown = f"write {path} (sha256 {sha256(data)[:12]}), then {shown}"
        code, out, err = self._exec(list(argv), stdin=stdin, sudo=sudo, timeout=timeout)
        if shipped is not None and code == JOURNAL_FAILED and b"remediate: cannot write the journal" in err:
            reason = _tail(redact.text(err.decode("utf-8", "replace")))
            raise JournalWriteError(f"{self.name}: the run's journal could not be written, so `{shown}` did not "
                                    f"run: {reason}")
        result = Result(
            command=redact.text(shown),
            exit_code=code,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=round(time.monotonic() - started, 3),
        )
        self._seen(result)
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
        """The file's bytes, mode, owner and link target, or None when it does not exist.

        Refuses, before transferring anything, a path that is not a regular file or is larger than MAX_READ."""
        started = time.monotonic()
        code, out, err = self._exec(["sh", "-c", READ_SCRIPT, "sh", path, str(MAX_READ)], stdin=None,
                                    sudo=self.become, timeout=60)
        self._seen(Result(command=redact.text(f"read {path}"), exit_code=code,
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
        result = self.shell(WRITE_SCRIPT, path, "" if mode is None else f"{mode:o}", owner or "", expect or "",
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

    def remove(self, path: str) -> None:
        self.shell(REMOVE_SCRIPT, path, check=True, display=f"rm -f -- {path}")

    def mkdir(self, path: str) -> None:
        """Make path, the folder of a run's own files, in its state folder (PRIVATE_FOLDER_SCRIPT): both private, made
        0700 when absent. A state or run folder found there that another user could swap things in (a link, someone
        else's, writable by others) stops the run here, before anything changes, naming it and why."""
        made = self.private_dirs
        if path in made:
            return  # made on this connection already: one round trip per folder per run
        result = self.shell(PRIVATE_FOLDER_SCRIPT, path, display=f"mkdir -m 700 {path}")
        if result.exit_code == FOLDER_REFUSED_EXIT:
            said = [line for line in result.stderr.splitlines() if line.startswith("remediate: ")]
            reason = said[-1].removeprefix("remediate: ") if said else _tail(result.stderr)
            raise CommandError(f"{self.name}: {reason}",
                               hint="another user could swap what remediate keeps there (before-images, the run's "
                                    "journal) for links and have it write elsewhere. Look at what is in it, then "
                                    "remove it, or make it a folder of the user remediate runs as with mode 0700, "
                                    "and run again")
        if not result.ok:
            raise CommandError(f"{self.name}: cannot make the run's folder {path}: {_tail(result.output)}")
        made.add(path)

    def sha256(self, path: str) -> str | None:
        """The file's sha256, read from stdin so that no character of its name can change the output."""
        result = self.shell(SHA256_SCRIPT, path, display=f"sha256 {path}")
        if result.exit_code == MISSING_EXIT:
            return None
        if not result.ok:
            raise CommandError(f"{self.name}: cannot hash {path}: {_tail(result.output)}")
        return result.stdout.split()[0]


def _tail(text: str, lines: int = 3) -> str:
    kept = text.strip().splitlines()[-lines:]
    return " | ".join(kept) if kept else "(no output)"
