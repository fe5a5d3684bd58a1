"""tls-reload against the real lab, with the test kit: the TLS gateway's certificate is renewed on disk and neither
Postfix (STARTTLS on 127.0.0.29:25) nor Dovecot (IMAPS on :993) reloads it. diagnose finds both
stale, the plan shows two reloads and no file, apply makes both serve the file's certificate, a rerun does nothing,
diagnose is clean, and a forced failure after the first reload ends rolled-back with nothing to undo."""

from __future__ import annotations

import imaplib
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from remediate.testkit import Lab
from remediate.testkit.faults import TLS_IMAPS_PORT, served_fingerprint

ADDRESS = "127.0.0.29"
CERT = Path("/opt/mailserver-tls/certs/fullchain.pem")


def on_disk() -> str:
    return x509.load_pem_x509_certificate(CERT.read_bytes()).fingerprint(hashes.SHA256()).hex()


def served() -> tuple[str, str]:
    """(Postfix's, Dovecot's) served certificate fingerprints, as a client sees them."""
    return served_fingerprint(ADDRESS, 25, True), served_fingerprint(ADDRESS, TLS_IMAPS_PORT, False)


def imaps_greeting() -> str:
    """What Dovecot's TLS listener says first inside TLS: an IMAP server's untagged OK."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    imap = imaplib.IMAP4_SSL(ADDRESS, TLS_IMAPS_PORT, ssl_context=context, timeout=10)
    try:
        return imap.welcome.decode()
    finally:
        imap.logout()


def test_tls_reload_through_the_whole_loop(remediate_lab: Lab) -> None:
    host = remediate_lab.host("ec2-mx-tls")  # its compose project up (lab/reset leaves it stopped)
    host.inject("tls-renewed-on-disk")  # (it waits until both listeners accept)
    assert host.vars["dovecot_port"] == TLS_IMAPS_PORT == 993
    greeting = imaps_greeting()  # IMAP inside TLS on 993 (the lab had LMTP over TLS on 2526 before)
    assert greeting.startswith("* OK") and "IMAP4rev1" in greeting, greeting
    with pytest.raises(ConnectionRefusedError):  # and no plain IMAP beside it
        socket.create_connection((ADDRESS, 143), timeout=10).close()
    old, new = served()[0], on_disk()
    assert served() == (old, old) and old != new
    started = {name: c.started_at for name, c in host.containers().items()}
    run = remediate_lab.runbook("tls-reload", host)

    found = run.diagnose_finds_it("postfix-certificate", "dovecot-certificate")
    evidence = {e["check"]: e["evidence"] for e in found.of("check")}
    for check in ("postfix-certificate", "dovecot-certificate"):
        assert old in evidence[check] and new in evidence[check], evidence[check]
        assert "still serves the old certificate" in evidence[check]

    plan = run.plan_shows_change("postfix-reload", "dovecot-reload")
    planned = plan.planned()
    assert planned["postfix-reload"]["commands"][0] == "docker exec -- mailserver-postfix-tls postfix reload"
    assert planned["dovecot-reload"]["commands"][0] == "docker exec -- mailserver-dovecot-tls doveadm reload"
    assert all("changes no file" in planned[s]["reason"] and not planned[s]["diffs"]
               for s in ("postfix-reload", "dovecot-reload"))
    assert served() == (old, old)  # the plan changed nothing

    done = run.apply_fixes()
    verified = {e["step"]: e["message"] for e in done.of("step_verified")}
    assert "after a reload" in verified["postfix-reload"] and "after a reload" in verified["dovecot-reload"]
    assert f"[{ADDRESS}]:{TLS_IMAPS_PORT} serves" in verified["dovecot-reload"], verified  # the inventory's port
    assert new in verified["postfix-serves-file"] and new in verified["dovecot-serves-file"]
    assert served() == (new, new)
    # a reload, not a re-creation: the same containers, started when they were
    assert {name: c.started_at for name, c in host.containers().items()} == started
    record = run.record()
    assert record["outcome"] == "applied" and not any(step.get("files") for step in record["steps"]), record

    run.rerun_is_noop()
    run.diagnose_is_clean()

    host.inject("tls-renewed-on-disk")  # renewed again, and not reloaded
    failed = run.forced_failure_rolls_back(step="postfix-reload")
    assert failed.steps("step_rolled_back")[-1] == "postfix-reload"
    undone = {e["step"]: e.get("message", "") for e in failed.of("step_rolled_back")}
    assert "nothing to undo" in undone["postfix-reload"], undone
    # the reload that ran stays (a certificate is not un-served); the step after it never ran
    assert served() == (on_disk(), new)
    run.diagnose_finds_it("dovecot-certificate")


def test_a_reload_that_does_not_take_re_creates_that_container_alone(remediate_lab: Lab) -> None:
    """Dovecot's "reload" here does nothing (`true`): after reload_timeout, the step re-creates its container (and
    not Postfix's, whose reload took), and proves the renewed certificate served."""
    host = remediate_lab.host("ec2-mx-tls")
    host.inject("tls-renewed-on-disk")
    before = host.containers()
    run = remediate_lab.runbook("tls-reload", host, vars={"dovecot_reload": "true", "reload_timeout": 3})
    done = run.apply_fixes()
    verified = {e["step"]: e["message"] for e in done.of("step_verified")}
    assert "after a reload" in verified["postfix-reload"]
    assert "after re-creating the container" in verified["dovecot-reload"], verified
    after = host.containers()
    assert after["mailserver-postfix-tls"].id == before["mailserver-postfix-tls"].id
    assert after["mailserver-dovecot-tls"].id != before["mailserver-dovecot-tls"].id
    assert served() == (on_disk(), on_disk())
