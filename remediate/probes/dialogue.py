"""Talk SMTP or LMTP to a listener as a host sees it: over SSH port forwarding when sshd allows it, else from the
host's own shell (bash's /dev/tcp, or python3), with nothing installed there. Both routes give the same Exchange."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Final, Sequence

import paramiko

from ..smtp import read_reply, say
from ..transport import ForwardingRefused, Transport

TIMEOUT: Final = 5.0
FORWARDED: Final = "over SSH port forwarding"
# Exit codes of the host-side scripts.
CONNECT_FAILED: Final = 10
NO_TOOL: Final = 13
BIND_FAILED: Final = 14
KILLED: Final = 124  # coreutils timeout

# Picks bash (for /dev/tcp), else python3; bounds the whole dialogue with coreutils' timeout when it exists. With a
# source address to connect from, only python3 can bind it.
CHOOSER: Final = r"""bash_script=$1 python_script=$2 limit=$3 REMEDIATE_SOURCE=$4; shift 4; export REMEDIATE_SOURCE
if command -v timeout >/dev/null 2>&1; then bounded() { timeout -k 1 "$limit" "$@"; }; else bounded() { "$@"; }; fi
if [ -z "$REMEDIATE_SOURCE" ] && command -v bash >/dev/null 2>&1; then bounded bash -c "$bash_script" bash "$@"; exit $?; fi
if command -v python3 >/dev/null 2>&1; then bounded python3 -c "$python_script" "$@"; exit $?; fi
if [ -n "$REMEDIATE_SOURCE" ]; then echo "connecting from $REMEDIATE_SOURCE needs python3 on this host" >&2
else echo "neither bash nor python3 is on this host" >&2; fi
exit 13"""

# Arguments: host port seconds command...; prints "tool bash", "connected", then each reply's lines and a
# closing --end-- (or --eof--/--timeout-- when the reply was cut short).
BASH: Final = r"""h=$1 p=$2 t=$3; shift 3
echo "tool bash"
exec 3<>"/dev/tcp/$h/$p" || exit 10
echo connected
reply() {
    local line rc
    while :; do
        IFS= read -r -t "$t" line <&3; rc=$?
        if [ $rc -ne 0 ]; then
            [ -n "$line" ] && printf '%s\n' "${line%$'\r'}"
            if [ $rc -gt 128 ]; then echo "--timeout--"; else echo "--eof--"; fi
            return 1
        fi
        line=${line%$'\r'}
        printf '%s\n' "$line"
        [ "${line:3:1}" = "-" ] || { echo "--end--"; return 0; }
    done
}
reply || exit 11
for c in "$@"; do printf '%s\r\n' "$c" >&3 || exit 12; reply || exit 11; done
exit 0"""

PYTHON: Final = r"""import errno, os, socket, sys
h, p, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
src = os.environ.get("REMEDIATE_SOURCE") or None
print("tool python3", flush=True)
try:
    s = socket.create_connection((h, p), timeout=t, source_address=(src, 0) if src else None)
except ConnectionRefusedError:
    sys.stderr.write("connect: Connection refused\n"); sys.exit(10)
except socket.timeout:
    sys.stderr.write("connect: Connection timed out\n"); sys.exit(10)
except OSError as e:
    if src and e.errno == errno.EADDRNOTAVAIL:
        sys.stderr.write("cannot connect from %s: %s\n" % (src, e.strerror)); sys.exit(14)
    sys.stderr.write("connect: %s\n" % (e.strerror or e)); sys.exit(10)
print("connected", flush=True)
f = s.makefile("rb")
def reply():
    while True:
        try:
            line = f.readline()
        except socket.timeout:
            print("--timeout--"); return False
        if not line:
            print("--eof--"); return False
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        print(text)
        if text[3:4] != "-":
            print("--end--"); return True
if not reply():
    sys.exit(11)
for c in sys.argv[4:]:
    s.sendall(c.encode() + b"\r\n")
    if not reply():
        sys.exit(11)
"""


@dataclass(frozen=True)
class Exchange:
    """What a listener said to us, and how we reached it."""

    target: str  # [host]:port
    route: str  # FORWARDED, or "from the host with bash" ...
    status: str  # answered, refused, timeout, unreachable, broken (connected, then the dialogue failed), error
    replies: tuple[str, ...] = ()  # the greeting first, then one reply per command answered
    detail: str = ""

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
         source: str = "") -> Exchange:
    """Greet host:port as `transport`'s host sees it and send each command; never raises for a network outcome.

    source: an address of that host to connect from (only the host's own python3 can bind one, so no forwarding)."""
    if source:
        return _from_host(transport, host, port, commands, timeout, "", source)
    if transport.forwarding is not False:
        try:
            return _forwarded(transport, host, port, commands, timeout)
        except ForwardingRefused as e:
            transport.cache["forwarding_refused"] = str(e)
    return _from_host(transport, host, port, commands, timeout, transport.cache.get("forwarding_refused", ""))


def _forwarded(transport: Transport, host: str, port: int, commands: Sequence[str], timeout: float) -> Exchange:
    where = target(host, port)
    try:
        stream = transport.open_tcp(host, port, timeout)
    except ForwardingRefused:
        raise
    except ConnectionRefusedError as e:
        return Exchange(where, FORWARDED, "refused", detail=str(e))
    except (TimeoutError, socket.timeout) as e:
        return Exchange(where, FORWARDED, "timeout", detail=str(e))
    except OSError as e:
        return Exchange(where, FORWARDED, "unreachable", detail=str(e))
    replies: list[str] = []
    try:
        stream.settimeout(timeout)
        replies.append(read_reply(stream))
        for command in commands:
            replies.append(say(stream, command))
        return Exchange(where, FORWARDED, "answered", tuple(replies))
    except (OSError, socket.timeout, EOFError, paramiko.SSHException) as e:
        status = "answered" if replies and replies[0] else "broken"
        return Exchange(where, FORWARDED, status, tuple(replies), detail=f"cut short: {e or type(e).__name__}")
    finally:
        stream.close()


def _from_host(transport: Transport, host: str, port: int, commands: Sequence[str], timeout: float,
               note: str, source: str = "") -> Exchange:
    where = target(host, port)
    limit = f"{timeout * (len(commands) + 2):g}"
    result = transport.run(["sh", "-c", CHOOSER, "sh", BASH, PYTHON, limit, source, host, str(port), f"{timeout:g}",
                            *commands],
                           sudo=False, timeout=timeout * (len(commands) + 3) + 10,
                           display=f"probe {where} from {transport.name}")
    lines = result.stdout.splitlines()
    tool = lines[0][5:] if lines and lines[0].startswith("tool ") else "a shell"
    route = (f"from {transport.name} itself with {tool}" + (f", connecting from {source}" if source else "")
             + (f", because {note}" if note else ""))
    err = result.stderr.strip().splitlines()
    reason = err[-1] if err else ""
    if result.exit_code in (NO_TOOL, BIND_FAILED):
        return Exchange(where, route, "error", detail=reason)
    if "connected" not in lines[:2]:
        lowered = reason.lower()
        if "refused" in lowered:
            return Exchange(where, route, "refused", detail=reason)
        if result.exit_code == KILLED or "timed out" in lowered:
            return Exchange(where, route, "timeout", detail=reason or f"nothing within {timeout:g} s")
        return Exchange(where, route, "unreachable", detail=reason or f"exit code {result.exit_code}")
    replies: list[str] = []
    current: list[str] = []
    cut = ""
    for line in lines[2:]:
        if line in ("--end--", "--eof--", "--timeout--"):
            replies.append("\n".join(current) + ("\n" if current else ""))
            current = []
            if line != "--end--":
                cut = "the connection closed" if line == "--eof--" else f"no reply within {timeout:g} s"
                break
        else:
            current.append(line)
    if not replies or not replies[0].strip():
        return Exchange(where, route, "broken", tuple(replies), detail=cut or reason)
    return Exchange(where, route, "answered", tuple(replies), detail=f"cut short: {cut}" if cut else "")


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
