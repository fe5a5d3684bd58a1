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
from remediate.probes import queue
from remediate.probes.containers import container_name
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
    """Flush Postfix's deferred mail once its next hop answers (LHLO or EHLO); prove each message Saved.

    The plan reads the queue (postqueue -j in the container), takes the mail deferred because the next hop
    (next_hop_address, next_hop_port) could not be reached, and greets that hop: while it does not answer, the plan
    refuses, since a flush would only defer the mail again. Mail the hop answered and deferred itself (a 4xx reply:
    a full mailbox) is named and left out: a flush will not deliver it. Apply runs `postqueue -f` (flush: ids runs
    `postqueue -i ID` per message). Verify waits until at most max_deferred messages wait for the hop to be reached
    and Postfix's log shows `status=sent (... Saved)` for every flushed queue id. Rollback has nothing to undo."""

    kind = "queue-flush"
    outputs = ("queue_ids",)
    params = {
        "container": Param(str, required=True, help="Postfix's container"),
        "next_hop_address": Param(str, required=True, help="where the deferred mail goes (a name or an address, as "
                                                           "Postfix's relay_transport names it and the host reaches it)"),
        "next_hop_port": Param(int, required=True, help="its port"),
        "next_hop_protocol": Param(str, default="lmtp", help="lmtp (greeted with LHLO) or smtp (EHLO)"),
        "max_deferred": Param(int, default=0, help="the most messages that may still wait for the hop afterwards"),
        "timeout": Param(int, default=60, help="seconds for the queue to drain and each message to be Saved"),
        "flush": Param(str, default="all", help="all: postqueue -f; ids: postqueue -i for each message planned"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        container_name(self.p["container"], f"{at}: container")
        self.p["next_hop_address"] = validate.host(self.p["next_hop_address"], f"{at}: next_hop_address")
        validate.port(self.p["next_hop_port"], f"{at}: next_hop_port")
        if self.p["next_hop_protocol"] not in queue.PROTOCOLS:
            raise InputError(f"{at}: next_hop_protocol must be lmtp or smtp, not {self.p['next_hop_protocol']!r}")
        if self.p["flush"] not in FLUSH:
            raise InputError(f"{at}: flush must be all or ids, not {self.p['flush']!r}")
        for name in ("max_deferred", "timeout"):
            if self.p[name] < (0 if name == "max_deferred" else 1):
                raise InputError(f"{at}: {name} must be {'0' if name == 'max_deferred' else '1'} or more, "
                                 f"not {self.p[name]}")

    def _answering(self, transport: Transport, address: str, port: int) -> str:
        """What the next hop answered; the refusal when it does not answer."""
        label, protocol = queue.hop_label(address, port), self.p["next_hop_protocol"]
        answer = queue.answers(transport, address, port, protocol)
        if not answer.ok:
            raise StepError(f"refusing to flush: next hop {label} ({protocol}) does not answer: {answer.said}; start it "
                            "first", hint="a flush now would only defer the mail again; nothing was changed")
        return f"next hop {label} ({protocol}) {answer.said}"

    def _commands(self, ids: Sequence[str]) -> list[list[str]]:
        flushes = [queue.flush_all()] if self.p["flush"] == "all" else [queue.flush_one(i) for i in ids]
        return [queue.in_container(self.p["container"], argv) for argv in flushes]

    def plan(self, ctx: Context) -> Plan:
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
        transport = ctx.transport(self.target)
        address, port = str(plan.data["address"]), int(plan.data["port"])
        answered = self._answering(transport, address, port)  # still up: else nothing is flushed
        read = queue.read(transport, self.p["container"])  # now, with the host's clock: the log is read from here
        ids = sorted(read.flushable(address, port))
        gone = [i for i in plan.data["queue_ids"] if i not in ids]
        ctx.record(self.id, via=transport, files=[], note=NO_FILE, queue_ids=ids, next_hop=answered)
        results = []
        for argv in self._commands(ids):
            result = transport.run(argv, timeout=120)
            results.append(result.summary())
            if not result.ok:
                ctx.note(self.id, results=results)
                raise StepError(f"`{result.command}` exited {result.exit_code}: "
                                f"{queue.clean(result.output, 300) or '(no output)'}")
        ctx.note(self.id, results=results, left_before_the_flush=gone)
        return Applied(data={"since": read.now, "queue_ids": ids, "gone": gone, "address": address, "port": port})

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        transport = ctx.transport(self.target)
        data = applied.data
        address, port = str(data["address"]), int(data["port"])
        ids: list[str] = list(applied.data.get("queue_ids", []))
        since = int(applied.data.get("since", 0))
        label = queue.hop_label(address, port)

        def drained() -> str:
            read = queue.read(transport, self.p["container"])
            unreached = read.flushable(address, port)  # not those the hop deferred itself: no flush delivers them
            held = [m for m in read.messages if m.queue_id in unreached]
            waiting = {m.queue_id for m in read.messages}
            done = queue.deliveries(queue.log_since(transport, self.p["container"], since), ids)
            failed = [f"{i}: {d[-1].status} ({d[-1].said})" for i, d in done.items()
                      if d[-1].status in ("bounced", "expired")]
            if failed:
                raise StepError(f"flushed mail was not delivered: {'; '.join(failed[:SHOWN])}")
            missing = [i for i in ids if i in waiting or not any(d.saved for d in done.get(i, []))]
            if len(held) > self.p["max_deferred"] or missing:
                raise NotYet(f"{len(held)} deferred for {label} (at most {self.p['max_deferred']}); no 'status=sent "
                             f"... Saved' yet for {listed(missing) or 'none'}", seen=(len(held), tuple(missing)))
            return queue.describe(held, read.now)

        left = wait(self.p["timeout"], f"the queue drained and every flushed message Saved in {self.p['container']}'s "
                                       "log", drained, explain=lambda: self._why(transport, ids, since))
        gone = f"; {len(data.get('gone', []))} had left the queue before the flush" if data.get("gone") else ""
        return (f"{len(ids)} flushed message(s) delivered, each 'status=sent (... Saved)' in {self.p['container']}'s "
                f"log: {listed(ids) or 'none'}; now {left} for {label}, at most {self.p['max_deferred']} allowed{gone}")

    def _why(self, transport: Transport, ids: Sequence[str], since: int) -> str:
        """For each flushed id not Saved: its last delay reason in the queue, or its last status in the log."""
        read = queue.read(transport, self.p["container"])
        reasons = {m.queue_id: m.reason() for m in read.messages}
        done = queue.deliveries(queue.log_since(transport, self.p["container"], since), ids)
        said = []
        for qid in ids:
            if qid in reasons:
                said.append(f"{qid}: still queued: {reasons[qid]}")
            elif not any(d.saved for d in done.get(qid, [])):
                last = done[qid][-1] if qid in done else None
                said.append(f"{qid}: " + (f"{last.status} ({last.said})" if last else "no status line in the log"))
        said = said[:SHOWN]
        return f"not delivered: {'; '.join(said)}" if said else ""

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        return f"nothing to undo: this step {NO_FILE} (a delivered mail is not un-sent)"
