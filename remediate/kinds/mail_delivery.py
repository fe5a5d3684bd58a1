"""Send a tagged test mail through Postfix and follow it to Dovecot's 'saved mail' on the mailbox host."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Final

from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, register
from remediate.mail import nexthop
from remediate.probes.containers import container_name, inspect, logs
from remediate.probes.waiting import NotYet, wait

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

STATUS: Final = re.compile(r"status=(?P<status>\w+)")
# RFC 5321's Mailbox, as far as a test address needs: a dot-atom local part, @, and a domain or address literal.
ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
MAILBOX: Final = re.compile(rf"^{ATOM}(?:\.{ATOM})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
                            rf"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$")


def mailbox(value: object, where: str) -> str:
    """value, when it is an RFC 5321 mailbox (local@domain); else an InputError citing where."""
    if not isinstance(value, str) or len(value) > 254 or not MAILBOX.match(value):
        raise InputError(f"{where}: {value!r} is not a mail address (local-part@domain)",
                         hint="for example test@example.com")
    return value


@register
class MailDelivery(Step):
    """Send a tagged mail through Postfix and follow it to Dovecot's 'saved mail'."""

    kind = "test-mail"
    proves_only = True
    params = {
        "container": Param(str, required=True),
        "sender": Param(str, required=True),
        "recipient": Param(str, required=True),
        "mailbox_host": Param(str, required=True, help="inventory name of the host running Dovecot"),
        "dovecot_container": Param(str, required=True),
        "timeout": Param(int, default=60),
        "relay_transport": Param((str, type(None)), help="where delivery must have gone to count as proven "
                                                          "(e.g. {{ steps.relay-transport.relay_transport }})"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        container_name(self.p["container"], f"{at}: container")
        container_name(self.p["dovecot_container"], f"{at}: dovecot_container")
        mailbox(self.p["sender"], f"{at}: sender")
        mailbox(self.p["recipient"], f"{at}: recipient")

    def hosts(self) -> set[str]:
        return super().hosts() | {self.p["mailbox_host"]}

    def plan(self, ctx: Context) -> Plan:
        checks = (f"send a tagged mail {self.p['sender']} -> {self.p['recipient']} in {self.p['container']}, "
                  "follow it to 'status=sent ... Saved'",
                  f"find Dovecot's 'saved mail' for it in {self.p['dovecot_container']} on {self.p['mailbox_host']}")
        earlier = ctx.changed_dependencies(self.spec)
        if earlier:
            return self.planned(f"prove delivery after {', '.join(earlier)}", checks=checks)
        proof = self._delivered_before(ctx)
        if proof:
            return self.planned(f"delivery over LMTP already proven since {self.p['container']} started: {proof}")
        return self.planned("no LMTP delivery seen since the container started", checks=checks)

    def _delivered_before(self, ctx: Context) -> str | None:
        if inspect(ctx.transport(self.target), self.p["container"]) is None:
            return None
        hop = nexthop.parse(self.p["relay_transport"] or "")
        relay = (hop.host, hop.port) if hop is not None else None
        for line in reversed(logs(ctx.transport(self.target), self.p["container"])):
            if "status=sent (250 2.0.0" in line and line.rstrip().endswith("Saved)") \
                    and f"to=<{self.p['recipient']}>" in line \
                    and (relay is None or f"[{relay[0]}]:{relay[1]}," in line):
                return line.split(": ", 1)[-1][:160]
        return None

    def apply(self, ctx: Context, plan: Plan) -> None:
        """Nothing to change: the test mail is sent by verify."""

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        transport = ctx.transport(self.target)
        tag = f"remediate-{ctx.run_id}-{uuid.uuid4().hex[:8]}@remediate.invalid"
        message = (f"From: <{self.p['sender']}>\nTo: <{self.p['recipient']}>\nSubject: remediate test {ctx.run_id}\n"
                   f"Message-ID: <{tag}>\n\nTest mail sent by remediate run {ctx.run_id}.\n").encode()
        sent = transport.run(["docker", "exec", "-i", "--", self.p["container"], "sendmail", "-f", self.p["sender"],
                              "--", self.p["recipient"]], stdin=message)
        if not sent.ok:
            raise StepError(f"sendmail in {self.p['container']} failed: {sent.output.strip()[-300:]}")
        ctx.note(self.id, message_id=tag)

        def queue_id() -> str:
            for line in logs(transport, self.p["container"]):
                if f"message-id=<{tag}>" in line:
                    return line.split("]: ", 1)[1].split(":", 1)[0]
            raise NotYet(f"no 'message-id=<{tag}>' in the log of {self.p['container']}")

        qid = wait(self.p["timeout"], "the test mail never reached Postfix's queue", queue_id)

        def status() -> str:
            for line in logs(transport, self.p["container"]):
                if f"{qid}: to=<{self.p['recipient']}>" in line and "status=" in line:
                    found = STATUS.search(line)
                    if found and found["status"] == "sent" and "Saved" in line:
                        return line
                    raise StepError(f"test mail {qid} was not delivered: {line.split(': ', 1)[-1]}")
            raise NotYet(f"no 'status=sent ... Saved' for queue id {qid}")

        delivered = wait(self.p["timeout"], "the test mail was not delivered", status)
        dovecot = ctx.transport(self.p["mailbox_host"])

        def saved() -> str:
            for line in logs(dovecot, self.p["dovecot_container"]):
                if f"msgid=<{tag}>" in line and "saved mail to" in line:
                    return line
            raise NotYet(f"no 'saved mail' for <{tag}> in {self.p['dovecot_container']} on {self.p['mailbox_host']}")

        stored = wait(self.p["timeout"], "Dovecot never logged the test mail as saved", saved)
        ctx.note(self.id, queue_id=qid, postfix=delivered, dovecot=stored)
        return f"queue id {qid}: {delivered[delivered.index('status='):]}; {self.p['mailbox_host']}: {stored.split(': ')[-1]}"
