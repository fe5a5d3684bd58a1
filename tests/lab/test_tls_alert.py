"""tls-reload through the whole alert chain, real parts only: the TLS gateway serves a certificate that expires in
5 days while a renewal sits on disk; the blackbox exporter reads the served certificate, Prometheus' rule
TlsCertificateExpiresSoon fires, Alertmanager sends it to `remediate serve`, a person approves the plan, the reload
makes both listeners serve the renewed certificate, and Alertmanager's own `resolved` closes the incident."""

from __future__ import annotations

from pathlib import Path

from remediate.testkit.lab import Lab

from . import servectl
from .test_serve_chain import chain  # noqa: F401  (a fixture)

ALERT = "TlsCertificateExpiresSoon"


def rules(**extra: str) -> str:
    lines = [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(["rules:", "  - name: tls-expires-soon", f"    match: {{alertname: {ALERT}}}",
                      "    playbook: tls-reload", "    host_label: instance", *lines]) + "\n"


def firing() -> list[dict[str, object]]:
    return [a for a in servectl.alertmanager_alerts() if a["labels"]["alertname"] == ALERT]


def test_tls_alert_to_approval_to_reload_to_resolved(chain: None, remediate_lab: Lab,  # noqa: F811
                                                      tmp_path: Path) -> None:
    host = remediate_lab.host("ec2-mx-tls")
    host.inject("tls-renewed-on-disk")  # renewed on disk; both listeners still serve the old, expiring one
    serve = servectl.Serve(rules(approval="required", resolve_timeout="3m"), tmp_path / "serve").start()
    serve.person("oncall")
    try:
        # the alert fires from the blackbox exporter's look at the served certificate, and serve plans the reload
        pending = serve.wait(lambda: [i for i in serve.incidents() if i["state"] == "pending"
                                      and i["plan_identity"]], 120, "a pending tls-reload incident")[0]
        assert pending["alertname"] == ALERT and pending["host"] == "ec2-mx-tls", pending
        assert firing(), "the alert fires in Alertmanager"
        status, approved = serve.call("POST", f"/incidents/{pending['id']}/approve",
                                      {"plan_identity": pending["plan_identity"]})
        assert status == 200 and approved["approved_by"] == "oncall", approved
        done = serve.wait_state(pending["id"], {"resolved", "failed", "rolled_back"}, 240)
        assert done["state"] == "resolved", done  # the probe saw the renewed certificate: Alertmanager resolved it
        whats = [h["what"] for h in done["history"]]
        for what in ("received", "planned", "approved", "run started", "applied", "resolved"):
            assert what in whats, (what, whats)
        assert not firing()
        remediate_lab.runbook("tls-reload", host).diagnose_is_clean()  # and diagnose agrees: exit 0
    finally:
        serve.stop()
