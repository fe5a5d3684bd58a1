"""Postfix settings as the compose file writes them (boky/postfix's contract) and as the running container has
them, compared with what they should be; and what really listens on the relay target."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

from remediate.contract import validate
from remediate.contract.params import Param
from remediate.diagnostics import CheckType, Facts, Verdict, register
from remediate.errors import InputError
from remediate.probes.containers import container_name
from remediate.probes.dialogue import protocol
from remediate.records import record
from remediate.transport import Transport

PROBE_TIMEOUT: Final = 5.0
LIST: Final = re.compile(r"[\s,]+")
EXPECTATIONS: Final = ("empty", "equals", "lacks", "covers", "next_hop")
WHERE: Final = {
    "container": Param(str, required=True),
    "compose_path": Param(str, required=True),
    "service": Param(str, required=True),
}


def env_key(setting: str) -> str:
    """The compose variable boky/postfix reads a Postfix setting from."""
    return "RELAYHOST" if setting == "relayhost" else f"POSTFIX_{setting}"


def items(value: str) -> list[str]:
    return [x for x in LIST.split(value.strip()) if x]


class PostfixCheck(CheckType):
    """A check that reads the compose service's environment and the container's Postfix."""

    def validate(self) -> None:
        container_name(self.p["container"], f"{self.at}: container")

    def values(self, facts: Facts, setting: str) -> tuple[str, str | None]:
        """(the compose file's value, the running value or None when the container does not run)."""
        file = facts.compose(self.p["compose_path"], self.p["service"]).get(env_key(setting)) or ""
        if not facts.running(self.p["container"]):
            return file, None
        return file, facts.postconf(self.p["container"], [setting])[setting]


@register
class PostfixSetting(PostfixCheck):
    """One Postfix setting (running, else as the compose file sets it) against an expectation."""

    name = "postfix-setting"
    params = {
        **WHERE,
        "setting": Param(str, required=True, help="the Postfix parameter, e.g. mynetworks"),
        "expect": Param(dict, required=True, help="one of empty: true, equals: VALUE, lacks: [items], covers: "
                                                  "[addresses or networks], next_hop: {protocol, host, port}"),
        "covers_rejected": Param(str, default="", help="a log signature whose client addresses must be covered too"),
        "suggest": Param(dict, default={}, help="variables to propose to the fix for an uncovered rejected client, "
                                                "e.g. {client_network: '{client}/32'}"),
    }

    def validate(self) -> None:
        super().validate()
        expect = self.p["expect"]
        if len(expect) != 1 or next(iter(expect)) not in EXPECTATIONS:
            raise InputError(f"{self.at}: expect must hold exactly one of {', '.join(EXPECTATIONS)}, not "
                             f"{', '.join(map(str, expect)) or 'nothing'}")
        self.how, self.wanted = next(iter(expect.items()))
        if self.how in ("lacks", "covers"):
            self.wanted = [] if self.wanted is None else self.wanted if isinstance(self.wanted, list) else [self.wanted]
            if self.how == "covers":
                for item in self.wanted:
                    if item not in ("", None):
                        network(str(item), f"{self.at}: covers")
        if self.how == "next_hop":
            hop = self.wanted if isinstance(self.wanted, dict) else {}
            if not hop.get("protocol"):
                raise InputError(f"{self.at}: next_hop needs protocol: (and host:, port:)")
            self.hop_port = validate.port(hop.get("port") or 25, f"{self.at}: next_hop port")
            self.hop_host = validate.host(hop["host"], f"{self.at}: next_hop host") if hop.get("host") else ""

    def run(self, facts: Facts) -> Verdict:
        setting = self.p["setting"]
        file, running = self.values(facts, setting)
        now = file if running is None else running
        if self.how == "empty":
            shown = "container not running" if running is None else f"running {setting}={running or '(empty)'}"
            return Verdict(not file and not running, f"compose {env_key(setting)}={file or '(unset)'}; {shown}")
        if self.how == "equals":
            return Verdict(now == str(self.wanted), f"{setting} is {now or '(default)'}; expected {self.wanted}")
        if self.how == "next_hop":
            from remediate.mail.nexthop import host_of as next_hop_host  # loaded by the checks that read a next hop
            env = facts.compose(self.p["compose_path"], self.p["service"])
            host = self.hop_host or next_hop_host(env.get("RELAYHOST") or env.get("POSTFIX_relay_transport") or "") or ""
            wanted = f"{self.wanted['protocol']}:[{host}]:{self.hop_port}"
            return Verdict(now == wanted, f"{setting} is {now or '(default)'}; the next hop should be {wanted}")
        if self.how == "lacks":
            present = [x for x in items(now) if x in [str(w) for w in self.wanted]]
            return Verdict(not present, f"{setting}={now!r}" + (f" still holds {', '.join(present)}" if present else ""))
        return self._covers(facts, setting, now)

    def _covers(self, facts: Facts, setting: str, now: str) -> Verdict:
        networks = [n for n in (network(x, "", strict=False) for x in items(now)) if n is not None]
        given = [str(w) for w in self.wanted if w not in ("", None)]
        rejected: list[str] = []
        if self.p["covers_rejected"] and facts.running(self.p["container"]):
            found = facts.scanned(self.p["container"]).get(self.p["covers_rejected"])
            rejected = list(found.clients) if found else []
        wanted = list(dict.fromkeys(given + rejected))
        if not wanted:
            return Verdict(None, f"{setting}={now!r}; no client to check (none given, and none rejected)")
        missing = [w for w in wanted if not any(_within(network(w, ""), n) for n in networks)]
        if not missing:
            return Verdict(True, f"{setting}={now!r} covers {', '.join(wanted)}")
        suggest = {}
        if not given and missing[0] in rejected:
            suggest = {str(k): str(v).replace("{client}", missing[0]) for k, v in self.p["suggest"].items()}
        return Verdict(False, f"{setting}={now!r} does not cover {', '.join(missing)}"
                              + (" (seen in the rejects)" if set(missing) <= set(rejected) - set(given) else ""),
                       suggest=suggest)


def network(text: str, where: str, strict: bool = True) -> Any:
    """An address or network (brackets around IPv6 allowed); None for what is not one (hash:/etc/..., when not
    strict), else an InputError citing where."""
    bare = re.sub(r"^\[([^\]]+)\]", r"\1", text.strip())
    try:
        return ipaddress.ip_network(bare, strict=False)
    except ValueError:
        if not strict:
            return None
        raise InputError(f"{where}: {text!r} is not an address or a network", hint="for example 10.0.3.7 or 10.0.3.0/24") from None


def _within(inner: Any, outer: Any) -> bool:
    return inner is not None and inner.version == outer.version and inner.subnet_of(outer)


@register
class PostfixApplied(PostfixCheck):
    """The running container has the values the compose file sets, for each setting."""

    name = "postfix-applied"
    params = {**WHERE, "settings": Param(list, required=True)}

    def run(self, facts: Facts) -> Verdict:
        if not facts.running(self.p["container"]):
            return Verdict(None, "container not running")
        differ = []
        for setting in map(str, self.p["settings"]):
            file, running = self.values(facts, setting)
            if file and running != file:
                differ.append(f"{setting}: file says {file!r}, container runs {running!r}")
        return Verdict(not differ, "; ".join(differ) or f"{', '.join(map(str, self.p['settings']))} in the container "
                                                         "match the compose file")


@record(frozen=True)
class Probe:
    """What listens on a relay target, as the gateway sees it."""

    target: str
    verdict: str  # lmtp, smtp, refused, filtered, unreachable, other
    evidence: str


def probe(transport: Transport, host: str, port: int) -> Probe:
    """Greet the listener, try EHLO, then LHLO; classify it without guessing from the port number.

    The same verdict whether sshd allows port forwarding or the dialogue runs from the host's own shell."""
    verdict, exchange = protocol(transport, host, port)
    where, route = exchange.target, exchange.route
    if verdict == "refused":
        return Probe(where, verdict, f"nothing listens on {where} (connection refused; probed {route}): {exchange.detail}")
    if verdict == "filtered":
        return Probe(where, verdict, f"no answer from {where} within {PROBE_TIMEOUT:g} s (filtered?; probed {route})")
    if verdict == "unreachable":
        return Probe(where, verdict, f"cannot reach {where} (probed {route}): {exchange.detail}")
    ehlo, lhlo = exchange.reply(0).splitlines()[:1], exchange.reply(1).splitlines()[:1]
    if verdict == "smtp":
        detail = f"EHLO accepted ({ehlo[0] if ehlo else ''})"
    elif verdict == "lmtp":
        detail = f"EHLO answered {(ehlo or [''])[0]!r}, LHLO accepted"
    elif exchange.status == "answered":
        detail = f"EHLO answered {(ehlo or [''])[0]!r}, LHLO answered {(lhlo or [''])[0]!r}"
    else:
        return Probe(where, "other", f"{where} accepted the connection but the dialogue failed ({route}): {exchange.detail}")
    return Probe(where, verdict, f"{where} greets {exchange.greeting!r}; {detail} (probed {route})")


def relay_target(relayhost: str, relay_transport: str) -> tuple[str, str, int] | None:
    """(protocol, host, port) where relay mail goes: a next hop in relay_transport wins over relayhost."""
    from remediate.mail.nexthop import parse as parse_next_hop
    hop = parse_next_hop(relay_transport)
    if hop and hop.proto:  # a bare transport name ("relay") names no next hop
        return ("smtp" if hop.proto in ("relay", "smtp") else hop.proto), hop.host, hop.port or 25
    hop = parse_next_hop(relayhost) if relayhost else None
    if hop:
        return "smtp", hop.host, hop.port or 25
    return None


@register
class RelayTarget(PostfixCheck):
    """Probe where Postfix relays to (relay_transport, else relayhost) and compare the protocol it speaks there."""

    name = "relay-target"
    params = dict(WHERE)

    def run(self, facts: Facts) -> Verdict:
        host_file, host_running = self.values(facts, "relayhost")
        transport_file, transport_running = self.values(facts, "relay_transport")
        relayhost = host_file if host_running is None else host_running
        transport_now = transport_file if transport_running is None else transport_running
        found = relay_target(relayhost, transport_now)
        if found is None:
            return Verdict(None, "no relay target configured (relayhost and relay_transport empty)")
        result = probe(facts.transport, found[1], found[2])
        facts.probes.append(result)
        if result.verdict in ("refused", "filtered", "unreachable"):
            down = "the LMTP service is down" if result.verdict == "refused" else "the relay target does not answer"
            return Verdict(False, f"{down}: {result.evidence}", fixable=False)
        agrees = result.verdict == found[0]
        return Verdict(agrees, f"Postfix speaks {found[0].upper()} to it; {result.evidence}"
                               + ("" if agrees else f": protocol mismatch proven ({found[0].upper()} client, "
                                                    f"{result.verdict.upper()} server)"))
