"""Steps that edit a compose service's environment: the relay transport and the relay domains."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from .. import compose, validate
from ..errors import InputError
from ..transport import FileState
from . import Param, register
from .file import FileEdit

if TYPE_CHECKING:
    from ..context import Context

# A Postfix next hop: [transport:][inet:]host or [host], with an optional :port.
NEXT_HOP: Final = re.compile(r"^(?:(?P<proto>lmtp|smtp|relay):)?(?:inet:)?\[?(?P<host>[^\]\s:]+)\]?(?::(?P<port>\d+))?$")
SEPARATORS: Final = re.compile(r"[\s,]+")


def _text(current: FileState | None, path: str, where: str) -> str:
    if current is None:
        raise InputError(f"{path}: the compose file does not exist", hint=f"check compose_dir and compose_file ({where})")
    try:
        return current.content.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: the compose file is not UTF-8 text; refusing to edit it") from None


@dataclass(frozen=True)
class NextHop:
    """Where a relayhost or relay_transport value sends mail."""

    proto: str | None
    host: str
    port: int | None


def parse_next_hop(value: str) -> NextHop | None:
    match = NEXT_HOP.match(value.strip())
    if not match:
        return None
    return NextHop(match["proto"], match["host"], int(match["port"]) if match["port"] else None)


def next_hop_host(value: str) -> str | None:
    hop = parse_next_hop(value)
    return hop.host if hop else None


class ComposeEnvEdit(FileEdit):
    """Base: one service's environment in one compose file."""

    params = {
        **FileEdit.params,
        "service": Param(str, required=True, help="the compose service whose environment is edited"),
    }


@register
class RelayTransport(ComposeEnvEdit):
    """Replace RELAYHOST (SMTP) by POSTFIX_relay_transport=lmtp:[host]:port, in place."""

    kind = "relay-transport"
    params = {
        **ComposeEnvEdit.params,
        "lmtp_host": Param((str, type(None)), help="the LMTP server; empty: the host of the RELAYHOST value found"),
        "lmtp_port": Param(int, default=2525, help="the LMTP port"),
        "relayhost_key": Param(str, default="RELAYHOST"),
        "transport_key": Param(str, default="POSTFIX_relay_transport"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        if self.p["lmtp_host"]:
            self.p["lmtp_host"] = validate.host(self.p["lmtp_host"], f"{at}: lmtp_host")
        self.p["lmtp_port"] = validate.port(self.p["lmtp_port"], f"{at}: lmtp_port")

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        text = _text(current, self.path, self.spec.where)
        env = compose.service_env(text, self.p["service"], self.path)
        old_key, new_key = self.p["relayhost_key"], self.p["transport_key"]
        host = self.p["lmtp_host"] or next_hop_host(env.get(old_key) or "") or next_hop_host(env.get(new_key) or "")
        if not host:
            raise InputError(f"{self.path}: no {old_key} or {new_key} in service {self.p['service']!r} to take the LMTP host from",
                             hint="pass it with -e lmtp_host=ADDRESS")
        wanted = f"lmtp:[{host}]:{self.p['lmtp_port']}"
        ctx.facts["relay_transport"] = wanted
        ctx.facts["lmtp_address"] = (host, int(self.p["lmtp_port"]))
        if env.get(new_key) == wanted and old_key not in env:
            return None, f"{new_key} is already {wanted} and {old_key} is unset"
        new = compose.edit_env(text, self.p["service"], set_={new_key: wanted}, remove=(old_key,),
                               rename=(old_key, new_key), name=self.path)
        was = f"{old_key}={env[old_key]}" if old_key in env else f"{new_key}={env.get(new_key)}"
        return new.encode("utf-8"), f"relay over LMTP: {was} becomes {new_key}={wanted}"


@register
class EnvListPrune(ComposeEnvEdit):
    """Remove items from a list-valued variable (e.g. POSTFIX_relay_domains), keeping the separator style."""

    kind = "env-list-prune"
    params = {
        **ComposeEnvEdit.params,
        "key": Param(str, required=True, help="the variable holding the list"),
        "remove": Param(list, required=True, help="the items to remove"),
    }

    def validate(self) -> None:
        self.p["remove"] = validate.strings(self.p["remove"], f"{self.spec.where}: step {self.id!r}: remove")

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        text = _text(current, self.path, self.spec.where)
        key = self.p["key"]
        value = compose.service_env(text, self.p["service"], self.path).get(key)
        if value is None:
            return None, f"{key} is not set in service {self.p['service']!r}"
        pruned, gone = prune(value, [str(x) for x in self.p["remove"]])
        ctx.facts[key] = pruned
        if not gone:
            return None, f"{key}={value} holds none of {', '.join(map(str, self.p['remove']))}"
        if not pruned:
            raise InputError(f"{self.path}: removing {', '.join(gone)} would leave {key} empty, which unsets it; refusing",
                             hint="remove fewer items, or edit the file by hand")
        new = compose.edit_env(text, self.p["service"], set_={key: pruned}, name=self.path)
        return new.encode("utf-8"), f"{key}: remove {', '.join(gone)} ({value} becomes {pruned})"


def prune(value: str, remove: list[str]) -> tuple[str, list[str]]:
    """The list without the removed items, joined as it was (', ', ',' or ' '); and what was removed."""
    items = [x for x in SEPARATORS.split(value.strip()) if x]
    separator = ", " if ", " in value else ("," if "," in value else " ")
    gone = [x for x in items if x in remove]
    return separator.join(x for x in items if x not in remove), gone
