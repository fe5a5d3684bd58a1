"""Talk SMTP or LMTP to a listener as a host sees it: over SSH port forwarding when sshd allows it, else from the
host's own shell (bash's /dev/tcp, or python3), with nothing installed there. Both routes give the same Exchange, and
both hold the same bounds: bytes per line and per reply, and one deadline for the whole dialogue."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Final

from remediate.mail.smtp import MAX_LINE, MAX_LINES, MAX_REPLY, Conversation, ReplyCut
from remediate.probes.facts import of as facts_of
from remediate.records import record
from remediate.transport import ForwardingRefused, Transport

#: Seconds for each reply (from the host's shell: for each line) and, times the replies expected plus one for the
#: connection, for the whole dialogue.
TIMEOUT: Final = 5.0
FORWARDED: Final = "over SSH port forwarding"
# Exit codes of the host-side scripts.
CONNECT_FAILED: Final = 10
NO_TOOL: Final = 13
BIND_FAILED: Final = 14
KILLED: Final = 124  # coreutils timeout

# Picks bash (for /dev/tcp), else python3; with coreutils' timeout, also ends the dialogue a little after its own
# deadline, should it not end itself. With a source address to connect from, only python3 can bind it.
CHOOSER: Final = r"""bash_script=$1 python_script=$2 limit=$3 REMEDIATE_SOURCE=$4; shift 4; export REMEDIATE_SOURCE
if command -v timeout >/dev/null 2>&1; then bounded() { timeout -k 1 "$limit" "$@"; }; else bounded() { "$@"; }; fi
if [ -z "$REMEDIATE_SOURCE" ] && command -v bash >/dev/null 2>&1; then bounded bash -c "$bash_script" bash "$@"; exit $?; fi
if command -v python3 >/dev/null 2>&1; then bounded python3 -c "$python_script" "$@"; exit $?; fi
if [ -n "$REMEDIATE_SOURCE" ]; then echo "connecting from $REMEDIATE_SOURCE needs python3 on this host" >&2
else echo "neither bash nor python3 is on this host" >&2; fi
exit 13"""

# Arguments of both: host port seconds-per-line whole-seconds max-line max-lines max-reply command...; they print
# "tool bash" (or python3), "connected", then each reply's lines and a closing --end--, or what cut it short: --eof--,
# --timeout-- (a line, or for python3 a reply, not within its seconds), --deadline-- (the whole dialogue's seconds
# were up), --long-line--, --too-long-- (too many lines or bytes in one reply). bash reads bytes (LC_ALL=C), a line
# at most max-line + 2 of them (its CR, and one over), and measures the deadline in whole seconds ($SECONDS).
BASH: Final = r"""h=$1 p=$2 t=$3 limit=$4 max_line=$5 max_lines=$6 max_reply=$7; shift 7
LC_ALL=C; export LC_ALL
echo "tool bash"
exec 3<>"/dev/tcp/$h/$p" || exit 10
echo connected
whole=${t%.*}
reply() {
    local line rc wait end lines=0 bytes=0
    while :; do
        wait=$((limit - SECONDS)) end=--deadline--
        [ "$wait" -gt 0 ] || { echo "--deadline--"; return 1; }
        [ "$wait" -gt "${whole:-0}" ] && { wait=$t end=--timeout--; }
        IFS= read -r -t "$wait" -n "$((max_line + 2))" line <&3 2>/dev/null; rc=$?
        if [ $rc -ne 0 ]; then
            [ -n "$line" ] && printf '%s\n' "${line%$'\r'}"
            if [ $rc -gt 128 ]; then echo "$end"; else echo "--eof--"; fi
            return 1
        fi
        line=${line%$'\r'}
        [ "${#line}" -le "$max_line" ] || { printf '%s\n' "${line:0:200}"; echo "--long-line--"; return 1; }
        printf '%s\n' "$line"
        [ "${line:3:1}" = "-" ] || { echo "--end--"; return 0; }
        lines=$((lines + 1)) bytes=$((bytes + ${#line} + 2))
        [ "$lines" -lt "$max_lines" ] && [ "$bytes" -le "$max_reply" ] || { echo "--too-long--"; return 1; }
    done
}
reply || exit 11
for c in "$@"; do printf '%s\r\n' "$c" >&3 || exit 12; reply || exit 11; done
exit 0"""

PYTHON: Final = r"""import errno, os, socket, sys, time
h, p, t, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
max_line, max_lines, max_reply = (int(a) for a in sys.argv[5:8])
end = time.monotonic() + limit
src = os.environ.get("REMEDIATE_SOURCE") or None
print("tool python3", flush=True)
try:
    s = socket.create_connection((h, p), timeout=min(t, limit), source_address=(src, 0) if src else None)
except ConnectionRefusedError:
    sys.stderr.write("connect: Connection refused\n"); sys.exit(10)
except socket.timeout:
    sys.stderr.write("connect: Connection timed out\n"); sys.exit(10)
except OSError as e:
    if src and e.errno == errno.EADDRNOTAVAIL:
        sys.stderr.write("cannot connect from %s: %s\n" % (src, e.strerror)); sys.exit(14)
    sys.stderr.write("connect: %s\n" % (e.strerror or e)); sys.exit(10)
print("connected", flush=True)
buf = b""
def show(data):
    print(data.decode("utf-8", "replace").rstrip("\r"))
def reply():
    global buf
    until = min(time.monotonic() + t, end)
    lines = size = 0
    while True:
        at = buf.find(b"\n", 0, max_line + 2)
        if at < 0:
            if len(buf) > max_line + 1:
                show(buf[:200]); print("--long-line--"); return False
            left = until - time.monotonic()
            chunk = None
            if left > 0:
                s.settimeout(left)
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    chunk = b""
            if not chunk:
                if buf:
                    show(buf)
                print("--eof--" if chunk is not None else "--deadline--" if until >= end else "--timeout--")
                return False
            buf += chunk
            continue
        line, buf = buf[:at].rstrip(b"\r"), buf[at + 1:]
        if len(line) > max_line:
            show(line[:200]); print("--long-line--"); return False
        show(line)
        if line[3:4] != b"-":
            print("--end--"); return True
        lines, size = lines + 1, size + at + 1
        if lines >= max_lines or size > max_reply:
            print("--too-long--"); return False
if not reply():
    sys.exit(11)
for c in sys.argv[8:]:
    s.sendall(c.encode() + b"\r\n")
    if not reply():
        sys.exit(11)
"""


@record(frozen=True)
class Exchange:
    """What a listener said to us, and how we reached it."""

    target: str  # [host]:port
    route: str  # FORWARDED, or "from the host with bash" ...
    status: str  # answered, refused, timeout, unreachable, broken (connected, then the dialogue failed), error
    replies: tuple[str, ...] = ()  # the greeting first, then one reply per command answered
    detail: str = ""  # why the dialogue was cut short, with what came of the reply it cut
    elapsed: float = 0.0  # seconds the probe took, connection included

    @property
    def greeting(self) -> str:
        return self.replies[0].splitlines()[0] if self.replies and self.replies[0] else ""

    def reply(self, index: int) -> str:
        """The reply to the index-th command (0-based), or '' when it never came."""
        return self.replies[index + 1] if len(self.replies) > index + 1 else ""

    def describe(self) -> str:
        """One line for an operator: what answered on target, and through which route."""
        said = {"answered": f"greets {self.greeting!r}", "refused": "connection refused",
                "timeout": "no answer (timed out)", "unreachable": "unreachable",
                "broken": "accepted the connection, then the dialogue failed", "error": "could not be probed"}[self.status]
        return f"{self.target} {said} ({self.route}{'; ' + self.detail if self.detail else ''})"


def target(host: str, port: int) -> str:
    return f"[{host}]:{port}"


def talk(transport: Transport, host: str, port: int, commands: Sequence[str] = (), timeout: float = TIMEOUT,
         source: str = "", deadline: float | None = None) -> Exchange:
    """Greet host:port as `transport`'s host sees it and send each command; never raises for a network outcome.

    Each reply within timeout seconds, and the whole dialogue within deadline seconds (by default a timeout for the
    connection and for each reply expected); past either, or past the bounds of smtp.py, it stops and says so.
    source: an address of that host to connect from (only the host's own python3 can bind one, so no forwarding)."""
    total = deadline if deadline is not None else timeout * (len(commands) + 2)
    if source:
        return _from_host(transport, host, port, commands, timeout, total, "", source)
    if transport.forwarding is not False:
        try:
            return _forwarded(transport, host, port, commands, timeout, total)
        except ForwardingRefused as e:
            facts_of(transport).forwarding_refused = str(e)
    return _from_host(transport, host, port, commands, timeout, total, facts_of(transport).forwarding_refused)


def _which(commands: Sequence[str], answered: int) -> str:
    """The reply read after `answered` replies: the greeting, or the reply to a command."""
    return "the greeting" if answered == 0 else f"the reply to {commands[answered - 1]}"


def _forwarded(transport: Transport, host: str, port: int, commands: Sequence[str], timeout: float,
               total: float) -> Exchange:
    where = target(host, port)
    started = time.monotonic()
    try:
        stream = transport.open_tcp(host, port, min(timeout, total))
    except ForwardingRefused:
        raise
    except ConnectionRefusedError as e:
        return Exchange(where, FORWARDED, "refused", detail=str(e))
    except TimeoutError as e:  # socket.timeout too
        return Exchange(where, FORWARDED, "timeout", detail=str(e))
    except OSError as e:
        return Exchange(where, FORWARDED, "unreachable", detail=str(e))
    replies: list[str] = []
    dialogue = Conversation(stream, reply_timeout=timeout, total=total, started=started)
    try:
        replies.append(dialogue.reply())
        for command in commands:
            replies.append(dialogue.say(command))
        return Exchange(where, FORWARDED, "answered", tuple(replies), elapsed=dialogue.elapsed)
    except ReplyCut as e:
        status = "answered" if replies and replies[0] else "broken"
        return Exchange(where, FORWARDED, status, tuple(replies),
                        detail=f"cut short: {_which(commands, len(replies))}: {e.describe()}", elapsed=dialogue.elapsed)
    except _broken() as e:
        status = "answered" if replies and replies[0] else "broken"
        return Exchange(where, FORWARDED, status, tuple(replies), detail=f"cut short: {e or type(e).__name__}",
                        elapsed=dialogue.elapsed)
    finally:
        stream.close()


def _broken() -> tuple[type[BaseException], ...]:
    """What a forwarded stream raises when the dialogue breaks: OSError, EOFError, and paramiko's SSHException (only an
    SSH transport's channel raises that one, and that transport has imported paramiko: a probe never imports it)."""
    paramiko = sys.modules.get("paramiko")
    return (OSError, EOFError) if paramiko is None else (OSError, EOFError, paramiko.SSHException)


def _from_host(transport: Transport, host: str, port: int, commands: Sequence[str], timeout: float, total: float,
               note: str, source: str = "") -> Exchange:
    where = target(host, port)
    limit = max(1, math.ceil(total))  # bash counts whole seconds
    result = transport.run(["sh", "-c", CHOOSER, "sh", BASH, PYTHON, str(limit + 2), source, host, str(port),
                            f"{timeout:g}", str(limit), str(MAX_LINE), str(MAX_LINES), str(MAX_REPLY), *commands],
                           sudo=False, timeout=limit + 10, display=f"probe {where} from {transport.name}")
    elapsed = result.duration
    lines = result.stdout.splitlines()
    tool = lines[0][5:] if lines and lines[0].startswith("tool ") else "a shell"
    route = (f"from {transport.name} itself with {tool}" + (f", connecting from {source}" if source else "")
             + (f", because {note}" if note else ""))
    err = result.stderr.strip().splitlines()
    reason = err[-1] if err else ""
    if result.exit_code in (NO_TOOL, BIND_FAILED):
        return Exchange(where, route, "error", detail=reason, elapsed=elapsed)
    if "connected" not in lines[:2]:
        lowered = reason.lower()
        if "refused" in lowered:
            return Exchange(where, route, "refused", detail=reason, elapsed=elapsed)
        if result.exit_code == KILLED or "timed out" in lowered:
            return Exchange(where, route, "timeout", detail=reason or f"nothing within {timeout:g} s", elapsed=elapsed)
        return Exchange(where, route, "unreachable", detail=reason or f"exit code {result.exit_code}", elapsed=elapsed)
    cuts = {"--timeout--": f"no reply within {timeout:g} s", "--deadline--": f"the dialogue's {limit} s were up",
            "--long-line--": f"a line longer than {MAX_LINE} bytes",
            "--too-long--": f"more than {MAX_LINES} lines or {MAX_REPLY:,} bytes in one reply"}
    replies: list[str] = []
    current: list[str] = []
    cut = ended = ""
    for line in lines[2:]:
        if line in ("--end--", "--eof--"):  # at the end of the stream, what came is the reply, as over forwarding
            replies.append("\n".join(current) + ("\n" if current else ""))
            current = []
            if line == "--eof--":
                cut = "cut short: the connection closed"
                break
        elif line in cuts:
            ended = line
            break
        else:
            current.append(line)
    else:
        if result.exit_code == KILLED:  # ended from outside (coreutils' timeout) before it could say why
            ended = "--deadline--"
    if ended:
        received = ReplyCut(cuts[ended], "\n".join(current), elapsed)
        cut = f"cut short: {_which(commands, len(replies))}: {received.describe()}"
    if not replies or not replies[0].strip():
        return Exchange(where, route, "broken", tuple(replies), detail=cut or reason, elapsed=elapsed)
    return Exchange(where, route, "answered", tuple(replies), detail=cut, elapsed=elapsed)


def protocol(transport: Transport, host: str, port: int) -> tuple[str, Exchange]:
    """Which protocol listens: greet, try EHLO then LHLO. Verdict: lmtp, smtp, refused, filtered, unreachable, other."""
    exchange = talk(transport, host, port, ("EHLO remediate.probe", "LHLO remediate.probe", "QUIT"))
    if exchange.status != "answered":
        return {"refused": "refused", "timeout": "filtered", "unreachable": "unreachable"}.get(exchange.status, "other"), exchange
    if exchange.reply(0).startswith("250"):
        return "smtp", exchange
    if exchange.reply(1).startswith("250"):
        return "lmtp", exchange
    return "other", exchange
