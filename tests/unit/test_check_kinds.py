"""smtp-check and log-check: the read-only kinds a runbook proves its fix with."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from remediate.contract.plan import NOTHING_APPLIED
from remediate.engine.context import Context, TransportPool
from remediate.errors import InputError, StepError
from remediate.inputs.inventory import Host
from remediate.kinds import StepSpec
from remediate.kinds.log_check import LogCheck
from remediate.kinds.smtp_check import SmtpCheck
from remediate.transport.local import LocalTransport

from .fakes import FakeTransport

ALLOWED = "127.0.0.25"


@pytest.fixture()
def relay() -> Iterator[dict[str, Any]]:
    """A tiny SMTP server on loopback that relays only for ALLOWED, as Postfix's mynetworks would."""
    server = socket.socket()
    server.bind(("127.0.0.21", 0))
    server.listen()
    seen: dict[str, Any] = {"port": server.getsockname()[1], "peers": []}

    def serve() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            seen["peers"].append(peer[0])
            with conn, conn.makefile("rwb") as f:
                f.write(b"220 mx ESMTP\r\n")
                f.flush()
                for line in f:
                    verb = line.split(b" ")[0].split(b":")[0].strip().upper()
                    reply = {b"EHLO": b"250-mx\r\n250 PIPELINING\r\n", b"QUIT": b"221 bye\r\n"}.get(verb, b"250 ok\r\n")
                    if verb == b"RCPT" and peer[0] != ALLOWED:
                        reply = b"454 4.7.1 <a@example.net>: Relay access denied\r\n"
                    f.write(reply)
                    f.flush()
                    if verb == b"QUIT":
                        break

    threading.Thread(target=serve, daemon=True).start()
    yield seen
    server.close()


def context(transport: Any) -> Context:
    return Context(host=Host(name="gw", address="x"), vars={}, run_id="R", pool=TransportPool(None, lambda h: transport))


def smtp_check(port: int, **params: Any) -> SmtpCheck:
    return SmtpCheck(StepSpec(id="relay-allowed", kind="smtp-check", target="host", where="book.yml:9", params={
        "address": "127.0.0.21", "port": port, "sender": "app@example.com", "recipient": "a@example.net",
        "timeout": 1, **params}))


def test_smtp_check_connects_from_the_client_address_and_proves_the_reply(relay: dict[str, Any]) -> None:
    ctx = context(LocalTransport(name="gw"))
    step = smtp_check(relay["port"], source=ALLOWED)
    plan = step.plan(ctx)
    assert "now: 250 ok" in plan.reason and not plan.changed
    assert "RCPT TO:<a@example.net> from 127.0.0.25" in step.verify(ctx, plan, NOTHING_APPLIED)
    assert relay["peers"] == [ALLOWED, ALLOWED]


def test_smtp_check_fails_on_the_relay_reject_and_says_it(relay: dict[str, Any]) -> None:
    ctx = context(LocalTransport(name="gw"))
    step = smtp_check(relay["port"], source="127.0.0.26")
    plan = step.plan(ctx)
    assert "now: 454 4.7.1 <a@example.net>: Relay access denied" in plan.reason
    with pytest.raises(StepError, match="expected 250, got 454 4.7.1"):
        step.verify(ctx, plan, NOTHING_APPLIED)


def test_smtp_check_names_an_address_the_host_cannot_connect_from(relay: dict[str, Any]) -> None:
    step = smtp_check(relay["port"], source="192.0.2.7")  # TEST-NET-1: never local, never contacted
    with pytest.raises(StepError, match="cannot connect from 192.0.2.7"):
        step.verify(context(LocalTransport(name="gw")), step.plan(context(LocalTransport(name="gw"))), NOTHING_APPLIED)


@pytest.mark.parametrize(("params", "words"), [
    ({"source": "10.0.0.0/24"}, "source must be one IP address"),
    ({"recipient": "a@b>\r\nDATA"}, "is not a mail address"),
    ({"helo": "x y"}, "helo must be a host name"),
    ({"expect": 99}, "expect must be an SMTP reply code"),
])
def test_smtp_check_refuses_bad_params_citing_the_line(params: dict[str, Any], words: str) -> None:
    with pytest.raises(InputError, match=f"book.yml:9: step 'relay-allowed'.*{words}"):
        smtp_check(25, **params)


LOG = ("Nov 29 10:00:01 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from unknown[127.0.0.25]: 454 4.7.1 <a@example.net>: "
       "Relay access denied; from=<app@example.com> to=<a@example.net> proto=ESMTP helo=<app>\n"
       "Nov 29 10:00:02 mx postfix/smtpd[7]: disconnect from unknown[127.0.0.25]\n")


def log_check(t: FakeTransport, **params: Any) -> tuple[LogCheck, Context]:
    t.expect(["docker", "inspect", "--type", "container", "--", "mx"], (0, '[{"State": {"Running": true}}]', ""))
    t.expect(["docker", "logs", "--tail", "2000", "--", "mx"], (0, LOG, ""))
    step = LogCheck(StepSpec(id="no-rejects", kind="log-check", target="host", where="book.yml:20",
                             params={"container": "mx", "timeout": 1, **params}))
    return step, context(t)


def test_log_check_fails_on_a_line_that_must_not_appear_and_shows_it() -> None:
    step, ctx = log_check(FakeTransport(name="gw"), absent=[r"Relay access denied"])
    plan = step.plan(ctx)
    assert "now 1 line(s) match" in plan.reason
    with pytest.raises(StepError, match=r"1 line\(s\) of mx's log match .* RCPT from unknown\[127.0.0.25\]"):
        step.verify(ctx, plan, NOTHING_APPLIED)


def test_log_check_passes_when_absent_lines_are_absent_and_present_ones_present() -> None:
    step, ctx = log_check(FakeTransport(name="gw"), absent=["status=bounced"], present=[r"disconnect from \S+\[127"])
    said = step.verify(ctx, step.plan(ctx), NOTHING_APPLIED)
    assert "seen: Nov 29 10:00:02" in said and "no line matches 'status=bounced'" in said


def test_log_check_refuses_a_bad_regex() -> None:
    with pytest.raises(InputError, match=r"book.yml:20: step 'no-rejects': absent: '\(' is not a regular expression"):
        log_check(FakeTransport(name="gw"), absent=["("])
