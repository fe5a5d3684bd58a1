"""Postfix next hops ([transport:][inet:]host[:port], [address]:port): parsed, built and checked. Pure text."""

from __future__ import annotations

import re
from typing import Final

from remediate.contract import validate
from remediate.errors import InputError
from remediate.records import record

NEXT_HOP: Final = re.compile(r"^(?:(?P<proto>lmtp|smtp|relay):)?(?:inet:)?"
                             r"(?:\[(?P<literal>[^\[\]\s]+)\]|(?P<host>[^\[\]\s:]+))(?::(?P<port>\d+))?$")


@record(frozen=True)
class NextHop:
    """Where a relayhost or relay_transport value sends mail."""

    proto: str | None
    host: str
    port: int | None


def parse(value: str) -> NextHop | None:
    match = NEXT_HOP.match(value.strip())
    if not match:
        return None
    return NextHop(match["proto"], match["literal"] or match["host"], int(match["port"]) if match["port"] else None)


def host_of(value: str) -> str | None:
    hop = parse(value)
    return hop.host if hop else None


def lmtp(host: str, port: int) -> str:
    """lmtp:[host]:port; brackets turn MX lookups off, and hold an IPv6 address as Postfix wants it."""
    return f"lmtp:[{host}]:{port}"


def is_valid_lmtp(value: str) -> bool:
    """value is lmtp:[host]:port or lmtp:host:port, host a hostname, IPv4 address or bracketed IPv6 address."""
    hop = parse(value)
    if hop is None or hop.proto != "lmtp" or hop.port is None or not 0 < hop.port < 65536:
        return False
    if ":" in hop.host and f"[{hop.host}]" not in value:
        return False  # an IPv6 address must be bracketed
    try:
        validate.host(hop.host, "next hop")
    except InputError:
        return False
    return True
