"""mail-queue and its probe at the transport seam: postqueue -j parsed (hostile lines refused with their number, never
a crash), next hops read from delay reasons, the evidence an operator reads at 3 a.m., and the next hop's probe."""

from __future__ import annotations

import json
from typing import Any

import pytest

from remediate.diagnostics import CheckSpec, Facts, Verdict
from remediate.diagnostics.queue import MailQueue
from remediate.errors import InputError
from remediate.probes import queue

from .fakes import FakeTransport
from .test_diagnose import Listener

NOW = 1_796_547_000
CONTAINER = "mx-postfix"
READ = ["docker", "exec", "--", CONTAINER, "sh", "-c", queue.READ]
REFUSED = "connect to 127.0.0.28[127.0.0.28]:2525: Connection refused"
DOVECOT = Listener(b"220 mbox Dovecot ready.\r\n", {b"LHLO": b"250-mbox\r\n250 PIPELINING\r\n"})


def message(qid: str, age: int, reason: str = REFUSED, queue_name: str = "deferred", **extra: Any) -> str:
    return json.dumps({"queue_name": queue_name, "queue_id": qid, "arrival_time": NOW - age, "message_size": 420,
                       "forced_expire": False, "sender": "app@example.com",
                       "recipients": [{"address": "user@example.com", "delay_reason": reason}], **extra})


STUCK = [message("4F2A1B2C3D", 252), message("5A1B2C3D4E", 90), message("6B2C3D4E5F", 30)]


class Host(FakeTransport):
    """A gateway whose Postfix container runs, and whose next hop is a scripted listener or refuses."""

    def __init__(self, lines: list[str], hop: Any = None, running: bool = True, exit_code: int = 0) -> None:
        super().__init__(name="mx")
        state = {"Running": running, "Status": "running" if running else "exited"}
        self.expect(["docker", "inspect", "--type", "container", "--", CONTAINER], (0, json.dumps([{"State": state}]), ""))
        self.expect(READ, (exit_code, f"{NOW}\n" + "".join(line + "\n" for line in lines),
                           "postqueue: fatal: Connection refused" if exit_code else ""))
        self.hop = hop

    def open_tcp(self, host: str, port: int, timeout: float) -> Any:
        if isinstance(self.hop, BaseException):
            raise self.hop
        return Listener(self.hop.greeting, self.hop.replies) if self.hop else super().open_tcp(host, port, timeout)


def check(**params: Any) -> MailQueue:
    return MailQueue(CheckSpec(id="deferred-queue", check="mail-queue", params={"container": CONTAINER, **params},
                               where="book.yml:40"))


def verdict(host: Host, **params: Any) -> Verdict | None:
    return check(**params).run(Facts(host, None))


def test_the_evidence_counts_by_next_hop_and_age_with_the_oldest() -> None:
    found = verdict(Host(STUCK))
    assert found is not None and found.ok is False and found.fixable
    assert found.evidence.startswith("3 deferred (oldest 4m12s): 127.0.0.28:2525 3 (Connection refused); ages <5m 3")
    assert "at most 0 allowed" in found.evidence


def test_mail_held_for_a_hop_that_does_not_answer_is_not_for_a_flush_to_fix() -> None:
    found = verdict(Host(STUCK, hop=ConnectionRefusedError("refused")), next_hop_address="127.0.0.28", next_hop_port=2525)
    assert found is not None and found.ok is False and not found.fixable
    assert "next hop 127.0.0.28:2525 (lmtp) does not answer: [127.0.0.28]:2525 connection refused" in found.evidence
    assert "start it first" in found.evidence


def test_once_the_hop_answers_lhlo_the_held_mail_is_a_finding_a_flush_fixes() -> None:
    found = verdict(Host(STUCK, hop=DOVECOT), next_hop_address="127.0.0.28", next_hop_port=2525)
    assert found is not None and found.ok is False and found.fixable
    assert "next hop 127.0.0.28:2525 (lmtp) answers LHLO: greets '220 mbox Dovecot ready.'" in found.evidence


def test_with_a_next_hop_only_its_mail_counts_and_the_rest_is_named() -> None:
    lines = [*STUCK[:1], message("7C3D4E5F6A", 7200, "host mx.example.org[192.0.2.7] said: 451 4.7.1 greylisted "
                                                     "(in reply to RCPT TO command)")]
    found = verdict(Host(lines, hop=DOVECOT), next_hop_address="127.0.0.28", next_hop_port=2525, max_deferred=1)
    assert found is not None and found.ok is True, found
    assert found.evidence.startswith("1 deferred (oldest 4m12s): 127.0.0.28:2525 1 (Connection refused)")
    assert "1 more deferred for other next hops (not counted)" in found.evidence
    whole = verdict(Host(lines))
    assert whole is not None and "mx.example.org[192.0.2.7] 1 (451 4.7.1 greylisted)" in whole.evidence
    assert "ages <5m 1, 1h-1d 1" in whole.evidence


def test_an_empty_queue_passes_and_a_missing_container_leaves_the_check_out() -> None:
    found = verdict(Host([]))
    assert found == Verdict(True, "0 deferred; at most 0 allowed")
    host = FakeTransport(name="mx")
    host.expect(["docker", "inspect", "--type", "container", "--", CONTAINER], (1, "", "Error: No such object"))
    assert check().run(Facts(host, None)) is None


def test_a_bad_json_line_is_undecided_with_its_line_number_not_a_crash() -> None:
    found = verdict(Host([STUCK[0], '{"queue_name": "deferred", "queue_id": "5A1B2', STUCK[2]]))
    assert found is not None and found.ok is None and not found.fixable
    assert "postqueue -j in mx-postfix on mx, line 3: not JSON" in found.evidence  # line 1 is the host's clock


@pytest.mark.parametrize("qid", ["4F2A1B; rm -rf /", "-f", "abcdef", "4F2A1B2C3D\n", "3Pb0yT6xD4a3wD", "", 42])
def test_a_queue_id_outside_postfixs_alphabet_is_refused_before_any_command(qid: Any) -> None:
    with pytest.raises(queue.Unreadable, match="is not a Postfix queue id"):
        queue.parse(message("4F2A1B2C3D", 1).replace('"4F2A1B2C3D"', json.dumps(qid)))
    with pytest.raises(queue.Unreadable):
        queue.flush_one(qid)


def test_long_queue_ids_are_read() -> None:
    [found] = queue.parse(message("3Pb0yT6xD4z3wD", 1))
    assert found.queue_id == "3Pb0yT6xD4z3wD"
    assert queue.flush_one(found.queue_id) == ["postqueue", "-i", "3Pb0yT6xD4z3wD"]


@pytest.mark.parametrize(("line", "why"), [
    ("[1, 2]", "a JSON list, not a message"),
    (message("4F2A1B2C3D", 1, queue_name="elsewhere"), "queue_name 'elsewhere' is none of"),
    (message("4F2A1B2C3D", 1, recipients="all"), "recipients a list"),
    (message("4F2A1B2C3D", 1, arrival_time="yesterday"), "arrival_time must be a number"),
])
def test_a_line_that_is_not_a_message_is_refused_with_its_number(line: str, why: str) -> None:
    with pytest.raises(queue.Unreadable, match=f"line 2: .*{why}"):
        queue.parse(STUCK[0] + "\n" + line)


@pytest.mark.parametrize(("reason", "label", "why"), [
    (REFUSED, "127.0.0.28:2525", "Connection refused"),
    ("delivery temporarily suspended: " + REFUSED, "127.0.0.28:2525", "Connection refused"),
    ("connect to mx.example.org[192.0.2.7]:25: Connection timed out", "mx.example.org[192.0.2.7]:25",
     "Connection timed out"),
    ("lost connection with 127.0.0.28[127.0.0.28] while receiving the initial server greeting", "127.0.0.28",
     "while receiving the initial server greeting"),
    ("Host or domain name not found. Name service error for name=nowhere.example type=MX: Host not found, try again",
     "other", "Host or domain name not found. Name service error for nam..."),
    ("host evil[192.0.2.9] said: 450 \x1b[31mred\x1b[0m", "evil[192.0.2.9]", "450 \\x1b[31mred\\x1b[0m"),
])
def test_the_next_hop_and_the_reason_are_read_from_the_delay_reason(reason: str, label: str, why: str) -> None:
    hop = queue.hop_of(reason)
    assert (hop.label, hop.why) == (label, why)


def test_ages_read_as_people_say_them() -> None:
    assert [queue.age(s) for s in (42, 252, 7380, 277200)] == ["42s", "4m12s", "2h03m", "3d05h"]


def test_postqueue_failing_is_undecided_with_what_it_said() -> None:
    found = verdict(Host([], exit_code=69))
    assert found is not None and found.ok is None
    assert "exited 69: postqueue: fatal: Connection refused" in found.evidence


def test_a_stopped_container_is_undecided() -> None:
    found = verdict(Host(STUCK, running=False))
    assert found == Verdict(None, "mx-postfix is exited: its queue cannot be read", fixable=False)


@pytest.mark.parametrize(("given", "reason"), [
    ("dovecot", "connect to dovecot[172.18.0.5]:24: Connection refused"),
    ("DoveCot.", "connect to dovecot[172.18.0.5]:24: Connection refused"),
    ("172.18.0.5", "connect to dovecot[172.18.0.5]:24: Connection refused"),
    ("2001:DB8::5", "connect to 2001:db8::5[2001:db8::5]:24: Connection refused"),
    ("[2001:db8:0::5]", "connect to 2001:db8::5[2001:db8::5]:24: Connection refused"),
])
def test_a_next_hop_given_by_name_or_in_capitals_counts_the_mail_waiting_for_it(given: str, reason: str) -> None:
    """relay_transport = lmtp:[dovecot]:24 (compose names the container): Postfix writes 'dovecot[172.18.0.5]:24'.
    Compared as exact strings, the check counted 0 and passed while the mail was stuck."""
    found = verdict(Host([message("4F2A1B2C3D", 60, reason)], hop=DOVECOT), next_hop_address=given, next_hop_port=24)
    assert found is not None and found.ok is False and found.fixable, found
    assert found.evidence.startswith("1 deferred"), found.evidence
    other = verdict(Host([message("4F2A1B2C3D", 60, reason)], hop=DOVECOT), next_hop_address=given, next_hop_port=25)
    assert other is not None and other.ok is True  # the same host on another port is another hop


def test_mail_the_hop_answered_and_deferred_itself_is_not_promised_to_a_flush() -> None:
    """'host X said: 452 4.2.2 ... Quota exceeded': the hop answers, and a flush would only defer it again."""
    full = ("host 127.0.0.28[127.0.0.28] said: 452 4.2.2 <user@example.com> Quota exceeded (mailbox for user is full) "
            "(in reply to end of DATA command)")
    found = verdict(Host([message("4F2A1B2C3D", 60, full)], hop=DOVECOT), next_hop_address="127.0.0.28",
                    next_hop_port=2525)
    assert found is not None and found.ok is False and not found.fixable, found
    assert found.evidence.startswith("1 deferred (oldest 1m00s): 127.0.0.28 1 (452 4.2.2 <user@example.com> Quota "
                                     "exceeded"), found.evidence
    assert found.evidence.endswith("1 of them the hop answers and defers itself (a 4xx reply): a flush will not "
                                   "deliver it"), found.evidence
    assert "a flush delivers it now" not in found.evidence
    mixed = verdict(Host([*STUCK, message("7C3D4E5F6A", 60, full)], hop=DOVECOT), next_hop_address="127.0.0.28",
                    next_hop_port=2525, max_deferred=1)
    assert mixed is not None and mixed.ok is False and mixed.fixable  # the flush leaves 1: allowed


@pytest.mark.parametrize("reason", [
    "connect to 127.0.0.28[127.0.0.28]:2525: Connection refused",
    "delivery temporarily suspended: connect to 127.0.0.28[127.0.0.28]:2525: Connection refused",
    "lost connection with 127.0.0.28[127.0.0.28] while receiving the initial server greeting",
    "conversation with 127.0.0.28[127.0.0.28] timed out while receiving the initial server greeting",
])
def test_a_hop_that_could_not_be_reached_is_a_flushs_to_fix(reason: str) -> None:
    [found] = queue.parse(message("4F2A1B2C3D", 1, reason))
    assert found.flushable("127.0.0.28", 2525) == ("user@example.com",)
    said = message("4F2A1B2C3D", 1, "host 127.0.0.28[127.0.0.28] said: 451 4.3.0 try later")
    assert queue.parse(said)[0].flushable("127.0.0.28", 2525) == ()


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000])
def test_deeply_nested_json_is_unreadable_with_its_line_not_a_crash(text: str) -> None:
    with pytest.raises(queue.Unreadable, match="line 2: not JSON"):
        queue.parse(f"{STUCK[0]}\n{text}")


@pytest.mark.parametrize("arrival", [10**20, -1])
def test_an_arrival_no_clock_shows_is_unreadable_not_a_crash(arrival: int) -> None:
    """time.gmtime() raised OverflowError on it where a plan names the oldest mail's arrival."""
    line = message("4F2A1B2C3D", 1).replace(f'"arrival_time": {NOW - 1}', f'"arrival_time": {arrival}')
    with pytest.raises(queue.Unreadable, match=f"line 1: queue 4F2A1B2C3D: arrival_time {arrival} is no time"):
        queue.parse(line)


def test_a_lone_surrogate_in_a_reason_or_an_address_is_written_out() -> None:
    """postqueue -j escapes as JSON: '\\ud800' decodes to a lone surrogate, which no UTF-8 text (a plan's identity,
    a journal) can hold."""
    line = message("4F2A1B2C3D", 1, "connect to x[a\ud800b]:2525: Connection refused").replace(
        "user@example.com", "u\\udfffser@example.com")
    [found] = queue.parse(line)
    assert found.recipients == (("u\\udfffser@example.com", "connect to x[a\\ud800b]:2525: Connection refused"),)
    assert queue.describe([found], NOW).encode("utf-8")


@pytest.mark.parametrize(("params", "error"), [
    ({"queue": "bounced"}, "queue must be one of deferred"),
    ({"next_hop_address": "127.0.0.28"}, "next_hop_address needs next_hop_port"),
    ({"next_hop_address": "not a host", "next_hop_port": 2525}, "next_hop_address: 'not a host' is not a hostname"),
    ({"next_hop_address": "127.0.0.28", "next_hop_port": 0}, "next_hop_port: 0 is not a port number"),
    ({"next_hop_protocol": "imap"}, "next_hop_protocol must be lmtp or smtp"),
    ({"max_deferred": -1}, "max_deferred must be 0 or more"),
    ({"container": "mx postfix"}, "container: 'mx postfix' is not a docker container name"),
])
def test_bad_params_are_refused_with_the_place(params: dict[str, Any], error: str) -> None:
    with pytest.raises(InputError, match=f"book.yml:40: check 'deferred-queue': {error}"):
        check(**params)


def test_without_a_container_postqueue_runs_on_the_host() -> None:
    host = FakeTransport(name="mx")
    host.expect(["sh", "-c", queue.READ], (0, f"{NOW}\n{STUCK[0]}\n", ""))
    found = MailQueue(CheckSpec(id="q", check="mail-queue", params={"max_deferred": 1})).run(Facts(host, None))
    assert found is not None and found.ok is True and found.evidence.startswith("1 deferred (oldest 4m12s)")


def test_without_ages_the_evidence_reads_the_same_until_the_queue_changes() -> None:
    """What an assert step's plan shows is part of the plan's identity: it must not move with the clock."""
    later = Host(STUCK)
    later.expect(READ, (0, f"{NOW + 61}\n" + "".join(line + "\n" for line in STUCK), ""))
    now, then = verdict(Host(STUCK), ages=False), verdict(later, ages=False)
    assert now == then and now is not None
    assert now.evidence.startswith("3 deferred (oldest queued 2026-12-06 08:45:48Z): 127.0.0.28:2525 3 (Connection "
                                   "refused); at most 0 allowed")
    assert verdict(Host(STUCK)) != verdict(later)  # with ages (diagnose), it says how long the mail has waited
