"""mail-queue: how much mail Postfix holds in a queue (deferred, by default), by age and by next hop, and whether that
next hop answers again (a flush then delivers it; while it is down, a flush would only defer it again)."""

from __future__ import annotations

from remediate.contract import validate
from remediate.contract.params import Param
from remediate.diagnostics import CheckType, Facts, Verdict, register
from remediate.errors import InputError
from remediate.probes.containers import container_name
from remediate.probes.queue_names import PROTOCOLS, QUEUES


@register
class MailQueue(CheckType):
    """Postfix's queue (deferred by default) holds at most max_deferred messages, read with `postqueue -j`.

    The evidence counts the messages by next hop (from their delay reasons) and by age, with the oldest. Given a next
    hop (next_hop_address and next_hop_port: a name or an address), only the mail waiting for it is counted, and that
    hop is greeted (LHLO for lmtp, EHLO for smtp); no other host is ever greeted. Mail held for a hop that does not
    answer, or that the hop answered and deferred itself (a 4xx reply), is a finding no flush can fix. A host without
    the container is left out."""

    name = "mail-queue"
    params = {
        "container": Param(str, default="", help="Postfix's container (docker exec); empty: postqueue on the host"),
        "queue": Param(str, default="deferred", help=f"the queue counted: {', '.join(QUEUES)}"),
        "max_deferred": Param(int, default=0, help="the most messages the queue may hold for the check to pass"),
        "next_hop_address": Param(str, default="", help="count only mail waiting for this next hop, and probe it "
                                                        "(empty: the whole queue, no probe)"),
        "next_hop_port": Param(int, help="the next hop's port (with next_hop_address)"),
        "next_hop_protocol": Param(str, default="lmtp", help="lmtp (probed with LHLO) or smtp (EHLO)"),
        "ages": Param(bool, default=True, help="say how long the mail has waited; false: when the oldest came (for an "
                                               "assert step, whose plan is read later, when an age would be wrong)"),
    }

    def validate(self) -> None:
        if self.p["container"]:
            container_name(self.p["container"], f"{self.at}: container")
        if self.p["queue"] not in QUEUES:
            raise InputError(f"{self.at}: queue must be one of {', '.join(QUEUES)}, not {self.p['queue']!r}")
        if self.p["max_deferred"] < 0:
            raise InputError(f"{self.at}: max_deferred must be 0 or more, not {self.p['max_deferred']}")
        if self.p["next_hop_protocol"] not in PROTOCOLS:
            raise InputError(f"{self.at}: next_hop_protocol must be lmtp or smtp, not {self.p['next_hop_protocol']!r}")
        if self.p["next_hop_address"]:
            self.p["next_hop_address"] = validate.host(self.p["next_hop_address"], f"{self.at}: next_hop_address")
            if self.p["next_hop_port"] is None:
                raise InputError(f"{self.at}: next_hop_address needs next_hop_port")
            validate.port(self.p["next_hop_port"], f"{self.at}: next_hop_port")

    def run(self, facts: Facts) -> Verdict | None:
        from remediate.probes import queue  # the probe is loaded when the check runs, not with every check type
        container = self.p["container"]
        if container:
            found = facts.container(container)
            if found is None:
                return None  # no such container on this host: the check does not apply here (diagnose without -p)
            if not found["State"]["Running"]:
                return Verdict(None, f"{container} is {found['State']['Status']}: its queue cannot be read", fixable=False)
        try:
            read = queue.read(facts.transport, container)
        except queue.Unreadable as e:
            return Verdict(None, e.message, fixable=False)
        address, port, name = self.p["next_hop_address"], self.p["next_hop_port"], self.p["queue"]
        held = read.held(name, address, port)
        parts = [queue.describe(held, read.now, name, self.p["ages"])]
        if address and len(read.held(name)) > len(held):
            parts.append(f"{len(read.held(name)) - len(held)} more {name} for other next hops (not counted)")
        parts.append(f"at most {self.p['max_deferred']} allowed")
        if not address:
            return Verdict(len(held) <= self.p["max_deferred"], "; ".join(parts))
        answer = queue.answers(facts.transport, address, port, self.p["next_hop_protocol"])
        parts.append(f"next hop {queue.hop_label(address, port)} ({self.p['next_hop_protocol']}) "
                     + (answer.said if answer.ok else f"does not answer: {answer.said}"))
        evidence = "; ".join(parts)
        if len(held) <= self.p["max_deferred"]:
            return Verdict(True, evidence)
        if not answer.ok:
            return Verdict(False, f"{evidence}: start it first, a flush now would only defer the mail again",
                           fixable=False)
        replied = [m for m in held if not m.flushable(address, port)]
        if len(replied) > self.p["max_deferred"]:
            return Verdict(False, f"{evidence}: {len(replied)} of them the hop answers and defers itself (a 4xx "
                                  "reply): a flush will not deliver it", fixable=False)
        return Verdict(False, f"{evidence}: the mail waits for Postfix's next retry; a flush delivers it now")
