"""Make an infrastructure-as-code file (a Terraform user_data.sh) agree with the fixed compose file."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import InputError
from ..plan import Plan
from ..transport import FileState
from . import Param, register
from .compose_env import prune
from .file import FileEdit

if TYPE_CHECKING:
    from ..context import Context

VALUE_END = r"(?=[\"'\s#]|$)"


@register
class UserDataRelay(FileEdit):
    """The same two edits as the compose file, as text: RELAYHOST -> relay_transport, prune relay_domains."""

    kind = "user-data-relay"
    params = {
        "path": Param((str, type(None)), help="the user_data.sh (empty: nothing to do)"),
        "relay_transport": Param((str, type(None)), help="default: what the relay-transport step decided"),
        "remove_domains": Param(list, default=[]),
        "relayhost_key": Param(str, default="RELAYHOST"),
        "transport_key": Param(str, default="POSTFIX_relay_transport"),
        "domains_key": Param(str, default="POSTFIX_relay_domains"),
    }

    def check(self, ctx: Context) -> Plan:
        if not self.p["path"]:
            return self.plan("iac_user_data is not set, so there is no IaC file to keep in step")
        return super().check(ctx)

    def edit(self, ctx: Context, current: FileState | None) -> tuple[bytes | None, str]:
        if current is None:
            raise InputError(f"{ctx.target_name(self.target)}:{self.path} does not exist",
                             hint="set iac_user_data to the Terraform user_data.sh, or leave it empty")
        wanted = self.p["relay_transport"] or ctx.facts.get("relay_transport")
        if not wanted:
            raise InputError(f"{self.spec.where}: step {self.id!r} needs relay_transport (or a relay-transport step before it)")
        text = current.content.decode("utf-8", "surrogateescape")
        old_key, new_key, domains_key = self.p["relayhost_key"], self.p["transport_key"], self.p["domains_key"]
        what: list[str] = []
        relay = re.compile(rf"\b(?:{re.escape(old_key)}|{re.escape(new_key)})=[^\s\"'#]*{VALUE_END}")

        def set_transport(m: re.Match[str]) -> str:
            replacement = f"{new_key}={wanted}"
            if m.group(0) != replacement:
                what.append(f"{m.group(0)} becomes {replacement}")
            return replacement

        text = relay.sub(set_transport, text)
        domains = re.compile(rf"(?P<head>\b{re.escape(domains_key)}=)(?P<value>[^\"'#\n\r]*?)(?P<tail>[ \t]*(?:[\"'#]|\r?$))", re.M)

        def prune_domains(m: re.Match[str]) -> str:
            value, gone = prune(m.group("value"), [str(d) for d in self.p["remove_domains"]])
            if not gone:
                return m.group(0)
            what.append(f"{domains_key} drops {', '.join(gone)}")
            return m.group("head") + value + m.group("tail")

        text = domains.sub(prune_domains, text)
        if not what:
            return None, f"{self.path} already agrees: {new_key}={wanted}"
        return text.encode("utf-8", "surrogateescape"), "make it agree with the compose file: " + "; ".join(what)
