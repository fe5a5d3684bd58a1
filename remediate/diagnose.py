"""Read-only diagnosis of the SMTP->LMTP relay mismatch: log signatures, effective config, a protocol probe,
IaC drift and the runbook's rebuild checklist. Nothing here writes anywhere."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Mapping

from . import resolve, validate
from .errors import CommandError, InputError
from .nexthop import host_of as next_hop_host
from .nexthop import parse as parse_next_hop
from .probes.containers import container_name, inspect, logs, postconf
from .probes.dialogue import protocol
from .transport import Transport

FIX: Final = "smtp-to-lmtp"
PROBE_TIMEOUT: Final = 5.0
SIGNATURES: Final = (
    ("protocol-mismatch", "500 5.5.1 Unknown command", "SMTP spoken to an LMTP server"),
    ("connection-refused", "Connection refused", "nothing listens on the relay target"),
    ("timed-out", "timed out", "the relay target does not answer"),
)
QUEUE_LINE: Final = re.compile(r"^(?P<time>\w{3} [ \d]\d \d\d:\d\d:\d\d) \S+ postfix/\S+: (?P<qid>[0-9A-F]+): "
                               r"to=<(?P<rcpt>[^>]*)>.*status=(?P<status>\w+)")
NDR_LINE: Final = re.compile(r"postfix/\S+: ([0-9A-F]+): from=<>,")


@dataclass(frozen=True)
class Check:
    """One named check with its verdict and the line that proves it."""

    name: str
    ok: bool | None  # None: could not be decided (and why is in evidence)
    evidence: str
    fix: str | None = None

    def event(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "evidence": self.evidence, "fix": self.fix}


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

    def event(self) -> dict[str, Any]:
        return {"signature": self.name, "meaning": self.meaning, "count": self.count, "first_seen": self.first,
                "last_seen": self.last, "messages_bounced": len(self.bounced), "recipient_domains": dict(self.domains)}


@dataclass(frozen=True)
class Probe:
    """What listens on a relay target, as the gateway sees it."""

    target: str
    verdict: str  # lmtp, smtp, refused, filtered, unreachable, other
    evidence: str


def counted(counts: Any) -> str:
    """{'a.com': 2, 'b.com': 1} as 'a.com (2), b.com (1)', for people."""
    return ", ".join(f"{key} ({n})" for key, n in dict(counts).items()) or "none"


def scan(lines: list[str]) -> list[Signature]:
    """Count each failure signature among the delivery status lines."""
    found = [Signature(name, meaning) for name, _, meaning in SIGNATURES]
    deferred = Signature("deferred-other", "deferred for another reason")
    # Non-delivery reports (from=<>) bounce too when relaying is broken; they are a consequence, not impact.
    reports = {m.group(1) for line in lines if (m := NDR_LINE.search(line))}
    for line in lines:
        match = QUEUE_LINE.search(line)
        if not match or match["status"] == "sent" or match["qid"] in reports:
            continue
        sig = next((s for s, (_, needle, _) in zip(found, SIGNATURES) if needle in line), None)
        if sig is None:
            if match["status"] != "deferred":
                continue
            sig = deferred
        sig.count += 1
        sig.first = sig.first or match["time"]
        sig.last = match["time"]
        if match["status"] == "bounced":
            sig.bounced.add(match["qid"])
        sig.domains[match["rcpt"].rpartition("@")[2] or "(none)"] += 1
    return [s for s in (*found, deferred) if s.count]


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
    hop = parse_next_hop(relay_transport)
    if hop and hop.proto:  # a bare transport name ("relay") names no next hop
        return ("smtp" if hop.proto in ("relay", "smtp") else hop.proto), hop.host, hop.port or 25
    hop = parse_next_hop(relayhost) if relayhost else None
    if hop:
        return "smtp", hop.host, hop.port or 25
    return None


def diagnose(transport: Transport, variables: Mapping[str, Any], local: Transport | None = None
             ) -> tuple[list[Check], list[Signature], Probe | None]:
    """Every check of the rebuild checklist, the log's failure signatures, and the protocol probe."""
    path = f"{variables['compose_dir']}/{variables['compose_file']}"
    container, service = str(variables["postfix_container"]), str(variables["postfix_service"])
    stray = validate.strings(variables.get("remove_relay_domains") or [], "variable remove_relay_domains")
    lmtp_port = validate.port(variables.get("lmtp_port") or 2525, "variable lmtp_port")
    container_name(variables["postfix_container"], "variable postfix_container")
    checks: list[Check] = []

    state = transport.read(path)
    if state is None:
        raise InputError(f"{transport.name}:{path} does not exist", hint="set compose_dir / compose_file")
    env = resolve.read(transport.read, path, service, state.content.decode("utf-8", "replace")).resolved()
    file_relayhost = env.get("RELAYHOST") or ""
    file_transport = env.get("POSTFIX_relay_transport") or ""
    file_domains = env.get("POSTFIX_relay_domains") or ""

    facts = inspect(transport, container)
    running = bool(facts and facts["State"]["Running"])
    effective: dict[str, str] = {}
    signatures: list[Signature] = []
    if running:
        seen = postconf(transport, container, ["relayhost", "relay_transport", "relay_domains"])
        if seen is None:
            raise CommandError(f"{transport.name}: postconf in {container} failed")
        effective = seen
        signatures = scan(logs(transport, container))
    else:
        checks.append(Check("container-running", False, f"{container} is {'missing' if facts is None else facts['State']['Status']}"))

    mismatch = next((s for s in signatures if s.name == "protocol-mismatch"), None)
    checks.append(Check("log-no-protocol-mismatch", None if not running else mismatch is None,
                        "log not readable: container not running" if not running else
                        (f"{mismatch.count} x '500 5.5.1 Unknown command' from {mismatch.first} to {mismatch.last}; "
                         f"{len(mismatch.bounced)} message(s) bounced; domains {counted(mismatch.domains)}" if mismatch
                         else "no '500 5.5.1 Unknown command' since the container started"),
                        FIX if mismatch else None))
    others = [s for s in signatures if s.name != "protocol-mismatch"]
    checks.append(Check("log-no-relay-failures", None if not running else not others,
                        "; ".join(f"{s.count} x {s.name} ({s.meaning}) from {s.first} to {s.last}" for s in others)
                        or ("no refused, timed-out or deferred deliveries since the container started" if running
                            else "log not readable: container not running")))

    relayhost = effective.get("relayhost", file_relayhost) if running else file_relayhost
    transport_now = effective.get("relay_transport", file_transport) if running else file_transport
    checks.append(Check("relayhost-unused", not relayhost and not file_relayhost,
                        f"compose RELAYHOST={file_relayhost or '(unset)'}; running relayhost={relayhost or '(empty)'}",
                        FIX if relayhost or file_relayhost else None))
    lmtp_host = (validate.host(variables["lmtp_host"], "variable lmtp_host") if variables.get("lmtp_host")
                 else next_hop_host(file_relayhost or file_transport) or "")
    wanted = f"lmtp:[{lmtp_host}]:{lmtp_port}"
    checks.append(Check("relay-transport-lmtp", transport_now == wanted,
                        f"relay_transport is {transport_now or '(default)'}; the mailbox host's LMTP is {wanted}",
                        FIX if transport_now != wanted else None))
    if running:
        differ = [f"{k}: file says {v!r}, container runs {effective.get(k)!r}"
                  for k, v in (("relayhost", file_relayhost), ("relay_domains", file_domains),
                               ("relay_transport", file_transport)) if v and effective.get(k) != v]
        checks.append(Check("effective-matches-compose", not differ, "; ".join(differ) or
                            "relayhost, relay_transport and relay_domains in the container match the compose file",
                            FIX if differ else None))
    domains = effective.get("relay_domains", file_domains) if running else file_domains
    present = [d for d in re.split(r"[\s,]+", domains) if d in stray]
    checks.append(Check("relay-domains-clean", not present,
                        f"relay_domains={domains!r}" + (f" still holds {', '.join(present)}" if present else ""),
                        FIX if present else None))

    found = relay_target(relayhost, transport_now)
    result_probe = probe(transport, found[1], found[2]) if found else None
    if result_probe is None:
        checks.append(Check("relay-target-protocol", None, "no relay target configured (relayhost and relay_transport empty)"))
    else:
        proto = found[0] if found else "smtp"
        if result_probe.verdict in ("refused", "filtered", "unreachable"):
            service_down = "the LMTP service is down" if result_probe.verdict == "refused" else "the relay target does not answer"
            checks.append(Check("relay-target-protocol", False, f"{service_down}: {result_probe.evidence}"))
        else:
            agrees = result_probe.verdict == proto
            checks.append(Check("relay-target-protocol", agrees,
                                f"Postfix speaks {proto.upper()} to it; {result_probe.evidence}"
                                + ("" if agrees else f": protocol mismatch proven ({proto.upper()} client, "
                                                     f"{result_probe.verdict.upper()} server)"),
                                None if agrees else FIX))

    iac = variables.get("iac_user_data")
    if iac and local is not None:
        checks.append(_drift(local, str(iac), file_relayhost, file_transport, file_domains))
    return checks, signatures, result_probe


def _drift(local: Transport, path: str, relayhost: str, transport_value: str, domains: str) -> Check:
    state = local.read(path)
    if state is None:
        return Check("iac-agrees", None, f"{path} does not exist")
    text = state.content.decode("utf-8", "replace")

    def value(key: str) -> str:
        match = re.search(rf"\b{key}=([^\"'#\n]*?)[ \t]*(?:[\"'#]|$)", text, re.M)
        return match.group(1) if match else ""

    pairs = (("RELAYHOST", relayhost), ("POSTFIX_relay_transport", transport_value), ("POSTFIX_relay_domains", domains))
    differ = [f"{k}: compose {v or '(unset)'!s}, user_data {value(k) or '(unset)'}" for k, v in pairs if value(k) != v]
    if not differ and relayhost:  # agreeing on the broken value is not agreement worth a tick
        return Check("iac-agrees", False, f"{path} agrees with the compose file, but both still relay with "
                                          f"RELAYHOST={relayhost} (SMTP)", FIX)
    return Check("iac-agrees", not differ, "; ".join(differ) or f"{path} agrees with the compose file",
                 FIX if differ else None)
