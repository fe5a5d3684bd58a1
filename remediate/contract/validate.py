"""Checks of the values operators pass (hosts, ports, lists), shared by steps and diagnose; errors say where."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

from remediate.errors import InputError

LABEL: Final = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def host(value: Any, where: str) -> str:
    """A hostname, an IPv4 address or an IPv6 address (brackets allowed); returned without brackets."""
    text = value if isinstance(value, str) else ""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    if bare and len(bare) <= 253 and all(LABEL.match(label) for label in bare.rstrip(".").split(".")):
        return bare
    raise InputError(f"{where}: {value!r} is not a hostname, an IPv4 address or an IPv6 address",
                     hint="for example mailbox.internal, 10.0.0.5 or [2001:db8::5]")


def pattern(value: Any, where: str) -> re.Pattern[str]:
    """value compiled as a regular expression; else an InputError citing where."""
    try:
        return re.compile(str(value))
    except re.error as e:
        raise InputError(f"{where}: {value!r} is not a regular expression: {e}") from None


def port(value: Any, where: str) -> int:
    """A TCP port, 1 to 65535 (not true/false, not a string of digits with junk)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise InputError(f"{where}: {value!r} is not a port number", hint="a port is a whole number from 1 to 65535")
    number = int(value)
    if not 0 < number < 65536:
        raise InputError(f"{where}: {number} is not a port number", hint="a port is a whole number from 1 to 65535")
    return number


def strings(value: Any, where: str) -> list[str]:
    """A list of non-empty strings (a single string is one item)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, (str, int)) and not isinstance(i, bool) and str(i) for i in items):
        raise InputError(f"{where}: {value!r} is not a list of names", hint="for example [m8088.com] or -e 'x=[a, b]'")
    return [str(i) for i in items]
