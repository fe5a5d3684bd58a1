"""Postfix's log read for the proof of a flush: a status line counts only when Postfix itself wrote it (read from the
start of the line, on its own format) for a queue id and a recipient recorded at apply, and a Saved counts only from
the next hop. Senders write Message-IDs and addresses, remote servers write replies: none of it may forge a line."""

from __future__ import annotations

import pytest

from remediate.probes import queue

QID, OTHER = "4F2A1B2C3D", "8A1B2C3D4E"
RCPT = "test@kuma8088.com"
HOP = "127.0.0.28[127.0.0.28]:2525"


def logged(qid: str, rcpt: str, status: str, said: str, relay: str = HOP, program: str = "lmtp",
           when: str = "Dec 06 09:20:14 mx-queue") -> str:
    """A delivery agent's line as the lab's Postfix writes it to docker's log (maillog_file = /dev/stdout)."""
    dsn = {"sent": "2.0.0", "bounced": "5.1.1"}.get(status, "4.4.1")
    return (f"{when} postfix/{program}[180]: {qid}: to=<{rcpt}>, relay={relay}, delay=1.6, delays=1.6/0/0/0.06, "
            f"dsn={dsn}, status={status} ({said})")


SAVED = logged(QID, RCPT, "sent", f"250 2.0.0 <{RCPT}> yGz2Bs4oFWsJAAAAg+zDdQ:R2 Saved")


def read(lines: list[str], recipients: dict[str, list[str]] | None = None) -> list[queue.Delivery]:
    return queue.deliveries(lines, recipients or {QID: [RCPT]}, "127.0.0.28", 2525)


@pytest.mark.parametrize("when", ["Dec 06 09:20:14 mx-queue", "Dec  6 09:20:14 mx-queue.lab",
                                  "2026-12-06T09:20:14.292071+00:00 mx-queue"])
def test_postfixs_own_saved_line_counts(when: str) -> None:
    [found] = read([SAVED.replace("Dec 06 09:20:14 mx-queue", when)])
    assert (found.queue_id, found.recipient, found.status, found.saved) == (QID, RCPT, "sent", True)


def test_a_message_id_logged_by_cleanup_cannot_forge_a_saved_line() -> None:
    """cleanup logs the Message-ID header as the sender wrote it; the sender learnt the queue id from '250 2.0.0 Ok:
    queued as ...'. Searched anywhere in the line, it read as an lmtp delivery."""
    forged = (f"Dec 06 09:20:11 mx-queue postfix/cleanup[179]: {OTHER}: message-id=x postfix/lmtp[1]: {QID}: "
              f"to=<{RCPT}>, relay={HOP}, delay=1, delays=1/0/0/0, dsn=2.0.0, status=sent (250 2.0.0 Saved)")
    assert read([forged]) == []


def test_the_status_is_the_one_after_dsn_not_one_in_a_remote_reply() -> None:
    """A greeting refusal has no '(in reply to ...)' after it: the remote's text ends the line, and the last
    'status=' in it was taken for Postfix's."""
    line = logged(QID, RCPT, "deferred", "host mx.evil.example[192.0.2.66] refused to talk to me: 421 4.0.0 "
                                         "status=sent (250 2.0.0 Saved)")
    assert [(d.status, d.saved) for d in read([line])] == [("deferred", False)]


def test_an_address_holding_a_status_is_not_the_status() -> None:
    rcpt = '"x, status=sent (250 Saved)"@kuma8088.com'
    line = logged(QID, rcpt, "deferred", "connect to 127.0.0.28[127.0.0.28]:2525: Connection refused")
    assert [(d.status, d.saved) for d in read([line], {QID: [rcpt]})] == [("deferred", False)]


def test_only_the_recorded_recipients_of_the_recorded_ids_are_read() -> None:
    lines = [SAVED.replace(RCPT, "other@kuma8088.com"), SAVED.replace(QID, OTHER),
             f"Dec 06 09:20:14 mx-queue postfix/smtpd[90]: {QID}: client=app[192.0.2.1]"]
    assert read(lines) == []


@pytest.mark.parametrize("relay", ["mx.evil.example[192.0.2.66]:25", "127.0.0.28[127.0.0.28]:25", "none"])
def test_a_saved_from_another_relay_is_not_the_hops(relay: str) -> None:
    [found] = read([SAVED.replace(HOP, relay)])
    assert found.status == "sent" and not found.saved


def test_a_next_hop_named_or_in_capitals_is_the_relay() -> None:
    line = SAVED.replace(HOP, "Dovecot[2001:db8::5]:24")
    for given in ("dovecot", "2001:DB8::5", "2001:db8:0::5"):
        assert [d.saved for d in queue.deliveries([line], {QID: [RCPT]}, given, 24)] == [True], given


def test_saved_is_read_on_the_whole_reply_of_a_long_address() -> None:
    """The reply quotes the recipient; cut at 160 characters for display it ended in '...', never 'Saved'."""
    rcpt = "test+" + "a" * 120 + "@kuma8088.com"
    [found] = read([logged(QID, rcpt, "sent", f"250 2.0.0 <{rcpt}> qCGrCJ4pFWsKAAAAg+zDdQ Saved")], {QID: [rcpt]})
    assert found.saved
    assert found.shown().endswith("...)") and len(found.shown()) < 300


def test_a_bounce_of_one_recipient_is_read_beside_the_others_saved() -> None:
    bounced = logged(QID, "nosuch@kuma8088.com", "bounced", "host 127.0.0.28[127.0.0.28] said: 550 5.1.1 "
                     "<nosuch@kuma8088.com> User doesn't exist: nosuch@kuma8088.com (in reply to RCPT TO command)")
    found = read([bounced, SAVED], {QID: ["nosuch@kuma8088.com", RCPT]})
    assert [(d.recipient, d.failed, d.saved) for d in found] == [("nosuch@kuma8088.com", True, False),
                                                                 (RCPT, False, True)]
    assert found[0].shown().startswith(f"{QID} to <nosuch@kuma8088.com>: bounced (host 127.0.0.28[127.0.0.28] said: "
                                       "550 5.1.1")


def test_qmgrs_expiry_is_read_and_a_sender_cannot_forge_it_into_another_line() -> None:
    expired = f"Dec 06 09:20:14 mx-queue postfix/qmgr[50]: {QID}: from=<app@example.com>, status=expired, returned " \
              "to sender"
    queued = (f"Dec 06 09:20:14 mx-queue postfix/qmgr[50]: {QID}: from=<x>, status=expired, returned to sender>, "
              "size=293, nrcpt=1 (queue active)")
    [found] = read([queued, expired])
    assert (found.queue_id, found.recipient, found.status, found.failed) == (QID, "", "expired", True)
    assert found.shown() == f"{QID}: expired (returned to sender)"


def test_postfix_with_connection_reuse_and_a_rewritten_recipient_is_read() -> None:
    line = SAVED.replace(f"to=<{RCPT}>, relay={HOP}, ", f"to=<{RCPT}>, orig_to=<alias@kuma8088.com>, relay={HOP}, "
                                                        "conn_use=2, ")
    assert [d.saved for d in read([line])] == [True]
