"""queue-flush at the transport seam: a scripted gateway whose Postfix holds deferred mail for its LMTP next hop, and
delivers it (or not) when flushed; the next hop a scripted listener, or refusing."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest
from click.testing import CliRunner

from remediate.cli import main as cli
from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError, StepError
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec
from remediate.kinds.queue_flush import QueueFlush
from remediate.probes import queue

from .fakes import FakeTransport
from .test_diagnose import Listener
from .test_queue_check import NOW, REFUSED, message

CONTAINER = "mx-postfix"
READ = ["docker", "exec", "--", CONTAINER, "sh", "-c", queue.READ]
FLUSH = ["docker", "exec", "--", CONTAINER, "postqueue", "-f"]
LOG = ["docker", "logs", "--since", str(NOW), "--", CONTAINER]
IDS = ("4F2A1B2C3D", "5A1B2C3D4E", "6B2C3D4E5F")
DOVECOT = Listener(b"220 mbox Dovecot ready.\r\n", {b"LHLO": b"250-mbox\r\n250 PIPELINING\r\n"})


def saved(qid: str, rcpt: str = "user@example.com") -> str:
    return (f"Dec 06 09:00:01 mx postfix/lmtp[81]: {qid}: to=<{rcpt}>, relay=127.0.0.28[127.0.0.28]:2525, "
            f"delay=300, delays=300/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 <{rcpt}> uJBz{qid[:2]} Saved)")


class Gateway(FakeTransport):
    """Postfix holding `held` deferred; a flush delivers those in `delivers` (a Saved line each) and leaves the rest."""

    def __init__(self, held: list[str], hop: Any = DOVECOT, delivers: tuple[str, ...] = IDS,
                 outcome: str = "sent", silent: tuple[str, ...] = ()) -> None:
        super().__init__(name="mx")
        self.held, self.hop, self.log = list(held), hop, [f"Dec 06 08:55:00 mx postfix/qmgr[50]: {IDS[0]}: old line"]
        self.clock, self.dialed = NOW, list[tuple[str, int]]()
        self.delivers, self.outcome, self.silent = delivers, outcome, silent
        self.expect(["docker", "inspect", "--type", "container", "--", CONTAINER],
                    (0, json.dumps([{"State": {"Running": True, "Status": "running"}}]), ""))
        self.expect(READ, lambda _: (0, f"{self.clock}\n" + "".join(line + "\n" for line in self.held), ""))
        self.expect(FLUSH, lambda _: self.flush())
        # --since the apply's clock: the lines logged before it (08:55) are not given
        self.expect(LOG, lambda _: (0, "".join(line + "\n" for line in self.log if " 08:55:" not in line), ""))
        self.expect(["docker", "logs", "--tail", "2000", "--", CONTAINER],
                    lambda _: (0, "".join(line + "\n" for line in self.log), ""))
        for qid in IDS:
            self.expect(["docker", "exec", "--", CONTAINER, "postqueue", "-i", qid], lambda _, q=qid: self.flush(q))

    def flush(self, only: str | None = None) -> tuple[int, str, str]:
        for line in list(self.held):
            qid = json.loads(line)["queue_id"]
            if qid in self.delivers and only in (None, qid):
                self.held.remove(line)
                if qid in self.silent:  # gone from the queue, no line in the log (postsuper -d, say)
                    continue
                self.log.append(saved(qid) if self.outcome == "sent" else saved(qid).replace(
                    "status=sent (250 2.0.0 <user@example.com> uJBz" + qid[:2] + " Saved)",
                    "status=bounced (host 127.0.0.28[127.0.0.28] said: 550 5.1.1 <user@example.com> User unknown)"))
        return 0, "", ""

    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        self.dialed.append((host, port))
        if isinstance(self.hop, BaseException):
            raise self.hop
        return Listener(self.hop.greeting, self.hop.replies)

    def flushed(self) -> bool:
        return any("postqueue -f" in c or "postqueue -i" in c for c in self.ran)


def stuck(*ids: str, reason: str = REFUSED) -> list[str]:
    return [message(qid, 252 - 60 * n, reason) for n, qid in enumerate(ids or IDS)]


def step(**params: Any) -> QueueFlush:
    given = {"container": CONTAINER, "next_hop_address": "127.0.0.28", "next_hop_port": 2525, "timeout": 1, **params}
    return QueueFlush(StepSpec(id="flush", kind="queue-flush", target="host", params=given, where="book.yml:30"))


def context(host: Gateway) -> Context:
    return Context(host=Host(name="mx", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: host))


def test_the_plan_lists_the_ids_runs_postqueue_f_and_changes_no_file() -> None:
    host = Gateway(stuck())
    plan = step().plan(context(host))
    assert plan.changed and not plan.files
    assert plan.commands == ("docker exec -- mx-postfix postqueue -f",)
    assert plan.reason.startswith("mx-postfix on mx: 3 deferred (oldest queued 2026-12-06 08:45:48Z): 127.0.0.28:2525 3 "
                                  "(Connection refused); next hop 127.0.0.28:2525 (lmtp) answers LHLO")
    assert f"flush 3 message(s): {', '.join(IDS)}" in plan.reason and "changes no file" in plan.reason
    assert plan.outputs == {"queue_ids": list(IDS)}
    assert not host.flushed()


def test_the_plan_reads_the_same_a_minute_later_and_in_another_spool_order() -> None:
    """A plan is read later (a saved plan, serve's approval page), and its data is its identity: neither an age nor
    the order postqueue happens to list the spool in may change it while the queue holds the same mail."""
    host = Gateway(stuck())
    first = step().plan(context(host))
    host.clock, host.held = NOW + 61, host.held[::-1]
    assert step().plan(context(host)) == first
    assert "oldest queued 2026-12-06 08:45:48Z" in first.reason


def test_nothing_deferred_above_max_deferred_is_no_change() -> None:
    host = Gateway(stuck(IDS[0]))
    plan = step(max_deferred=1).plan(context(host))
    assert not plan.changed and "at most 1 allowed: nothing to flush" in plan.reason
    assert not step().plan(context(Gateway([]))).changed


def test_the_plan_refuses_while_the_next_hop_does_not_answer_and_nothing_is_flushed() -> None:
    host = Gateway(stuck(), hop=ConnectionRefusedError("[Errno 111] Connection refused"))
    with pytest.raises(StepError, match=r"refusing to flush: next hop 127\.0\.0\.28:2525 \(lmtp\) does not answer: "
                                        r"\[127\.0\.0\.28\]:2525 connection refused .*; start it first") as refused:
        step().plan(context(host))
    assert "would only defer the mail again" in str(refused.value)
    assert not host.flushed() and len(host.held) == 3


def test_a_hop_that_greets_but_refuses_lhlo_is_not_answering() -> None:
    host = Gateway(stuck(), hop=Listener(b"220 mx ESMTP Postfix\r\n", {b"LHLO": b"502 5.5.2 Error: command not recognized\r\n"}))
    with pytest.raises(StepError, match="answers LHLO with '502 5.5.2 Error: command not recognized'"):
        step().plan(context(host))


def test_apply_flushes_and_verify_sees_every_id_saved() -> None:
    host = Gateway(stuck())
    ctx = context(host)
    kind = step()
    plan = kind.plan(ctx)
    applied = kind.apply(ctx, plan)
    assert applied.data["queue_ids"] == list(IDS) and applied.data["since"] == NOW
    proof = kind.verify(ctx, plan, applied)
    assert proof.startswith(f"3 flushed message(s) delivered, each recipient 'status=sent (... Saved)' from "
                            f"127.0.0.28:2525 in mx-postfix's log: {', '.join(IDS)}; now 0 deferred for 127.0.0.28:2525 "
                            "besides, at most 0 allowed")
    assert applied.data["recipients"] == {qid: ["user@example.com"] for qid in IDS}
    assert host.ran.count(shlex.join(FLUSH)) == 1
    assert not kind.plan(ctx).changed  # again: nothing to do
    assert "nothing to undo" in kind.rollback(ctx, {}) and "not un-sent" in kind.rollback(ctx, {})


def test_mail_that_stays_deferred_fails_verify_naming_the_id_and_its_reason() -> None:
    host = Gateway(stuck(), delivers=IDS[:2])
    ctx = context(host)
    kind = step()
    plan = kind.plan(ctx)
    with pytest.raises(StepError) as failed:
        kind.verify(ctx, plan, kind.apply(ctx, plan))
    said = str(failed.value)
    assert "every recipient of each flushed message Saved in mx-postfix's log within 1 s" in said
    assert f"no 'status=sent ... Saved' from 127.0.0.28:2525 yet for some recipient of {IDS[2]}" in said
    assert f"not delivered: {IDS[2]} to <user@example.com>: still queued: {REFUSED}" in said


def test_a_bounce_of_a_flushed_message_fails_at_once_with_the_reply() -> None:
    host = Gateway(stuck(), outcome="bounced")
    ctx = context(host)
    kind = step(timeout=60)
    plan = kind.plan(ctx)
    with pytest.raises(StepError, match=f"flushed mail was not delivered: {IDS[0]} to <user@example.com>: bounced "
                                        r"\(host 127\.0\.0\.28\[127\.0\.0\.28\] said: 550 5\.1\.1"):
        kind.verify(ctx, plan, kind.apply(ctx, plan))


def test_the_hop_dropping_between_plan_and_apply_flushes_nothing() -> None:
    host = Gateway(stuck())
    ctx = context(host)
    kind = step()
    plan = kind.plan(ctx)
    host.hop = ConnectionRefusedError("refused")
    with pytest.raises(StepError, match="refusing to flush"):
        kind.apply(ctx, plan)
    assert not host.flushed()


def test_the_next_hop_must_be_given_and_no_other_host_is_greeted() -> None:
    """Taken from the delay reasons, the hop was whatever a stranger's MX said: remediate greeted it from the gateway."""
    host = Gateway([message(IDS[0], 30, "connect to mx.evil.example[192.0.2.66]:25: Connection timed out")])
    for given in ({"next_hop_address": ""}, {"next_hop_port": None}):
        with pytest.raises(InputError, match=r"book.yml:30: step 'flush'.*next_hop_"):
            step(**given).plan(context(host))
    assert step().plan(context(host)).changed is False
    assert host.dialed == []


def test_flush_ids_flushes_each_planned_message_alone() -> None:
    host = Gateway(stuck())
    ctx = context(host)
    kind = step(flush="ids")
    plan = kind.plan(ctx)
    assert plan.commands == tuple(f"docker exec -- mx-postfix postqueue -i {qid}" for qid in IDS)
    kind.verify(ctx, plan, kind.apply(ctx, plan))
    assert shlex.join(FLUSH) not in host.ran


def test_flush_ids_never_flushes_a_message_the_plan_did_not_list() -> None:
    """A mail deferred after the plan was reviewed is not flushed by `flush: ids`: each `postqueue -i` run is one
    the plan showed; one planned message gone meanwhile is said, not flushed."""
    host = Gateway(stuck(IDS[0], IDS[1]))
    ctx = context(host)
    kind = step(flush="ids")  # max_deferred 0: the message deferred since is not held against the flush
    plan = kind.plan(ctx)
    host.held = stuck(IDS[1], IDS[2])  # IDS[0] left the queue, IDS[2] was deferred since the plan
    applied = kind.apply(ctx, plan)
    flushes = [c for c in host.ran if "postqueue -i" in c]
    assert flushes == [f"docker exec -- mx-postfix postqueue -i {IDS[1]}"] and set(flushes) <= set(plan.commands)
    assert applied.data["queue_ids"] == [IDS[1]] and applied.data["gone"] == [IDS[0]]
    proof = kind.verify(ctx, plan, applied)
    assert f"1 deferred after the plan left for a plan of their own: {IDS[2]}" in proof, proof


def test_smtp_next_hops_are_greeted_with_ehlo() -> None:
    host = Gateway(stuck(), hop=Listener(b"220 relay ESMTP\r\n", {b"EHLO": b"250-relay\r\n250 SIZE\r\n"}))
    assert "answers EHLO" in step(next_hop_protocol="smtp").plan(context(host)).reason


def test_a_saved_line_from_before_the_apply_proves_nothing() -> None:
    """Short queue ids are reused: an old 'Saved' line for the same id must not stand for this delivery."""
    host = Gateway(stuck(), silent=IDS[:1])
    host.log.append(saved(IDS[0]).replace("09:00:01", "08:55:01"))
    ctx = context(host)
    kind = step()
    plan = kind.plan(ctx)
    with pytest.raises(StepError, match=f"Saved' from 127.0.0.28:2525 yet for some recipient of {IDS[0]}; not delivered: {IDS[0]} to "
                                        "<user@example.com>: no status line for it in the log"):
        kind.verify(ctx, plan, kind.apply(ctx, plan))


@pytest.mark.parametrize(("params", "error"), [
    ({"next_hop_port": 0}, "next_hop_port: 0 is not a port number"),
    ({"next_hop_address": ""}, "next_hop_address: '' is not a hostname"),
    ({"next_hop_address": "bad host"}, "next_hop_address: 'bad host' is not a hostname"),
    ({"next_hop_protocol": "imap"}, "next_hop_protocol must be lmtp or smtp"),
    ({"flush": "some"}, "flush must be all or ids"),
    ({"max_deferred": -1}, "max_deferred must be 0 or more"),
    ({"timeout": 0}, "timeout must be 1 or more"),
    ({"container": "-it"}, "container: '-it' is not a docker container name"),
])
def test_bad_params_are_refused_with_the_place(params: dict[str, Any], error: str) -> None:
    with pytest.raises(InputError, match=f"book.yml:30: step 'flush': {error}"):
        step(**params)


@pytest.mark.parametrize("missing", ["next_hop_address", "next_hop_port"])
def test_the_next_hop_is_required(missing: str) -> None:
    given = {"container": CONTAINER, "next_hop_address": "127.0.0.28", "next_hop_port": 2525}
    del given[missing]
    with pytest.raises(InputError, match=f"book.yml:30: step 'flush' .*needs the parameter '{missing}'"):
        QueueFlush(StepSpec(id="flush", kind="queue-flush", target="host", params=given, where="book.yml:30"))


def test_remediate_kinds_and_checks_show_them() -> None:
    kinds = CliRunner().invoke(cli.cli, ["kinds"]).output
    assert re.search(r"^queue-flush\s+Flush Postfix's deferred mail once its next hop answers", kinds, re.M), kinds
    checks = CliRunner().invoke(cli.cli, ["checks"]).output
    assert re.search(r"^mail-queue\s+Postfix's queue \(deferred by default\) holds at most max_deferred", checks, re.M)


def mail(qid: str, *recipients: tuple[str, str]) -> str:
    """A deferred message for several recipients, each with its delay reason."""
    return json.dumps({"queue_name": "deferred", "queue_id": qid, "arrival_time": NOW - 200, "sender": "app@example.com",
                       "recipients": [{"address": a, "delay_reason": r} for a, r in recipients]})


def bounce(qid: str, rcpt: str, said: str) -> str:
    return saved(qid, rcpt).replace("dsn=2.0.0", "dsn=5.1.1").split(", status=")[0] + f", status=bounced ({said})"


def run(host: Gateway, **params: Any) -> str:
    """plan, apply, verify: what verify proves (a StepError when it refuses)."""
    ctx, kind = context(host), step(**params)
    plan = kind.plan(ctx)
    return kind.verify(ctx, plan, kind.apply(ctx, plan))


def flushing(host: Gateway, *lines: str, keep: tuple[str, ...] = ()) -> Gateway:
    """On the flush, the queue keeps only the messages `keep` and Postfix logs `lines`."""
    def flush(only: str | None = None) -> tuple[int, str, str]:
        host.held = [m for m in host.held if json.loads(m)["queue_id"] in keep]
        host.log.extend(lines)
        return 0, "", ""
    host.flush = flush  # type: ignore[method-assign]
    return host


NOSUCH = "host 127.0.0.28[127.0.0.28] said: 550 5.1.1 <nosuch@example.com> User doesn't exist (in reply to RCPT TO command)"


def test_one_recipient_bounced_fails_verify_though_the_other_was_saved() -> None:
    """Dovecot rejects one recipient at RCPT (logged first) and Saves the other after DATA; the message leaves the
    queue. Judged by its last line, or by any recipient's Saved, it was 'delivered'."""
    host = flushing(Gateway([mail(IDS[0], ("nosuch@example.com", REFUSED), ("user@example.com", REFUSED))]),
                    bounce(IDS[0], "nosuch@example.com", NOSUCH), saved(IDS[0]))
    with pytest.raises(StepError, match=f"flushed mail was not delivered: {IDS[0]} to <nosuch@example.com>: bounced "
                                        r"\(host 127\.0\.0\.28\[127\.0\.0\.28\] said: 550 5\.1\.1 <nosuch@example\.com> "
                                        "User doesn't exist"):
        run(host, timeout=60)


def test_every_recipient_must_be_saved_not_one_of_them() -> None:
    host = flushing(Gateway([mail(IDS[0], ("a@example.com", REFUSED), ("user@example.com", REFUSED))]), saved(IDS[0]))
    with pytest.raises(StepError, match=f"not delivered: {IDS[0]} to <a@example.com>: no status line for it in the log"):
        run(host)
    both = flushing(Gateway([mail(IDS[0], ("a@example.com", REFUSED), ("user@example.com", REFUSED))]),
                    saved(IDS[0], "a@example.com"), saved(IDS[0]))
    assert run(both).startswith("1 flushed message(s) delivered, each recipient 'status=sent (... Saved)'")


def test_a_bounced_message_is_not_proved_saved_by_a_message_id_logged_after_it() -> None:
    """A mail arriving meanwhile carries a Message-ID that reads as the flushed message's Saved line."""
    forged = (f"Dec 06 09:00:02 mx postfix/cleanup[77]: {IDS[1]}: message-id=x postfix/lmtp[1]: {IDS[0]}: "
              "to=<user@example.com>, relay=127.0.0.28[127.0.0.28]:2525, delay=1, delays=1/0/0/0, dsn=2.0.0, "
              "status=sent (250 2.0.0 Saved)")
    host = flushing(Gateway(stuck(IDS[0])), bounce(IDS[0], "user@example.com", "host 127.0.0.28[127.0.0.28] said: "
                                                   "552 5.2.2 Quota exceeded (in reply to end of DATA command)"), forged)
    with pytest.raises(StepError, match=f"not delivered: {IDS[0]} to <user@example.com>: bounced"):
        run(host, timeout=60)
    alone = flushing(Gateway(stuck(IDS[0])), forged)
    with pytest.raises(StepError, match="no status line for it in the log"):
        run(alone)


def test_a_message_to_a_long_address_is_saved() -> None:
    """Dovecot's reply quotes the recipient: cut at 160 characters before the test, it never ended in 'Saved'."""
    rcpt = "test+" + "a" * 120 + "@example.com"
    host = flushing(Gateway([mail(IDS[0], (rcpt, REFUSED))]), saved(IDS[0], rcpt))
    assert run(host).startswith("1 flushed message(s) delivered")


def test_an_expired_message_fails_verify_at_once_naming_the_expiry() -> None:
    expired = f"Dec 06 09:00:01 mx postfix/qmgr[50]: {IDS[0]}: from=<app@example.com>, status=expired, returned to sender"
    host = flushing(Gateway(stuck(IDS[0])), saved(IDS[0]).replace("status=sent (250 2.0.0 <user@example.com> uJBz4F "
                                                                  "Saved)", f"status=deferred ({REFUSED})"), expired)
    with pytest.raises(StepError, match=f"flushed mail was not delivered: {IDS[0]}: expired \\(returned to sender\\)"):
        run(host, timeout=60)


def test_a_next_hop_given_by_name_finds_the_mail_waiting_for_it() -> None:
    """relay_transport = lmtp:[dovecot]:2525: Postfix writes 'dovecot[127.0.0.28]:2525' in the reasons and the log."""
    reason = "connect to dovecot[127.0.0.28]:2525: Connection refused"
    host = Gateway(stuck(reason=reason))
    plan = step(next_hop_address="DoveCot").plan(context(host))
    assert plan.changed and plan.data["queue_ids"] == list(IDS), plan.reason
    host = flushing(Gateway(stuck(reason=reason)), *(saved(q).replace("127.0.0.28[", "dovecot[") for q in IDS))
    assert run(host, next_hop_address="dovecot").startswith("3 flushed message(s) delivered")


def test_mail_the_hop_answered_and_deferred_itself_is_neither_flushed_nor_counted() -> None:
    full = "host 127.0.0.28[127.0.0.28] said: 452 4.2.2 <user@example.com> Quota exceeded (in reply to end of DATA command)"
    host = Gateway([*stuck(*IDS[:2]), message(IDS[2], 30, full)])
    plan = step().plan(context(host))
    assert plan.data["queue_ids"] == list(IDS[:2])
    assert "1 of them the hop answers and defers itself (a 4xx reply): a flush will not deliver it" in plan.reason
    assert run(host, flush="ids").startswith("2 flushed message(s) delivered")
    assert f"postqueue -i {IDS[2]}" not in " ".join(host.ran)
    only = step().plan(context(Gateway([message(IDS[2], 30, full)])))
    assert not only.changed and "0 waiting for the hop to be reached, at most 0 allowed: nothing to flush" in only.reason


def test_max_deferred_allows_new_mail_deferred_meanwhile_but_every_flushed_message_is_saved() -> None:
    """max_deferred's help said 'the most messages that may still wait for the hop afterwards', but verify (rightly)
    wants every flushed message Saved: the help now says what the code does."""
    host = flushing(Gateway(stuck(*IDS[:2])), saved(IDS[0]), saved(IDS[1]))
    ctx, kind = context(host), step(max_deferred=1)
    plan = kind.plan(ctx)
    applied = kind.apply(ctx, plan)
    host.held.append(message(IDS[2], 5))  # new mail, deferred while verify waits
    assert "now 1 deferred (oldest 5s): 127.0.0.28:2525 1" in kind.verify(ctx, plan, applied)
    stays = flushing(Gateway(stuck(*IDS[:2])), saved(IDS[0]), keep=IDS[1:2])
    with pytest.raises(StepError, match=f"some recipient of {IDS[1]}"):
        run(stays, max_deferred=1)
    said = QueueFlush.params["max_deferred"].help
    assert "every flushed message must be Saved" in said and "may still wait for the hop afterwards" not in said
