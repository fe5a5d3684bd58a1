"""log-signature: count failure patterns in a Postfix container's log, with their impact (messages bounced,
recipient domains, client addresses), since the container started."""

from __future__ import annotations

from remediate.contract import validate
from remediate.contract.params import Param
from remediate.diagnostics import CheckType, Facts, Verdict, register
from remediate.diagnostics.logscan import DEFERRED_OTHER, LINES, Pattern, Signature, counted
from remediate.errors import InputError
from remediate.probes.containers import container_name


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
