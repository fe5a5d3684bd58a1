"""Postfix's mail queue as a host (or a container on it) shows it: `postqueue -j` parsed, each message's next hop
and why it waits, read from its delay reasons; whether that next hop answers; and which queue ids Postfix's log shows
delivered. The queue is written by other people's mail (senders, recipients and remote replies are theirs): every
field is checked before use, and a queue id is put in a command only once it matches Postfix's own alphabet."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from remediate.errors import StepError
from remediate.probes.dialogue import talk
from remediate.probes.docker import refused
from remediate.probes.queue_names import PROTOCOLS as PROTOCOLS  # re-exported: the probe's vocabulary
from remediate.probes.queue_names import QUEUES as QUEUES
from remediate.records import record
from remediate.transport import Transport

# Short ids are upper-case hex; long ids (enable_long_queue_ids) are base 52 without vowels, 'z' between the time and
# the inode parts (Postfix's mail_queue.h: MQID_SH_*, MQID_LG_*).
LONG: Final = "0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y"
QUEUE_ID: Final = re.compile(rf"^(?:[0-9A-F]{{6,20}}|[{LONG}]{{10,16}}z[{LONG}]{{1,16}})$")
# The host's clock first (ages are measured with it), then the queue as JSON lines (Postfix 3.1 or later).
READ: Final = "date +%s && exec postqueue -j"
CONNECT: Final = re.compile(r"connect to (?P<name>[^\s\[\]]+)\[(?P<address>[^\]\s]+)\]:(?P<port>\d+): (?P<why>.+)")
HOST_SAID: Final = re.compile(r"host (?P<name>[^\s\[\]]+)\[(?P<address>[^\]\s]+)\](?::(?P<port>\d+))? said: (?P<why>.+)")
WITH: Final = re.compile(r"(?:lost connection|conversation) with (?P<name>[^\s\[\]]+)\[(?P<address>[^\]\s]+)\]"
                         r"(?::(?P<port>\d+))? (?P<why>.+)")
SUSPENDED: Final = "delivery temporarily suspended: "
# Postfix's own log line, from its start: the time (maillog_file's "Dec 06 09:20:14", syslog's "Dec  6 09:20:14", or
# RFC 3339), the host, the program (a delivery agent, or qmgr) and the queue id; the rest is read per recipient.
LOGGED: Final = re.compile(r"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?"
                           r"(?:Z|[+-]\d\d:?\d\d)?) [\w.-]+ postfix(?:-[\w.-]+)?/(?P<program>lmtp|smtp|local|virtual|pipe|qmgr)"
                           r"\[\d+\]: (?P<id>[0-9A-Za-z]+): (?P<rest>.*)")
# What a delivery agent logs after "to=<RECIPIENT>, " (smtp.c, lmtp.c: log_adhoc): the status is the one right after
# dsn=, and what the next hop said is the rest, in parentheses.
AFTER_TO: Final = (r"(?:, orig_to=<[^<>]*>)?, relay=(?P<relay>[^\s,]+), (?:conn_use=\d+, )?delay=[\d.]+, "
                   r"delays=[\d./]+, dsn=\d\.\d{1,3}\.\d{1,3}, status=(?P<status>[a-z]+) \((?P<said>.*)\)")
# qmgr's line when a message passed maximal_queue_lifetime: every recipient not yet delivered is returned.
EXPIRED: Final = re.compile(r"from=<.*>, status=expired, returned to sender")
RELAY: Final = re.compile(r"(?P<name>[^\s\[\]]+)\[(?P<address>[^\]\s]+)\]:(?P<port>\d+)")
LATEST: Final = 253402300799  # 9999-12-31T23:59:59Z: the last arrival_time a clock shows
REASON: Final = 60  # characters of a delay reason shown
BUCKETS: Final = ((300, "<5m"), (3600, "5m-1h"), (86400, "1h-1d"), (None, ">1d"))


class Unreadable(StepError):
    """postqueue could not be run, or said something that is not its JSON lines: the queue is unknown."""


@record(frozen=True)
class Hop:
    """Where a deferred recipient waits to go, as its delay reason names it, and the reason in short."""

    label: str  # 127.0.0.28:2525, mx.example.com[192.0.2.5]:25, or "other" when the reason names no host
    address: str
    port: int | None
    why: str
    name: str = ""  # as Postfix names it (the name it looked up, or the address again)
    replied: bool = False  # the hop answered and deferred it itself ("host X said: 452 ..."): a flush will not help

    def is_(self, host: str, port: int | None) -> bool:
        """Whether host[:port] (a name or an address, as an operator gives it) is this hop."""
        if not host or not self.address or (self.port is not None and port is not None and self.port != port):
            return False
        return same_host(host, self.address) or bool(self.name) and same_host(host, self.name)


def same_host(given: str, named: str) -> bool:
    """Names compared without case (and a root dot); addresses as addresses (2001:DB8::5 is 2001:db8::0:5)."""
    try:
        return ipaddress.ip_address(given.strip("[]")) == ipaddress.ip_address(named.strip("[]"))
    except ValueError:
        return given.rstrip(".").casefold() == named.rstrip(".").casefold()


@record(frozen=True)
class Message:
    """One queued message as postqueue -j shows it (recipients: those not yet delivered, each with its delay reason)."""

    queue_id: str
    queue: str
    arrival: int
    recipients: tuple[tuple[str, str], ...]  # (address, delay reason)

    def hops(self) -> list[Hop]:
        return list({h.label: h for h in (hop_of(reason) for _, reason in self.recipients)}.values())

    def waiting(self, host: str, port: int | None) -> list[tuple[str, Hop]]:
        """The recipients that wait for host[:port], each with its hop as its delay reason names it."""
        return [(address, hop) for address, hop in ((a, hop_of(r)) for a, r in self.recipients) if hop.is_(host, port)]

    def flushable(self, host: str, port: int | None) -> tuple[str, ...]:
        """The recipients a flush delivers once host[:port] answers: those deferred because it could not be reached
        (not those it answered and deferred itself)."""
        return tuple(address for address, hop in self.waiting(host, port) if not hop.replied)

    def reason(self) -> str:
        return next((clean(r) for _, r in self.recipients if r), "(no delay reason)")


@record(frozen=True)
class Queue:
    """The messages of a queue read at `now` (the host's clock, seconds since the epoch), and where it was read."""

    messages: tuple[Message, ...]
    now: int
    where: str

    def held(self, queue: str, address: str = "", port: int | None = None) -> list[Message]:
        """The messages in `queue` (all of it, or those waiting for address[:port] when an address is given)."""
        return [m for m in self.messages if m.queue == queue and (not address or m.waiting(address, port))]

    def flushable(self, address: str, port: int | None) -> dict[str, tuple[str, ...]]:
        """For each deferred message with a recipient a flush delivers once address:port answers: those recipients."""
        return {m.queue_id: found for m in self.held("deferred", address, port)
                if (found := m.flushable(address, port))}


def hop_label(address: str, port: int | None) -> str:
    """127.0.0.28:2525, [2001:db8::5]:24, or the address alone."""
    if port is None:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def in_container(container: str, argv: Sequence[str]) -> list[str]:
    """argv in the container (docker exec), or on the host itself when container is empty."""
    return ["docker", "exec", "--", container, *argv] if container else list(argv)


def queue_id(value: Any, where: str) -> str:
    """value, when it is a Postfix queue id (short or long form); else Unreadable citing where."""
    if not isinstance(value, str) or not QUEUE_ID.fullmatch(value):  # fullmatch: $ lets a newline through
        raise Unreadable(f"{where}: {clean(repr(value))} is not a Postfix queue id",
                         hint="the queue holds something remediate does not understand: read it with postqueue -p")
    return value


def clean(text: str, limit: int = REASON) -> str:
    """text for one line of a report: control characters (a remote reply's escapes) made visible, cut at limit."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text.strip())
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def read(transport: Transport, container: str) -> Queue:
    """The whole queue, with the host's clock; Unreadable when postqueue cannot say."""
    where = f"{container} on {transport.name}" if container else transport.name
    result = transport.run(in_container(container, ["sh", "-c", READ]), display=f"postqueue -j in {where}")
    if not result.ok:
        raise Unreadable(f"postqueue -j in {where} exited {result.exit_code}: "
                         f"{clean(result.stderr or result.stdout, 300) or '(no output)'}",
                         hint="postqueue -j needs Postfix 3.1 or later; is the container running?")
    clock, _, rest = result.stdout.partition("\n")
    if not clock.strip().isdigit():
        raise Unreadable(f"{where}: `date +%s` said {clean(clock)!r}, not a time")
    return Queue(tuple(parse(rest, f"postqueue -j in {where}", first=2)), int(clock), where)


def parse(text: str, where: str = "postqueue -j", first: int = 1) -> list[Message]:
    """postqueue -j's JSON lines; Unreadable naming the line (first: the number of the text's first line)."""
    messages = []
    for number, line in enumerate(text.splitlines(), first):
        if line.strip():
            messages.append(_message(line, f"{where}, line {number}"))
    return messages


def _message(line: str, at: str) -> Message:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the parser goes
        raise Unreadable(f"{at}: not JSON ({clean(str(e), 120)}): {clean(line, 80)}") from None
    if not isinstance(data, dict):
        raise Unreadable(f"{at}: a JSON {type(data).__name__}, not a message")
    qid = queue_id(data.get("queue_id"), at)
    queue, arrival, recipients = data.get("queue_name"), data.get("arrival_time"), data.get("recipients")
    if queue not in QUEUES:
        raise Unreadable(f"{at}: queue {qid}: queue_name {clean(repr(queue))} is none of {', '.join(QUEUES)}")
    if not isinstance(arrival, int) or isinstance(arrival, bool) or not isinstance(recipients, list):
        raise Unreadable(f"{at}: queue {qid}: arrival_time must be a number and recipients a list")
    if not 0 <= arrival <= LATEST:
        raise Unreadable(f"{at}: queue {qid}: arrival_time {clean(str(arrival), 40)} is no time a clock shows")
    found = []
    for item in recipients:
        if not isinstance(item, dict) or not isinstance(item.get("address"), str) \
                or not isinstance(item.get("delay_reason", ""), str):
            raise Unreadable(f"{at}: queue {qid}: a recipient must have an address and a delay_reason text")
        found.append((utf8(item["address"]), utf8(item.get("delay_reason", ""))))
    return Message(qid, queue, arrival, tuple(found))


def utf8(text: str) -> str:
    """text as UTF-8 can carry it: a lone surrogate (JSON's "\\ud800") written out as \\ud800, not kept to crash later."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def hop_of(reason: str) -> Hop:
    """The next hop a delay reason names ("connect to 127.0.0.28[127.0.0.28]:2525: Connection refused")."""
    text = reason.strip().removeprefix(SUSPENDED)
    for pattern in (CONNECT, HOST_SAID, WITH):
        found = pattern.match(text)
        if found:
            port = int(found["port"]) if found["port"] else None
            name, address = found["name"], found["address"]
            shown = address if name == address else f"{name}[{address}]"
            if port is not None:
                shown = f"[{shown}]:{port}" if ":" in shown and name == address else f"{shown}:{port}"
            why = found["why"].split(" (in reply to ")[0]
            return Hop(clean(shown, 80), address, port, clean(why), name, replied=pattern is HOST_SAID)
    return Hop("other", "", None, clean(text) or "(no delay reason)")


def age(seconds: int) -> str:
    """4m12s, 2h03m, 3d04h: an age as people read it at 3 a.m."""
    seconds = max(0, seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def describe(messages: Sequence[Message], now: int, queue: str = "deferred", ages: bool = True) -> str:
    """"3 deferred (oldest 4m12s): 127.0.0.28:2525 3 (Connection refused); ages <5m 3". ages False: the oldest's
    arrival instead ("oldest queued 2026-12-06 08:55:48Z"), for a plan: it is read later (a saved plan, an approval
    page), when an age would be wrong, and it then reads the same until the queue changes."""
    if not messages:
        return f"0 {queue}"
    first = min(m.arrival for m in messages)
    oldest = age(now - first) if ages else f"queued {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(first))}"
    hops: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for message in messages:
        for hop in message.hops():
            hops[hop.label] += 1
            reasons.setdefault(hop.label, Counter())[hop.why] += 1
    by_hop = ", ".join(f"{label} {count} ({reasons[label].most_common(1)[0][0]})" for label, count in hops.most_common(5))
    if len(hops) > 5:
        by_hop += f", and {len(hops) - 5} other hop(s)"
    shown = f"{len(messages)} {queue} (oldest {oldest}): {by_hop}"
    return f"{shown}; ages {buckets(now - m.arrival for m in messages)}" if ages else shown


def buckets(ages: Iterable[int]) -> str:
    """'<5m 3, 1h-1d 1': how many messages waited how long."""
    counts: Counter[str] = Counter()
    for seconds in ages:
        counts[next(label for limit, label in BUCKETS if limit is None or seconds < limit)] += 1
    return ", ".join(f"{label} {counts[label]}" for _, label in BUCKETS if counts[label])


@record(frozen=True)
class Answer:
    """Whether a next hop greets and accepts LHLO (lmtp) or EHLO (smtp), and what it said or why not."""

    ok: bool
    said: str


def answers(transport: Transport, address: str, port: int, protocol: str) -> Answer:
    """Greet address:port as the host sees it and say LHLO (lmtp) or EHLO (smtp); never raises for a network outcome."""
    hello = "LHLO" if protocol == "lmtp" else "EHLO"
    exchange = talk(transport, address, port, (f"{hello} remediate.probe", "QUIT"))
    reply = exchange.reply(0).splitlines()[:1]
    if exchange.status == "answered" and exchange.greeting.startswith("220") and reply and reply[0].startswith("250"):
        return Answer(True, f"answers {hello}: greets {clean(exchange.greeting)!r}, {hello} {clean(reply[0])!r} "
                            f"({exchange.route})")
    if exchange.status == "answered":
        return Answer(False, f"greets {clean(exchange.greeting)!r} but answers {hello} with "
                             f"{clean(reply[0]) if reply else 'nothing'!r} ({exchange.route})")
    return Answer(False, clean(exchange.describe(), 300))


def flush_all() -> list[str]:
    return ["postqueue", "-f"]


def flush_one(qid: str) -> list[str]:
    """postqueue -i for one queue id, checked again here: nothing else is ever put in the command."""
    return ["postqueue", "-i", queue_id(qid, "flush")]


@record(frozen=True)
class Delivery:
    """One status line of Postfix's log for a recipient of a queue id (recipient "" for qmgr's line about the whole
    message: expired), what the next hop said (raw: shortened only for display), and whether it came from the hop."""

    queue_id: str
    recipient: str
    status: str
    said: str
    from_hop: bool = False

    @property
    def saved(self) -> bool:
        return self.status == "sent" and self.from_hop and self.said.rstrip().endswith("Saved")

    @property
    def failed(self) -> bool:
        """Postfix gave up on it: bounced (a 5xx reply, or an error it will not retry), or expired in the queue."""
        return self.status in ("bounced", "expired")

    def shown(self) -> str:
        to = f" to <{clean(self.recipient, 80)}>" if self.recipient else ""
        return f"{self.queue_id}{to}: {self.status} ({clean(self.said, 160)})"


def deliveries(lines: Iterable[str], recipients: Mapping[str, Sequence[str]], address: str,
               port: int | None) -> list[Delivery]:
    """The status lines, in log order, that Postfix itself logged for the recipients of each queue id (recipients:
    queue id -> the addresses recorded from postqueue -j). A line is read from its start, on Postfix's format, for
    exactly those ids and addresses, so that text a sender or a remote server wrote (a Message-ID, a reply) cannot
    stand for one; a sent line counts as from the hop only when its relay= is address:port."""
    tails = {qid: [(rcpt, re.compile("to=<" + re.escape(rcpt) + ">" + AFTER_TO)) for rcpt in rcpts]
             for qid, rcpts in recipients.items()}
    found = []
    for line in lines:
        head = LOGGED.fullmatch(line.rstrip())
        if not head or head["id"] not in tails:
            continue
        if head["program"] == "qmgr":
            if EXPIRED.fullmatch(head["rest"]):
                found.append(Delivery(head["id"], "", "expired", "returned to sender"))
            continue
        for rcpt, tail in tails[head["id"]]:
            said = tail.fullmatch(head["rest"])
            if said:
                relay = RELAY.fullmatch(said["relay"])
                hop = relay and Hop("", relay["address"], int(relay["port"]), "", relay["name"])
                found.append(Delivery(head["id"], rcpt, said["status"], said["said"], bool(hop and hop.is_(address, port))))
                break
    return found


def log_since(transport: Transport, container: str, since: int) -> list[str]:
    """The container's log since `since` (seconds since the epoch, the host's clock), stdout and stderr both."""
    result = transport.run(["docker", "logs", "--since", str(since), "--", container])
    if not result.ok:
        refused(transport, f"docker logs {container}", result.output)
        raise StepError(f"{transport.name}: docker logs --since {since} {container} failed: {clean(result.output, 300)}")
    return result.output.splitlines()
