"""Diagnose check types as a playbook declares them: parsing with file:line, and verdicts from a scripted host."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from remediate.diagnostics import diagnose, logscan
from remediate.errors import InputError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host

from .fakes import FakeTransport

REJECT = ("Nov 29 10:00:0{n} mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from unknown[{ip}]: 454 4.7.1 "
          "<a@example.net>: Relay access denied; from=<app@example.com> to=<a@example.net> proto=ESMTP helo=<app>")
BOOK = """\
name: demo
vars:
  client: ~
steps:
  - id: noop
    kind: command
    params: {command: "true", unless: "true"}
diagnose:
  - id: denied
    check: log-signature
    fix: demo
    params:
      container: mx
      signatures:
        - {name: relay-denied, pattern: Relay access denied, lines: reject, meaning: refused relaying}
  - id: covered
    check: postfix-setting
    fix: demo
    params:
      container: mx
      compose_path: /srv/docker-compose.yml
      service: postfix
      setting: mynetworks
      expect: {covers: ["{{ client }}"]}
      covers_rejected: relay-denied
      suggest: {client: "{client}"}
"""
COMPOSE = "services:\n  postfix:\n    image: boky/postfix\n    environment:\n      - POSTFIX_mynetworks=127.0.0.0/29\n"


def host_with(log: str, mynetworks: str = "127.0.0.0/29") -> FakeTransport:
    t = FakeTransport(name="gw")
    t.put("/srv/docker-compose.yml", COMPOSE)
    t.expect(["docker", "inspect", "--type", "container", "--", "mx"],
             (0, json.dumps([{"State": {"Running": True, "Status": "running"}}]), ""))
    t.expect(["docker", "logs", "--tail", "2000", "--", "mx"], (0, log, ""))
    t.expect(["docker", "exec", "--", "mx", "postconf", "-h", "mynetworks"], (0, mynetworks + "\n", ""))
    return t


def checks(tmp_path: Path, text: str = BOOK, **extra: Any) -> list[Any]:
    path = tmp_path / "book.yml"
    path.write_text(text)
    return playbook.load(path).checks(Host(name="gw", address="x"), extra)


def test_rejects_are_counted_with_their_clients_and_the_fix_is_proposed_with_the_client(tmp_path: Path) -> None:
    log = "\n".join(REJECT.format(n=n, ip=ip) for n, ip in ((1, "127.0.0.25"), (2, "127.0.0.25"), (3, "127.0.0.2")))
    found = diagnose.run(checks(tmp_path), host_with(log))
    denied, covered = found.checks
    assert denied.ok is False and denied.fix == "demo"
    assert "3 x relay-denied (refused relaying) from Nov 29 10:00:01 to Nov 29 10:00:03" in denied.evidence
    assert "clients 127.0.0.25 (2), 127.0.0.2 (1)" in denied.evidence
    assert covered.ok is False and "does not cover 127.0.0.25 (seen in the rejects)" in covered.evidence
    assert covered.suggest == {"client": "127.0.0.25"}  # 127.0.0.2 is inside 127.0.0.0/29
    assert found.signatures[0].clients == {"127.0.0.25": 2, "127.0.0.2": 1}


def test_a_covered_client_and_a_quiet_log_are_healthy(tmp_path: Path) -> None:
    found = diagnose.run(checks(tmp_path, client="127.0.0.25"), host_with("", "127.0.0.0/29, 127.0.0.24/30"))
    assert [(c.ok, c.fix) for c in found.checks] == [(True, None), (True, None)]
    assert "covers 127.0.0.25" in found.checks[1].evidence


def test_nothing_to_check_is_undecided_not_healthy(tmp_path: Path) -> None:
    found = diagnose.run(checks(tmp_path), host_with(""))
    assert found.checks[1].ok is None and "no client to check" in found.checks[1].evidence


@pytest.mark.parametrize(("change", "line", "words"), [
    (("check: log-signature", "check: log-signatures"), 10, "check 'denied' has unknown type 'log-signatures'"),
    (("expect: {covers", "expect: {within"), 19, "expect must hold exactly one of"),
    (("lines: reject", "lines: rejects"), 12, "lines must be one of delivery, reject, any"),
    (("pattern: Relay access denied", "pattern: '('"), 12, "is not a regular expression"),
    (("fix: demo\n    params:\n      container: mx\n      signatures",
      "fix: demo\n    params:\n      container: mx\n      signature"), 14, "has no parameter 'signature'"),
    (("id: covered", "id: denied"), 16, "check id 'denied' is used twice"),
])
def test_bad_diagnose_sections_cite_the_line(tmp_path: Path, change: tuple[str, str], line: int, words: str) -> None:
    with pytest.raises(InputError) as e:
        checks(tmp_path, BOOK.replace(*change))
    assert f"book.yml:{line}:" in str(e.value) and words in str(e.value)


def test_delivery_signatures_skip_sent_mail_and_reports() -> None:
    bounce = ("Nov 28 12:01:34 gw postfix/smtp[1]: CC3: to=<t@a.com>, relay=x[1.2.3.4]:2525, dsn=5.5.1, "
              "status=bounced (host x said: 500 5.5.1 Unknown command)")
    pattern = logscan.Pattern("mismatch", re.compile("500 5.5.1"), "m")
    assert [s.count for s in logscan.scan([bounce, bounce.replace("status=bounced", "status=sent")], [pattern])] == [1]
