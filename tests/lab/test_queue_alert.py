"""queue-flush through the whole alert chain, real parts only: mail deferred while the queue gateway's Dovecot was down
waits in Postfix's queue after Dovecot came back; prometheus-postfix-exporter reads the queue through Postfix's showq
socket, Prometheus' rule PostfixQueueDeferredStuck fires, Alertmanager sends it to `remediate serve`, a person approves
the plan (the flush of exactly those queue ids), every one is Saved, and Alertmanager's own `resolved` closes the
incident. And when the next hop goes down again between the plan and the approval, nothing is flushed: the incident
ends failed before any step ran, its history naming the hop and what it answered."""

from __future__ import annotations

import re
from pathlib import Path

from remediate.testkit.faults import deferred_queue, queue_stuck
from remediate.testkit.host import LabHost
from remediate.testkit.lab import Lab

from . import servectl
from .test_relay_alert import approved_run, firing, lab_chain  # noqa: F401  (lab_chain: a fixture)

ALERT = "PostfixQueueDeferredStuck"
POSTFIX = "mailserver-postfix-queue"
DOVECOT = "mailserver-dovecot-queue"
HOP = "127.0.0.28:2525"


def rules(**extra: str) -> str:
    lines = [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(["rules:", "  - name: queue-stuck", f"    match: {{alertname: {ALERT}}}",
                      "    playbook: queue-flush", "    host_label: instance", "    approval: required",
                      *lines]) + "\n"


def saved(host: LabHost, qid: str) -> bool:
    """Postfix's own line for the queue id: delivered over LMTP to the gateway's Dovecot, which said Saved."""
    return re.search(rf"postfix/lmtp\[\d+\]: {qid}: to=<test@kuma8088\.com>, relay=127\.0\.0\.28\[127\.0\.0\.28\]:2525,"
                     r".* status=sent \(250 2\.0\.0 <test@kuma8088\.com> \S+ Saved\)$", host.logs(POSTFIX),
                     re.MULTILINE) is not None


def deferred(host: LabHost) -> set[str]:
    return {qid for qid, name in deferred_queue(host, POSTFIX).items() if name == "deferred"}


def test_queue_alert_to_approval_to_flush_to_resolved(lab_chain: Lab, tmp_path: Path) -> None:  # noqa: F811
    host = lab_chain.host("ec2-mx-queue")  # its compose project up (lab/reset leaves it stopped)
    ids = queue_stuck(host)  # deferred while Dovecot was down; Dovecot answers again, Postfix waits for its backoff
    serve = servectl.Serve(rules(resolve_timeout="3m"), tmp_path / "serve").start()
    serve.person("oncall")
    try:
        pending = serve.wait(lambda: [i for i in serve.incidents() if i["state"] == "pending"
                                      and i["plan_identity"]], 120, "a pending queue-flush incident")[0]
        assert pending["alertname"] == ALERT and pending["host"] == "ec2-mx-queue", pending
        assert all(qid in pending["plan_diff"] for qid in ids), pending["plan_diff"]  # what the person approves
        assert f"docker exec -- {POSTFIX} postqueue -f" in pending["plan_diff"], pending["plan_diff"]
        assert firing(ALERT), "the alert fires in Alertmanager"
        assert set(ids) <= deferred(host)  # the plan flushed nothing
        status, approved = serve.call("POST", f"/incidents/{pending['id']}/approve",
                                      {"plan_identity": pending["plan_identity"]})
        assert status == 200 and approved["approved_by"] == "oncall", approved
        approved_run(serve, pending["id"])
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 240)
        assert done["state"] == "resolved", done  # the queue is empty: Alertmanager resolved it
        servectl.fixed_and_resolved(done, "received", "planned", "approved", "run started")
        assert not firing(ALERT)
        assert deferred(host) == set() and all(saved(host, qid) for qid in ids), host.logs(POSTFIX)[-3000:]
        lab_chain.runbook("queue-flush", host).diagnose_is_clean()  # and diagnose agrees: exit 0
    finally:
        serve.stop()


def test_a_next_hop_down_again_at_the_approval_flushes_nothing(lab_chain: Lab, tmp_path: Path) -> None:  # noqa: F811
    host = lab_chain.host("ec2-mx-queue")
    ids = queue_stuck(host)
    serve = servectl.Serve(rules(resolve_timeout="1m"), tmp_path / "serve").start()
    serve.person("oncall")
    try:
        pending = serve.wait(lambda: [i for i in serve.incidents() if i["state"] == "pending"
                                      and i["plan_identity"]], 120, "a pending queue-flush incident")[0]
        host.docker("stop", DOVECOT)  # the next hop fails again after the plan was made, before the approval
        status, approved = serve.call("POST", f"/incidents/{pending['id']}/approve",
                                      {"plan_identity": pending["plan_identity"]})
        assert status == 200, approved
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 120)
        # serve plans again before it applies: the flush refuses while the hop does not answer, before any step ran
        assert done["state"] == "failed" and "refusing to flush" in done["reason"], done
        assert done["history"][-1]["what"] == "failed" and "run started" not in [h["what"] for h in done["history"]]
        said = done["history"][-1]["detail"]
        assert f"next hop {HOP} (lmtp) does not answer" in said and "Connection refused" in said, said  # the evidence
        assert set(ids) <= deferred(host) and not any(saved(host, qid) for qid in ids)  # nothing was flushed
        assert firing(ALERT)
    finally:
        serve.stop()
