"""Where a containerised service listens, as its host reaches it: inferred from the compose service, not assumed."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from remediate.records import record

WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "[::]", "*", "all"})
LOOPBACK: Final = "127.0.0.1"
SEPARATORS: Final = re.compile(r"[\s,]+")


@record(frozen=True)
class Listener:
    """An address and port to probe, and why remediate chose them."""

    address: str
    port: int
    why: str

    def __str__(self) -> str:
        return f"{self.address}:{self.port} ({self.why})"


def smtp_listener(service: Mapping[str, Any], env: Mapping[str, str | None], *, port: int, override: str = "",
                  ask: Callable[[], str | None] | None = None) -> Listener:
    """Where the host reaches a Postfix service's SMTP port.

    In order: the smtp_address override; a `ports:` mapping of the container's port; `network_mode: host` with
    POSTFIX_inet_interfaces (or, failing that, `postconf -h inet_interfaces` via ask); else 127.0.0.1, saying so.
    """
    if override:
        return Listener(override, port, "smtp_address is set")
    published = _published(service.get("ports"), port)
    if published is not None:
        return published
    if str(service.get("network_mode") or "") == "host":
        value = env.get("POSTFIX_inet_interfaces")
        if value and "$" not in value:
            return _interface(value, port, f"network_mode: host and POSTFIX_inet_interfaces={value}")
        seen = ask() if ask is not None else None
        if seen:
            return _interface(seen, port, f"network_mode: host and postconf inet_interfaces = {seen} in the container")
        return Listener(LOOPBACK, port, "network_mode: host and Postfix's default inet_interfaces (all)")
    return Listener(LOOPBACK, port, f"no ports: mapping publishes {port} and the service is not on the host network; "
                                    "set smtp_address if the host reaches it elsewhere")


def _interface(value: str, port: int, why: str) -> Listener:
    for item in SEPARATORS.split(value.strip()):
        name = item.strip("[]").lower()
        if name in WILDCARDS:
            continue
        if name in ("loopback-only", "localhost"):
            return Listener(LOOPBACK, port, why)
        return Listener(item.strip("[]"), port, why)
    return Listener(LOOPBACK, port, why + " (every address)")


def _published(ports: Any, port: int) -> Listener | None:
    """The host side of the first `ports:` entry that publishes the container's port, or None."""
    if not isinstance(ports, list):
        return None
    for entry in ports:
        if isinstance(entry, dict):
            host_ip, published, container = entry.get("host_ip"), entry.get("published"), entry.get("target")
        else:
            parts = _split(str(entry).split("/", 1)[0])
            if len(parts) < 2:
                continue
            host_ip, published, container = (parts[0] if len(parts) == 3 else ""), parts[-2], parts[-1]
        if str(container) != str(port) or not str(published or "").isdigit():
            continue
        published = int(str(published))
        address = str(host_ip or "").strip("[]")
        shown = f"ports: {entry if not isinstance(entry, dict) else dict(entry)}"
        if address in WILDCARDS:
            return Listener(LOOPBACK, int(published), f"{shown} publishes it on every address")
        return Listener(address, int(published), shown)
    return None


def _split(text: str) -> list[str]:
    """'[::1]:25:25' -> ['::1', '25', '25']; '127.0.0.1:2525:25' -> three parts; '2525:25' -> two."""
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        return [address, *rest.lstrip(":").split(":")]
    return text.rsplit(":", 2)
