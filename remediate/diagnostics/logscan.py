"""Counting failure signatures in a Postfix log: the patterns, what one costs, and one pass over the lines. No
check or host here (checks/logs.py holds the log-signature check that uses it)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import field
from typing import Any, Final

from remediate.records import record

TIME: Final = r"(?P<time>\w{3} [ \d]\d \d\d:\d\d:\d\d)"
#: A delivery attempt's status line: queue id, recipient, status.
DELIVERY: Final = re.compile(rf"^{TIME} \S+ postfix/\S+: (?P<qid>[0-9A-F]+): to=<(?P<rcpt>[^>]*)>.*status=(?P<status>\w+)")
#: smtpd refusing a command: NOQUEUE: reject: RCPT from name[address]: ...; from=<...> to=<...>
REJECT: Final = re.compile(rf"^{TIME} \S+ postfix/\S+: (?P<qid>NOQUEUE|[0-9A-F]+): reject: \w+ from [^\[\s]*"
                           r"\[(?P<client>[^\]]+)\][^;]*;(?:.*?\bto=<(?P<rcpt>[^>]*)>)?")
STAMP: Final = re.compile(rf"^{TIME}")
#: A non-delivery report (from=<>): it bounces too when relaying is broken, a consequence rather than impact.
NDR: Final = re.compile(r"postfix/\S+: ([0-9A-F]+): from=<>,")
LINES: Final = ("delivery", "reject", "any")
DEFERRED_OTHER: Final = ("deferred-other", "deferred for another reason")


@record(frozen=True)
class Pattern:
    """One signature to look for: its name, regex, meaning, and which lines it applies to."""

    name: str
    regex: re.Pattern[str]
    meaning: str
    lines: str = "delivery"
    #: How the evidence names it (e.g. the reply text itself); default: "name (meaning)".
    label: str = ""


@record
class Signature:
    """How often one failure pattern appears in the log, and what it cost."""

    name: str
    meaning: str
    count: int = 0
    first: str | None = None
    last: str | None = None
    bounced: set[str] = field(default_factory=set)
    domains: Counter[str] = field(default_factory=Counter)
    clients: Counter[str] = field(default_factory=Counter)

    def event(self) -> dict[str, Any]:
        return {"signature": self.name, "meaning": self.meaning, "count": self.count, "first_seen": self.first,
                "last_seen": self.last, "messages_bounced": len(self.bounced), "recipient_domains": dict(self.domains),
                "clients": dict(self.clients)}


def counted(counts: Any) -> str:
    """{'a.com': 2, 'b.com': 1} as 'a.com (2), b.com (1)', for people."""
    return ", ".join(f"{key} ({n})" for key, n in dict(counts).items()) or "none"


def scan(lines: list[str], patterns: list[Pattern], *, other_deferred: bool = False) -> list[Signature]:
    """Count each pattern among the log's lines (a line counts once, for the first pattern it matches). Delivered
    mail and non-delivery reports are never counted; other_deferred counts deferrals no pattern explains."""
    found = {p.name: Signature(p.name, p.meaning) for p in patterns}
    deferred = Signature(*DEFERRED_OTHER)
    reports = {m.group(1) for line in lines if (m := NDR.search(line))}
    for line in lines:
        match = DELIVERY.search(line)
        kind = "delivery" if match else None
        if match is None and (match := REJECT.search(line)):
            kind = "reject"
        if kind == "delivery" and match and (match["status"] == "sent" or match["qid"] in reports):
            continue
        pattern = next((p for p in patterns if p.lines in (kind, "any") and p.regex.search(line)), None)
        if pattern is not None:
            sig = found[pattern.name]
        elif other_deferred and kind == "delivery" and match and match["status"] == "deferred":
            sig = deferred
        else:
            continue
        stamp = match["time"] if match else (m.group("time") if (m := STAMP.search(line)) else None)
        sig.count += 1
        sig.first = sig.first or stamp
        sig.last = stamp or sig.last
        if match is not None:
            if kind == "delivery" and match["status"] == "bounced":
                sig.bounced.add(match["qid"])
            if match["rcpt"] is not None:
                sig.domains[match["rcpt"].rpartition("@")[2] or "(none)"] += 1
            if kind == "reject":
                sig.clients[match["client"]] += 1
    return [s for s in (*found.values(), deferred) if s.count]
