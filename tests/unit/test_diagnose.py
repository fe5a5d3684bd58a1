from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from remediate.diagnostics import logs, logscan, postfix
from remediate.errors import InputError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host

from .fakes import FakeTransport

BOUNCE = ("Nov 28 12:01:34 mx-gateway postfix/relay/smtp[12811]: CC303226352: to=<test@kuma8088.com>, "
          "relay=127.0.0.3[127.0.0.3]:2525, delay=0.06, delays=0.03/0.01/0.02/0, dsn=5.5.1, status=bounced "
          "(host 127.0.0.3[127.0.0.3] refused to talk to me: 500 5.5.1 Unknown command)")
SENT = ("Nov 28 12:05:00 mx-gateway postfix/lmtp[12904]: E6831226012: to=<test@kuma8088.com>, relay=127.0.0.3"
        "[127.0.0.3]:2525, delay=0.05, dsn=2.0.0, status=sent (250 2.0.0 <test@kuma8088.com> uJBz Saved)")
REFUSED = ("Nov 28 12:09:00 mx-gateway postfix/lmtp[13000]: AB12: to=<a@m8088.com>, relay=none, delay=0.1, "
           "dsn=4.4.1, status=deferred (connect to 127.0.0.3[127.0.0.3]:2526: Connection refused)")

#: The log signatures smtp-to-lmtp.yml declares, in its order.
PATTERNS = [p for c in playbook.load(playbook.locate("smtp-to-lmtp")).checks(Host(name="gw", address="x"), {})
            if isinstance(c, logs.LogSignature) for p in c.patterns]


def test_scan_counts_signatures_with_impact() -> None:
    second = BOUNCE.replace("12:01:34", "12:03:10").replace("CC303226352", "DD1").replace("test@kuma8088.com>", "x@m8088.com>")
    report = "Nov 28 12:01:34 mx-gateway postfix/qmgr[9]: EE1: from=<>, size=2337, nrcpt=1 (queue active)"
    report_bounce = BOUNCE.replace("CC303226352", "EE1")
    sigs = {s.name: s for s in logscan.scan([BOUNCE, SENT, second, REFUSED, "noise", report, report_bounce], PATTERNS, other_deferred=True)}
    mismatch = sigs["protocol-mismatch"]
    assert (mismatch.count, mismatch.first, mismatch.last) == (2, "Nov 28 12:01:34", "Nov 28 12:03:10")
    assert mismatch.bounced == {"CC303226352", "DD1"}
    assert dict(mismatch.domains) == {"kuma8088.com": 1, "m8088.com": 1}
    assert sigs["connection-refused"].count == 1 and not sigs["connection-refused"].bounced
    assert set(sigs) == {"protocol-mismatch", "connection-refused"}


@pytest.mark.parametrize(("relayhost", "transport", "expected"), [
    ("[127.0.0.11]:2525", "relay", ("smtp", "127.0.0.11", 2525)),
    ("", "lmtp:[127.0.0.11]:2525", ("lmtp", "127.0.0.11", 2525)),
    ("[a]:1", "lmtp:[b]:2", ("lmtp", "b", 2)),
    ("mx.example.com", "relay", ("smtp", "mx.example.com", 25)),
    ("", "relay", None),
    ("", "lmtp:inet:[127.0.0.11]:2525", ("lmtp", "127.0.0.11", 2525)),
])
def test_relay_target(relayhost: str, transport: str, expected: Any) -> None:
    assert postfix.relay_target(relayhost, transport) == expected


@dataclass
class Listener:
    """A scripted TCP peer: a greeting, then a reply per command."""

    greeting: bytes
    replies: dict[bytes, bytes]
    pending: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pending.append(self.greeting)

    def settimeout(self, timeout: float) -> None:
        pass

    def recv(self, size: int) -> bytes:
        return self.pending.pop(0) if self.pending else b""

    def sendall(self, data: bytes) -> None:
        verb = data.split()[0]
        self.pending.append(self.replies.get(verb, b"221 bye\r\n"))

    def close(self) -> None:
        pass


class ProbeTransport(FakeTransport):
    def __init__(self, outcome: Any) -> None:
        super().__init__(name="gw")
        self.outcome = outcome

    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


DOVECOT = Listener(b"220 dell Dovecot (Debian) ready.\r\n",
                   {b"EHLO": b"500 5.5.1 Unknown command\r\n", b"LHLO": b"250-dell\r\n250-8BITMIME\r\n250 PIPELINING\r\n"})
POSTFIX = Listener(b"220 mx ESMTP Postfix\r\n", {b"EHLO": b"250-mx\r\n250 SMTPUTF8\r\n"})


@pytest.mark.parametrize(("outcome", "verdict", "words"), [
    (DOVECOT, "lmtp", "LHLO accepted"),
    (POSTFIX, "smtp", "EHLO accepted"),
    (ConnectionRefusedError("refused"), "refused", "connection refused"),
    (TimeoutError("slow"), "filtered", "filtered"),
    (OSError("No route to host"), "unreachable", "No route to host"),
])
def test_probe_classifies_the_listener(outcome: Any, verdict: str, words: str) -> None:
    if isinstance(outcome, Listener):
        outcome = Listener(outcome.greeting, outcome.replies)
    result = postfix.probe(ProbeTransport(outcome), "127.0.0.11", 2525)
    assert result.verdict == verdict
    assert words in result.evidence


def test_a_check_that_cannot_read_its_compose_file_is_undecided_and_the_others_still_answer() -> None:
    """A service with extends: is refused as compose input (its environment comes partly from elsewhere): the check
    that reads it is undecided, naming why, and diagnose still answers the checks that do not."""
    from remediate.diagnostics import CheckSpec, diagnose
    from remediate.diagnostics.postfix import PostfixSetting

    t = FakeTransport(name="gw")
    t.put("/srv/mail/docker-compose.yml", "services:\n  base:\n    image: boky/postfix\n  postfix:\n    extends: base\n")
    t.put("/srv/other/docker-compose.yml", "services:\n  postfix:\n    environment:\n      POSTFIX_mynetworks: 10.0.0.0/8\n")
    t.expect(["docker", "inspect", "--type", "container", "--", "pf"], (1, "", "Error: No such object: pf\n"))

    def check(name: str, folder: str) -> PostfixSetting:
        return PostfixSetting(CheckSpec(name, "postfix-setting", {
            "container": "pf", "compose_path": f"/srv/{folder}/docker-compose.yml", "service": "postfix",
            "setting": "mynetworks", "expect": {"lacks": ["0.0.0.0/0"]}}))

    found = diagnose.run([check("extended", "mail"), check("plain", "other")], t).checks
    assert [(c.name, c.ok) for c in found] == [("extended", None), ("plain", True)]
    assert found[0].evidence.startswith("cannot be decided: /srv/mail/docker-compose.yml:5: service 'postfix' uses "
                                        "extends:")
    with pytest.raises(InputError, match="gw:/srv/typo/docker-compose.yml does not exist"):  # a wrong compose_dir
        diagnose.run([check("typo", "typo"), check("plain", "other")], t)  # is the inventory's mistake: it stops
