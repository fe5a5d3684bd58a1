"""tls-reload through the whole alert chain, real parts only: the TLS gateway serves a certificate that expires in
5 days while a renewal sits on disk; the blackbox exporter reads the served certificate, Prometheus' rule
TlsCertificateExpiresSoon fires, Alertmanager sends it to `remediate serve`, a person approves the plan, the reload
makes both listeners serve the renewed certificate, and Alertmanager's own `resolved` closes the incident. And the
same loop where the fix cannot be proven: the reload takes, verify fails, and the incident ends with the evidence."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from remediate.testkit.faults import TLS_IMAPS_PORT, served_fingerprint
from remediate.testkit.lab import Lab

from . import labctl, servectl

ALERT = "TlsCertificateExpiresSoon"
PROMETHEUS = "http://127.0.0.15:9090"  # lab/chain/run


@pytest.fixture
def lab_chain(remediate_lab: Lab) -> Iterator[Lab]:
    """The lab reset once, by the test kit (test_serve_chain's `chain` resets it a second time), then a fresh chain:
    new Prometheus and Alertmanager state, so the alert fires anew."""
    servectl.chain("up")
    try:
        yield remediate_lab
    finally:
        servectl.chain("down")


def rules(**extra: str) -> str:
    lines = [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(["rules:", "  - name: tls-expires-soon", f"    match: {{alertname: {ALERT}}}",
                      "    playbook: tls-reload", "    host_label: instance", *lines]) + "\n"


def firing() -> list[dict[str, object]]:
    return [a for a in servectl.alertmanager_alerts() if a["labels"]["alertname"] == ALERT]


def probed(job: str) -> dict[str, float]:
    """target -> the served certificate's notAfter (epoch seconds), for each TLS handshake the blackbox exporter made
    for the job at Prometheus' last scrape (a failed probe has no such series)."""
    query = urllib.parse.urlencode({"query": f'probe_ssl_earliest_cert_expiry{{job="{job}"}}'})
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/query?{query}", timeout=10) as response:
        body = json.load(response)
    return {s["metric"]["target"]: float(s["value"][1]) for s in body["data"]["result"]}


def test_tls_alert_to_approval_to_reload_to_resolved(lab_chain: Lab, tmp_path: Path) -> None:
    host = lab_chain.host("ec2-mx-tls")
    host.inject("tls-renewed-on-disk")  # renewed on disk; both listeners still serve the old, expiring one
    serve = servectl.Serve(rules(approval="required", resolve_timeout="3m"), tmp_path / "serve").start()
    serve.person("oncall")
    try:
        # the alert fires from the blackbox exporter's look at the served certificate, and serve plans the reload
        pending = serve.wait(lambda: [i for i in serve.incidents() if i["state"] == "pending"
                                      and i["plan_identity"]], 120, "a pending tls-reload incident")[0]
        assert pending["alertname"] == ALERT and pending["host"] == "ec2-mx-tls", pending
        assert firing(), "the alert fires in Alertmanager"
        # the chain probes Dovecot's IMAPS listener (the inventory's dovecot_port), and reads a certificate from it
        imaps = f"{host.postfix_address()}:{TLS_IMAPS_PORT}"
        assert host.vars["dovecot_port"] == TLS_IMAPS_PORT
        servectl.wait_until(lambda: imaps in probed("tls-dovecot"), 60, f"a TLS handshake with {imaps} in Prometheus")
        status, approved = serve.call("POST", f"/incidents/{pending['id']}/approve",
                                      {"plan_identity": pending["plan_identity"]})
        assert status == 200 and approved["approved_by"] == "oncall", approved
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 240)
        assert done["state"] == "resolved", done  # the probe saw the renewed certificate: Alertmanager resolved it
        servectl.fixed_and_resolved(done, "received", "planned", "approved", "run started")
        assert not firing()
        lab_chain.runbook("tls-reload", host).diagnose_is_clean()  # and diagnose agrees: exit 0
    finally:
        serve.stop()


def snapshot(compose_dir: str) -> dict[Path, str]:
    """The SHA-256 of every file in the project's folder, and of ec2-mx's compose file (the lab's other gateway)."""
    paths = [p for p in Path(compose_dir).rglob("*") if p.is_file()] + [labctl.COMPOSE_FILE]
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def test_tls_alert_whose_fix_cannot_be_proven_ends_with_the_served_certificate_as_evidence(
        lab_chain: Lab, tmp_path: Path) -> None:
    """The rule asks the served certificate to be valid 100 days more; the renewal gives 90. The reload takes (both
    listeners serve the renewed certificate) but verify cannot pass: the incident ends rolled back or failed, its
    history says what is served and until when, and nothing else changed (no file, no container re-created)."""
    host = lab_chain.host("ec2-mx-tls")
    host.inject("tls-renewed-on-disk")
    certs = Path(host.compose_dir) / "certs"
    files = snapshot(host.compose_dir)
    renewed = x509.load_pem_x509_certificate((certs / "fullchain.pem").read_bytes()).fingerprint(hashes.SHA256()).hex()
    containers = host.containers()
    address = host.postfix_address()
    serve = servectl.Serve(rules(approval="required", resolve_timeout="3m", vars="{min_days: 100}"),
                           tmp_path / "serve").start()
    serve.person("oncall")
    try:
        pending = serve.wait(lambda: [i for i in serve.incidents() if i["state"] == "pending"
                                      and i["alertname"] == ALERT and i["plan_identity"]], 120,
                             "a pending tls-reload incident")[0]
        status, approved = serve.call("POST", f"/incidents/{pending['id']}/approve",
                                      {"plan_identity": pending["plan_identity"]})
        assert status == 200 and approved["approved_by"] == "oncall", approved
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 240)
        assert done["state"] in {"rolled_back", "failed"}, done
        whats = [h["what"] for h in done["history"]]
        for what in ("approved", "run started", "step applied", "step failed"):
            assert what in whats, (what, whats)
        assert "resolved" not in whats and "applied" not in whats, whats
        failing = [h["detail"] for h in done["history"] if h["what"] == "step failed"]
        assert failing[0].startswith("postfix-serves-file: tls-certificate does not hold"), failing
        undone = [h["detail"] for h in done["history"] if h["what"] == "step rolled back"]
        assert all("nothing to undo" in line for line in undone), undone  # tls-reload changes no file
        # the evidence: the check's own words, with the fingerprint served and its notAfter, under the threshold
        said = "\n".join(f"{h['what']}: {h.get('detail') or ''}" for h in done["history"]) + f"\n{done['reason']}"
        failed = [line for line in said.splitlines() if "under 100" in line]
        assert failed, said
        assert any(f"serves sha256 {renewed}" in line and re.search(r"notAfter \d{4}-\d\d-\d\d", line)
                   for line in failed), failed
        # the reload took: both listeners serve the renewed certificate (a reload is not undone), and nothing else
        # changed: every file of the host's project (and ec2-mx's) is byte for byte the fault's, none was added (no
        # backup), and no container was re-created
        assert served_fingerprint(address, 25, True) == renewed
        assert served_fingerprint(address, TLS_IMAPS_PORT, False) == renewed
        assert snapshot(host.compose_dir) == files
        assert {n: c.id for n, c in host.containers().items()} == {n: c.id for n, c in containers.items()}
    finally:
        serve.stop()
        lab_chain.reset()  # the lab's own state for the next test: ec2-mx-tls stopped, its certificates anew
