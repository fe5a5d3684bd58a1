"""queue-flush against the real lab, with the test kit: Dovecot's LMTP on the queue gateway (127.0.0.28:2525) was down
while mail came in, so Postfix deferred it; Dovecot is back, and Postfix will not retry before its backoff. diagnose
finds the deferred mail, the plan shows the flush and the queue ids and changes nothing, apply flushes and every id is
Saved, a rerun does nothing, diagnose is clean, and a forced failure after the flush ends rolled-back with nothing to
undo. With Dovecot stopped, the plan refuses, names the next hop, and the queue stays as it was. A message one of
whose recipients Dovecot rejects is not called delivered; a long recipient's Saved is seen."""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable
from pathlib import Path

from remediate.testkit import Lab
from remediate.testkit.faults import deferred_queue, lmtp_answers, queue_stuck
from remediate.testkit.host import LabHost

POSTFIX = "mailserver-postfix-queue"
DOVECOT = "mailserver-dovecot-queue"
HOP = "127.0.0.28:2525"


def deferred(host: LabHost) -> set[str]:
    return {qid for qid, name in deferred_queue(host, POSTFIX).items() if name == "deferred"}


def saved(host: LabHost, qid: str) -> bool:
    """Postfix's own line for the queue id: delivered over LMTP, and Dovecot said Saved."""
    return re.search(rf"postfix/lmtp\[\d+\]: {qid}: to=<test@kuma8088\.com>, relay=127\.0\.0\.28\[127\.0\.0\.28\]:2525,"
                     r".* status=sent \(250 2\.0\.0 <test@kuma8088\.com> \S+ Saved\)$", host.logs(POSTFIX),
                     re.MULTILINE) is not None


def until(ready: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Wait for a condition, with a deadline that names it."""
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"{what} within {seconds:.0f} s"
        time.sleep(0.2)


def stuck_to(host: LabHost, recipients: list[str]) -> str:
    """One mail to `recipients`, sent while Dovecot is stopped (deferred: connection refused), Dovecot then started
    again and answering LHLO: its queue id."""
    host.wait_listening("127.0.0.28", 25)
    host.docker("stop", DOVECOT)
    try:
        with smtplib.SMTP("127.0.0.28", 25, source_address=("127.0.0.28", 0), timeout=10) as smtp:
            smtp.ehlo("app.lab")
            smtp.mail("test@kuma8088.com")
            for rcpt in recipients:
                smtp.rcpt(rcpt)
            code, reply = smtp.data("From: test@kuma8088.com\r\nTo: test@kuma8088.com\r\nSubject: queue-flush\r\n"
                                    "\r\nbody\r\n")
        assert code == 250, reply
        qid = reply.decode().rsplit("queued as ", 1)[1].strip()
        until(lambda: deferred_queue(host, POSTFIX).get(qid) == "deferred", f"{qid} deferred")
    finally:
        host.docker("start", DOVECOT)
        until(lambda: lmtp_answers("127.0.0.28", 2525), "Dovecot answering LHLO again")
    return qid


def test_queue_flush_through_the_whole_loop(remediate_lab: Lab) -> None:
    host = remediate_lab.host("ec2-mx-queue")  # its compose project up (lab/reset leaves it stopped)
    ids = queue_stuck(host)
    assert set(ids) <= deferred(host) and not any(saved(host, qid) for qid in ids)
    started = {name: c.started_at for name, c in host.containers().items()}
    run = remediate_lab.runbook("queue-flush", host)

    found = run.diagnose_finds_it("deferred-queue")
    evidence = {e["check"]: e for e in found.of("check")}
    queue = evidence["deferred-queue"]["evidence"]
    assert queue.startswith(f"{len(ids)} deferred (oldest "), queue
    assert f"{HOP} {len(ids)} (Connection refused)" in queue and f"next hop {HOP} (lmtp) answers LHLO" in queue, queue
    assert evidence["deferred-queue"]["fix"] == "queue-flush"
    assert evidence["next-hop"]["ok"] is True, evidence["next-hop"]

    plan = run.plan_shows_change("flush")
    flush = plan.planned()["flush"]
    assert flush["commands"] == [f"docker exec -- {POSTFIX} postqueue -f"], flush
    assert all(qid in flush["reason"] for qid in ids) and "changes no file" in flush["reason"], flush["reason"]
    assert not flush["diffs"]
    assert set(ids) <= deferred(host)  # the plan changed nothing

    done = run.apply_fixes()
    verified = {e["step"]: e["message"] for e in done.of("step_verified")}
    assert all(qid in verified["flush"] for qid in ids) and "Saved" in verified["flush"], verified
    assert verified["queue-drained"].startswith("mail-queue: 0 deferred"), verified
    assert deferred(host) == set() and all(saved(host, qid) for qid in ids)
    assert {name: c.started_at for name, c in host.containers().items()} == started  # nothing restarted
    record = run.record()
    assert record["outcome"] == "applied" and not any(step.get("files") for step in record["steps"]), record

    run.rerun_is_noop()
    run.diagnose_is_clean()

    again = queue_stuck(host)  # stuck once more; this time a step after the flush fails
    failed = run.forced_failure_rolls_back(step="flush")
    undone = {e["step"]: e.get("message", "") for e in failed.of("step_rolled_back")}
    assert "nothing to undo" in undone["flush"] and "not un-sent" in undone["flush"], undone
    # the flush that ran stays: a delivered mail is not un-sent
    assert deferred(host) == set() and all(saved(host, qid) for qid in again)


def test_a_saved_plan_applied_later_is_still_that_plan(remediate_lab: Lab, tmp_path: Path) -> None:
    """apply PLANFILE (as serve applies the plan people approved) refuses a plan whose identity changed: the queue's
    plan (its queue ids, next hop and commands) must be the same when applied, the mail having waited longer."""
    host = remediate_lab.host("ec2-mx-queue")
    ids = queue_stuck(host)
    saved_plan = tmp_path / "queue-flush.plan.json"
    run = remediate_lab.runbook("queue-flush", host)
    run.cli("plan", "--out", str(saved_plan)).expect(2, "the plan should show the flush")
    planned = time.time()
    while time.time() < planned + 2:  # the condition: the host's clock (ages) moved on 2 s since the plan
        time.sleep(0.1)
    done = remediate_lab.remediate("apply", str(saved_plan))
    done.expect(0, "the saved plan should apply: the queue is as it was")
    assert deferred(host) == set() and all(saved(host, qid) for qid in ids)


def test_with_dovecot_stopped_the_plan_refuses_and_names_the_next_hop(remediate_lab: Lab) -> None:
    host = remediate_lab.host("ec2-mx-queue")
    ids = queue_stuck(host)
    host.docker("stop", DOVECOT)
    run = remediate_lab.runbook("queue-flush", host)

    refused = run.cli("plan").expect(1, "the plan should refuse to flush while Dovecot is down")
    said = " ".join(refused.output.split())
    assert f"refusing to flush: next hop {HOP} (lmtp) does not answer" in said, said
    assert "connection refused" in said and "start it first" in said, said
    assert set(ids) <= deferred(host)  # nothing changed: the mail still waits
    assert not any(saved(host, qid) for qid in ids)

    found = run.cli("diagnose").expect(3, "diagnose should find the mail held behind a hop that is down")
    checks = {e["check"]: e for e in found.of("check")}
    assert checks["deferred-queue"]["ok"] is False and checks["deferred-queue"]["fix"] is None, checks
    assert f"next hop {HOP} (lmtp) does not answer" in checks["deferred-queue"]["evidence"]
    assert checks["next-hop"]["ok"] is False and "the LMTP service is down" in checks["next-hop"]["evidence"]
    assert (found.events[-1].get("fixes") or []) == []


def test_a_recipient_dovecot_rejects_is_not_called_delivered(remediate_lab: Lab) -> None:
    """Dovecot rejects nosuch@ at RCPT (logged first) and Saves test@ after DATA: the message leaves the queue, and
    the flush fails at once naming the recipient and Dovecot's words (it was judged by its last line before)."""
    host = remediate_lab.host("ec2-mx-queue")
    qid = stuck_to(host, ["nosuch@kuma8088.com", "test@kuma8088.com"])
    done = remediate_lab.runbook("queue-flush", host).cli("apply", "--yes").expect(1, "a bounce fails the flush")
    [failed] = [e["error"] for e in done.of("step_failed")]
    said = " ".join(failed.split())
    assert f"flushed mail was not delivered: {qid} to <nosuch@kuma8088.com>: bounced (host 127.0.0.28[127.0.0.28] " \
           "said: 550 5.1.1" in said, said
    assert saved(host, qid)  # test@ was Saved all the same
    until(lambda: not deferred_queue(host, POSTFIX), "the queue empty (the bounce delivered to the sender)")


def test_a_long_recipients_saved_is_seen(remediate_lab: Lab) -> None:
    """Dovecot's reply quotes the recipient: cut for display before the test, it never ended in Saved."""
    host = remediate_lab.host("ec2-mx-queue")
    qid = stuck_to(host, ["test+" + "a" * 120 + "@kuma8088.com"])
    done = remediate_lab.runbook("queue-flush", host, vars={"drain_timeout": 20}).cli("apply", "--yes")
    done.expect(0, "the mail was delivered: the flush should say so")
    assert qid in {e["step"]: e["message"] for e in done.of("step_verified")}["flush"]
