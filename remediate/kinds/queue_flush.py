"""Deliver the mail Postfix deferred while its next hop was down, once that hop answers again: flush the queue in the
Postfix container, and prove every flushed message Saved. No file is changed, and a delivered mail is not un-sent."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from remediate.contract import validate
from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, register
from remediate.probes.containers import container_name
from remediate.probes.queue_names import PROTOCOLS
from remediate.probes.waiting import NotYet, wait
from remediate.transport import Transport

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

NO_FILE: Final = "changes no file: it asks Postfix to retry its deferred mail now"
FLUSH: Final = ("all", "ids")
SHOWN: Final = 20  # queue ids named in a plan or a failure; the rest counted


def listed(ids: Sequence[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


@register
class QueueFlush(Step):
    """Flush Postfix's deferred mail once its next hop answers (LHLO or EHLO); prove each recipient Saved.

    The plan reads the queue (postqueue -j in the container), takes the mail deferred because the next hop
    (next_hop_address, next_hop_port) could not be reached, and greets that hop: while it does not answer, the plan
    refuses, since a flush would only defer the mail again. Mail the hop answered and deferred itself (a 4xx reply:
    a full mailbox) is named and left out: a flush will not deliver it. Apply records each message's recipients and
    runs `postqueue -f` (flush: ids runs `postqueue -i ID` per message). Verify waits until Postfix's log shows, from
    the hop, `status=sent (... Saved)` for every recorded recipient of every flushed message, and at most
    max_deferred other messages wait for the hop; a bounce or an expiry fails at once. Rollback has nothing to undo."""

    kind = "queue-flush"
    outputs = ("queue_ids",)
    params = {
        "container": Param(str, required=True, help="Postfix's container"),
        "next_hop_address": Param(str, required=True, help="where the deferred mail goes (a name or an address, as "
                                                           "Postfix's relay_transport names it and the host reaches it)"),
        "next_hop_port": Param(int, required=True, help="its port"),
        "next_hop_protocol": Param(str, default="lmtp", help="lmtp (greeted with LHLO) or smtp (EHLO)"),
        "max_deferred": Param(int, default=0, help="plan: flush when more messages than this wait for the hop; verify: "
                                                   "the most mail deferred for it meanwhile (not flushed) that may "
                                                   "wait; every flushed message must be Saved all the same"),
        "timeout": Param(int, default=60, help="seconds for each flushed message to be Saved"),
        "flush": Param(str, default="all", help="all: postqueue -f; ids: postqueue -i for each message planned"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        container_name(self.p["container"], f"{at}: container")
        self.p["next_hop_address"] = validate.host(self.p["next_hop_address"], f"{at}: next_hop_address")
        validate.port(self.p["next_hop_port"], f"{at}: next_hop_port")
        if self.p["next_hop_protocol"] not in PROTOCOLS:
            raise InputError(f"{at}: next_hop_protocol must be lmtp or smtp, not {self.p['next_hop_protocol']!r}")
        if self.p["flush"] not in FLUSH:
            raise InputError(f"{at}: flush must be all or ids, not {self.p['flush']!r}")
        for name in ("max_deferred", "timeout"):
            if self.p[name] < (0 if name == "max_deferred" else 1):
                raise InputError(f"{at}: {name} must be {'0' if name == 'max_deferred' else '1'} or more, "
                                 f"not {self.p[name]}")

    def _answering(self, transport: Transport, address: str, port: int) -> str:
        """What the next hop answered; the refusal when it does not answer."""
        from remediate.probes import queue  # the probe is loaded when a flush runs, not with every kind
        label, protocol = queue.hop_label(address, port), self.p["next_hop_protocol"]
        answer = queue.answers(transport, address, port, protocol)
        if not answer.ok:
            raise StepError(f"refusing to flush: next hop {label} ({protocol}) does not answer: {answer.said}; start it "
                            "first", hint="a flush now would only defer the mail again; nothing was changed")
        return f"next hop {label} ({protocol}) {answer.said}"

    def _commands(self, ids: Sequence[str]) -> list[list[str]]:
        from remediate.probes import queue
        flushes = [queue.flush_all()] if self.p["flush"] == "all" else [queue.flush_one(i) for i in ids]
        return [queue.in_container(self.p["container"], argv) for argv in flushes]

    def plan(self, ctx: Context) -> Plan:
        from remediate.probes import queue
        transport = ctx.transport(self.target)
        read = queue.read(transport, self.p["container"])
        address, port = self.p["next_hop_address"], int(self.p["next_hop_port"])
        held, flushable = read.held("deferred", address, port), read.flushable(address, port)
        found = f"{read.where}: {queue.describe(held, read.now, ages=False)}"  # no age: a plan is read later
        if len(held) > len(flushable):
            found += (f"; {len(held) - len(flushable)} of them the hop answers and defers itself (a 4xx reply): "
                      "a flush will not deliver it, they are not flushed")
        if len(flushable) <= self.p["max_deferred"]:
            return self.planned(f"{found}; {len(flushable)} waiting for the hop to be reached, at most "
                                f"{self.p['max_deferred']} allowed: nothing to flush", outputs={"queue_ids": []})
        answered = self._answering(transport, address, port)
        ids = sorted(flushable)  # postqueue's order is the spool's: the plan's data must not move with it
        return self.planned(f"{found}; {answered}; flush {len(ids)} message(s): {listed(ids)}; {NO_FILE}",
                            commands=tuple(shlex.join(c) for c in self._commands(ids)),
                            data={"queue_ids": ids, "address": address, "port": port},
                            outputs={"queue_ids": ids})

    def apply(self, ctx: Context, plan: Plan) -> Applied:
        from remediate.probes import queue
        transport = ctx.transport(self.target)
        address, port = str(plan.data["address"]), int(plan.data["port"])
        answered = self._answering(transport, address, port)  # still up: else nothing is flushed
        read = queue.read(transport, self.p["container"])  # now, with the host's clock: the log is read from here
        now = read.flushable(address, port)
        planned = list(plan.data["queue_ids"])
        # flush: ids flushes only messages the plan listed (a mail deferred since was never reviewed); flush: all is
        # `postqueue -f`, as planned, and every message it reaches is proved Saved
        kept = sorted(now) if self.p["flush"] == "all" else [i for i in planned if i in now]
        recipients = {qid: list(now[qid]) for qid in kept}
        ids = list(recipients)
        gone = [i for i in planned if i not in now]
        ctx.record(self.id, via=transport, files=[], note=NO_FILE, queue_ids=ids, next_hop=answered)
        results = []
        for argv in self._commands(ids):
            result = transport.run(argv, timeout=120)
            results.append(result.summary())
            if not result.ok:
                ctx.note(self.id, results=results)
                raise StepError(f"`{result.command}` exited {result.exit_code}: "
                                f"{queue.clean(result.output, 300) or '(no output)'}")
        unplanned = sorted(set(now) - set(ids))  # flush: ids: deferred since the plan, not reviewed, left waiting
        ctx.note(self.id, results=results, left_before_the_flush=gone, not_planned=unplanned)
        return Applied(data={"since": read.now, "queue_ids": ids, "recipients": recipients, "gone": gone,
                             "address": address, "port": port, "not_planned": unplanned})

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        from remediate.probes import queue
        transport = ctx.transport(self.target)
        data = applied.data
        address, port, since = str(data["address"]), int(data["port"]), int(data.get("since", 0))
        recipients: dict[str, list[str]] = {q: list(r) for q, r in dict(data.get("recipients", {})).items()}
        ids, label = list(recipients), queue.hop_label(address, port)
        unplanned = set(data.get("not_planned", ()))  # not counted against max_deferred: waiting for their own review

        def drained() -> str:
            read = queue.read(transport, self.p["container"])
            unreached = read.flushable(address, port)  # not those the hop deferred itself: no flush delivers them
            others = [m for m in read.messages if m.queue_id in unreached and m.queue_id not in recipients
                      and m.queue_id not in unplanned]
            done = queue.deliveries(queue.log_since(transport, self.p["container"], since), recipients, address, port)
            failed = [d.shown() for d in done if d.failed]
            if failed:
                raise StepError(f"flushed mail was not delivered: {'; '.join(failed[:SHOWN])}")
            saved = {(d.queue_id, d.recipient) for d in done if d.saved}
            missing = sorted({q for q, rcpts in recipients.items() for r in rcpts if (q, r) not in saved})
            if len(others) > self.p["max_deferred"] or missing:
                waits = [f"no 'status=sent ... Saved' from {label} yet for some recipient of {listed(missing)}"] \
                    if missing else []
                if len(others) > self.p["max_deferred"]:
                    waits.append(f"{len(others)} other message(s) deferred for {label} meanwhile (at most "
                                 f"{self.p['max_deferred']})")
                raise NotYet("; ".join(waits), seen=(len(others), tuple(missing)))
            return queue.describe(others, read.now)

        left = wait(self.p["timeout"], f"every recipient of each flushed message Saved in {self.p['container']}'s log",
                    drained, explain=lambda: self._why(transport, recipients, since, (address, port)))
        gone = f"; {len(data.get('gone', []))} had left the queue before the flush" if data.get("gone") else ""
        if unplanned:
            gone += f"; {len(unplanned)} deferred after the plan left for a plan of their own: {listed(sorted(unplanned))}"
        return (f"{len(ids)} flushed message(s) delivered, each recipient 'status=sent (... Saved)' from {label} in "
                f"{self.p['container']}'s log: {listed(ids) or 'none'}; now {left} for {label} besides, at most "
                f"{self.p['max_deferred']} allowed{gone}")

    def _why(self, transport: Transport, recipients: Mapping[str, Sequence[str]], since: int,
             hop: tuple[str, int]) -> str:
        """For each flushed recipient not Saved: its delay reason in the queue, or its last status in the log."""
        from remediate.probes import queue
        read = queue.read(transport, self.p["container"])
        reasons = {(m.queue_id, a): r for m in read.messages for a, r in m.recipients}
        done = queue.deliveries(queue.log_since(transport, self.p["container"], since), recipients, *hop)
        said = []
        for qid, rcpts in recipients.items():
            for rcpt in rcpts:
                last = [d for d in done if (d.queue_id, d.recipient) == (qid, rcpt)][-1:]
                if (qid, rcpt) in reasons:
                    said.append(f"{qid} to <{queue.clean(rcpt, 80)}>: still queued: {queue.clean(reasons[qid, rcpt])}")
                elif not (last and last[0].saved):
                    said.append(last[0].shown() if last else f"{qid} to <{queue.clean(rcpt, 80)}>: no status line for it "
                                                             f"in the log")
        return f"not delivered: {'; '.join(said[:SHOWN])}" if said else ""

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        return f"nothing to undo: this step {NO_FILE} (a delivered mail is not un-sent)"
