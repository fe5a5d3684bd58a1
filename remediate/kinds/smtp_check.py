"""Ask an SMTP server whether it accepts a recipient (EHLO, MAIL FROM, RCPT TO, then RSET): no mail is sent."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Final

from remediate.contract.plan import Applied, Plan
from remediate.contract.validate import host as valid_host
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, register
from remediate.kinds.mail_delivery import mailbox
from remediate.probes.dialogue import Exchange, talk
from remediate.probes.waiting import NotYet, wait

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

HELO: Final = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253})\Z")
#: A refused or half-open listener right after a restart is worth asking again; a reply is final.
RETRY: Final = frozenset({"refused", "timeout", "broken"})


@register
class SmtpCheck(Step):
    """Ask an SMTP server whether it takes a recipient from a client address, and expect a reply code (no mail sent)."""

    kind = "smtp-check"
    proves_only = True
    params = {
        "address": Param(str, required=True, help="where the host reaches the SMTP server (e.g. "
                                                  "{{ steps.restart.smtp_address }})"),
        "port": Param(int, default=25),
        "source": Param((str, type(None)), default="", help="an address of the host to connect from, as the client "
                                                             "would (needs python3 on the host); empty: any"),
        "helo": Param(str, default="remediate.check"),
        "sender": Param(str, required=True),
        "recipient": Param(str, required=True),
        "expect": Param(int, default=250, help="the reply code RCPT TO must get"),
        "timeout": Param(int, default=30, help="seconds to keep asking while the server refuses connections"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        valid_host(self.p["address"], f"{at}: address")
        if self.p["source"]:
            try:
                ipaddress.ip_address(self.p["source"])
            except ValueError:
                raise InputError(f"{at}: source must be one IP address the host can connect from, not "
                                 f"{self.p['source']!r}", hint="for a network, name one address in it") from None
        if not HELO.match(self.p["helo"]):
            raise InputError(f"{at}: helo must be a host name, not {self.p['helo']!r}")
        mailbox(self.p["sender"], f"{at}: sender")
        mailbox(self.p["recipient"], f"{at}: recipient")
        if not 200 <= self.p["expect"] <= 599:
            raise InputError(f"{at}: expect must be an SMTP reply code (200 to 599), not {self.p['expect']}")
        if not 0 < self.p["port"] < 65536:
            raise InputError(f"{at}: port must be 1 to 65535, not {self.p['port']}")

    @property
    def what(self) -> str:
        source = f" from {self.p['source']}" if self.p["source"] else ""
        return f"RCPT TO:<{self.p['recipient']}>{source} on {self.p['address']}:{self.p['port']}"

    def plan(self, ctx: Context) -> Plan:
        proof = (f"ask {self.what} and expect {self.p['expect']} (EHLO, MAIL FROM, RCPT TO, RSET; no mail is sent)",)
        now = self._describe(self._ask(ctx))
        earlier = ctx.changed_dependencies(self.spec)
        if earlier:
            return self.planned(f"prove {self.what} gets {self.p['expect']} after {', '.join(earlier)}; now: {now}",
                             checks=proof)
        return self.planned(f"{self.what} now: {now}", checks=proof)

    def apply(self, ctx: Context, plan: Plan) -> None:
        """Nothing to change: verify asks the server."""

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        def answer() -> str:
            exchange = self._ask(ctx)
            if exchange.status in RETRY:
                raise NotYet(self._describe(exchange))
            rcpt = exchange.reply(2)
            if exchange.status != "answered" or not rcpt.startswith(str(self.p["expect"])):
                raise StepError(f"{self.what}: expected {self.p['expect']}, got {self._describe(exchange)}")
            return f"{self.what}: {rcpt.splitlines()[-1]} ({exchange.route})"

        return wait(self.p["timeout"], f"{self.what} never answered", answer)

    def _ask(self, ctx: Context) -> Exchange:
        return talk(ctx.transport(self.target), self.p["address"], self.p["port"],
                    (f"EHLO {self.p['helo']}", f"MAIL FROM:<{self.p['sender']}>", f"RCPT TO:<{self.p['recipient']}>",
                     "RSET", "QUIT"), source=self.p["source"] or "")

    @staticmethod
    def _describe(exchange: Exchange) -> str:
        """The RCPT reply, or which earlier part of the dialogue failed."""
        if exchange.status != "answered":
            return exchange.describe()
        for index, said in ((0, "EHLO"), (1, "MAIL FROM"), (2, "RCPT TO")):
            reply = exchange.reply(index)
            if not reply:
                return f"no reply to {said} ({exchange.detail or 'the connection ended'})"
            if index < 2 and not reply.startswith("2"):
                return f"{said} refused: {reply.splitlines()[-1]}"
        return exchange.reply(2).splitlines()[-1]
