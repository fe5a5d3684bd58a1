"""log-signature: count failure patterns in a Postfix container's log, with their impact (messages bounced,
recipient domains, client addresses), since the container started."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from .. import validate
from ..errors import InputError
from ..probes.containers import container_name
from ..steps import Param
from . import CheckType, Facts, Verdict, register

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


@dataclass(frozen=True)
class Pattern:
    """One signature to look for: its name, regex, meaning, and which lines it applies to."""

    name: str
    regex: re.Pattern[str]
    meaning: str
    lines: str = "delivery"
    #: How the evidence names it (e.g. the reply text itself); default: "name (meaning)".
    label: str = ""


@dataclass
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


@register
class LogSignature(CheckType):
    """Failure patterns in a container's log since it started, each counted with its impact."""

    name = "log-signature"
    params = {
        "container": Param(str, required=True),
        "signatures": Param(list, required=True, help="[{name, pattern (a regex), meaning, lines: delivery, reject "
                                                      "or any}]"),
        "other_deferred": Param(bool, default=False, help="also count deferrals no signature explains"),
        "quiet": Param(str, default="", help="the evidence when nothing is found"),
    }

    def validate(self) -> None:
        container_name(self.p["container"], f"{self.at}: container")
        self.patterns = []
        for index, item in enumerate(self.p["signatures"]):
            if not isinstance(item, dict) or not {"name", "pattern"} <= set(item) or not set(item) <= {
                    "name", "pattern", "meaning", "lines", "label"}:
                raise InputError(f"{self.at}: signatures[{index}] must be a mapping with name:, pattern: and "
                                 "optionally meaning:, lines: and label:")
            if item.get("lines", "delivery") not in LINES:
                raise InputError(f"{self.at}: signatures[{index}]: lines must be one of {', '.join(LINES)}")
            regex = validate.pattern(item["pattern"], f"{self.at}: signatures[{index}]")
            self.patterns.append(Pattern(str(item["name"]), regex, str(item.get("meaning") or item["name"]),
                                         item.get("lines", "delivery"), str(item.get("label") or "")))
        if not self.patterns:
            raise InputError(f"{self.at}: signatures must name at least one pattern")

    def prepare(self, facts: Facts) -> None:
        facts.signatures.setdefault(self.p["container"], []).extend(self.patterns)
        if self.p["other_deferred"]:
            facts.other_deferred.add(self.p["container"])

    def names(self) -> list[str]:
        return [p.name for p in self.patterns] + ([DEFERRED_OTHER[0]] if self.p["other_deferred"] else [])

    def run(self, facts: Facts) -> Verdict:
        if not facts.running(self.p["container"]):
            return Verdict(None, "log not readable: container not running")
        scanned = facts.scanned(self.p["container"])
        found = [scanned[n] for n in self.names() if n in scanned]
        if not found:
            return Verdict(True, self.p["quiet"] or f"no {' or '.join(self.names())} since the container started")
        if len(found) == 1:
            s = found[0]
            label = next((p.label for p in self.patterns if p.name == s.name and p.label), f"{s.name} ({s.meaning})")
            parts = [f"{s.count} x {label} from {s.first} to {s.last}"]
            if s.bounced or not s.clients:
                parts.append(f"{len(s.bounced)} message(s) bounced")
            if s.clients:
                parts.append(f"clients {counted(s.clients)}")
            parts.append(f"domains {counted(s.domains)}")
            return Verdict(False, "; ".join(parts))
        return Verdict(False, "; ".join(f"{s.count} x {s.name} ({s.meaning}) from {s.first} to {s.last}" for s in found))


def signatures_of(facts: Facts, checks: list[CheckType]) -> list[Signature]:
    """The signatures found by the log-signature checks among checks, in their order, each once."""
    out: dict[str, Signature] = {}
    for check in checks:
        if isinstance(check, LogSignature) and facts.running(check.p["container"]):
            scanned = facts.scanned(check.p["container"])
            out.update({n: scanned[n] for n in check.names() if n in scanned})
    return list(out.values())
