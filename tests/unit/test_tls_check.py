"""tls-certificate: the served certificate against its file and the expiry threshold, at the transport seam (a
scripted host), and the host-side handshake for real against a loopback TLS listener (implicit and STARTTLS)."""

from __future__ import annotations

import base64
import shlex
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from remediate.diagnostics import CheckSpec, Facts, Verdict
from remediate.diagnostics import tls as check
from remediate.errors import InputError
from remediate.probes import tls
from remediate.transport.local import LocalTransport

from .fakes import FakeTransport

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
FILE = "/etc/ssl/mx/fullchain.pem"


def make_cert(name: str, days: float, now: datetime = NOW) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a self-signed certificate valid `days` from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def probe_command(mode: str = "smtp", port: int = 25) -> str:
    return shlex.join(["python3", "-c", tls.SCRIPT, "10.0.0.5", str(port), mode, "10", ""])


def host(file_pem: bytes | None, served_pem: bytes | None, mode: str = "smtp",
         failure: tuple[int, str] = (0, "")) -> FakeTransport:
    t = FakeTransport(name="mx")
    if file_pem is not None:
        t.put(FILE, file_pem + b"-----BEGIN CERTIFICATE-----\nnot the leaf\n-----END CERTIFICATE-----\n", mode=0o644)
    if served_pem is not None:
        out = f"version TLSv1.3\ncert {base64.b64encode(der(served_pem)).decode()}\n"
        t.replies[probe_command(mode)] = (0, out, "")
    else:
        t.replies[probe_command(mode)] = (failure[0], "", failure[1])
    return t


def checked(transport: Any, monkeypatch: pytest.MonkeyPatch, **params: Any) -> Verdict | None:
    monkeypatch.setattr(check, "now", lambda: NOW)
    given = {"address": "10.0.0.5", "port": 25, "starttls": "smtp", "cert_file": FILE, **params}
    found = check.TlsCertificate(CheckSpec(id="tls", check="tls-certificate", params=given, where="book.yml:3"))
    return found.run(Facts(transport, None))


def verdict(transport: Any, monkeypatch: pytest.MonkeyPatch, **params: Any) -> Verdict:
    found = checked(transport, monkeypatch, **params)
    assert found is not None
    return found


def fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


def test_a_renewed_file_the_service_has_not_loaded_is_a_fixable_finding_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = make_cert("mx.lab", 5)[0], make_cert("mx.lab", 90)[0]
    found = verdict(host(new, old), monkeypatch)
    assert found.ok is False and found.fixable
    assert fingerprint(old) in found.evidence and fingerprint(new) in found.evidence
    assert "still serves the old certificate" in found.evidence and "TLSv1.3, STARTTLS after EHLO" in found.evidence


def test_the_file_served_and_far_from_expiry_is_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    new = make_cert("mx.lab", 90)[0]
    found = verdict(host(new, new), monkeypatch)
    assert found.ok is True
    assert "valid 90.0 more days" in found.evidence


def test_a_served_file_under_the_threshold_needs_a_renewal_not_a_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    soon = make_cert("mx.lab", 3)[0]
    found = verdict(host(soon, soon), monkeypatch, min_days=7)
    assert found.ok is False and not found.fixable
    assert "expires in 3.0 days (under 7)" in found.evidence and "renewal" in found.evidence


def test_a_stale_service_whose_file_also_expires_is_not_for_a_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    found = verdict(host(make_cert("mx.lab", 2)[0], make_cert("mx.lab", 1)[0]), monkeypatch)
    assert found.ok is False and not found.fixable and "needs a renewal" in found.evidence


def test_no_listener_is_undecided_and_a_host_without_the_file_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    down = verdict(host(make_cert("mx.lab", 90)[0], None, failure=(10, "connect: Connection refused")), monkeypatch)
    assert down.ok is None and not down.fixable and "Connection refused" in down.evidence
    missing = host(None, make_cert("mx.lab", 90)[0])
    assert checked(missing, monkeypatch) is None
    assert missing.ran == []  # nothing probed where there is no certificate to compare


def test_a_bad_mode_is_refused_with_the_place(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match=r"book.yml:3: check 'tls': starttls must be one of implicit, smtp, lmtp"):
        verdict(FakeTransport(name="mx"), monkeypatch, starttls="imap")


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A loopback TLS server: implicit on one port, SMTP STARTTLS on another, both with the same certificate."""
    cert, key = make_cert("tls.test", 30, datetime.now(UTC))
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    servers = {mode: socket.create_server(("127.0.0.21", 0)) for mode in ("implicit", "smtp")}

    def serve(mode: str, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                try:
                    if mode == "smtp":
                        f = conn.makefile("rb", buffering=0)
                        conn.sendall(b"220 mx ESMTP\r\n")
                        f.readline()
                        conn.sendall(b"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
                        f.readline()
                        conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                    with context.wrap_socket(conn, server_side=True) as secure:
                        secure.recv(1)
                except (OSError, ssl.SSLError):
                    pass

    for mode, server in servers.items():
        threading.Thread(target=serve, args=(mode, server), daemon=True).start()
    yield {"cert": cert, **{mode: s.getsockname()[1] for mode, s in servers.items()}}
    for server in servers.values():
        server.close()


@pytest.mark.parametrize("mode", ["implicit", "smtp"])
def test_the_host_side_handshake_reads_the_served_certificate(listener: dict[str, Any], mode: str) -> None:
    got = tls.served(LocalTransport(name="local"), "127.0.0.21", listener[mode], mode)
    assert got.certificate is not None, got.detail
    assert got.certificate.fingerprint == fingerprint(listener["cert"])
    assert got.certificate.subject == "CN=tls.test"


def test_starttls_not_offered_and_nothing_listening_say_why() -> None:
    plain = socket.create_server(("127.0.0.21", 0))
    port = plain.getsockname()[1]

    def greet() -> None:
        conn, _ = plain.accept()
        with conn:
            conn.sendall(b"220 mx ESMTP\r\n")
            conn.recv(100)
            conn.sendall(b"250-mx\r\n250 PIPELINING\r\n")
            conn.recv(100)

    threading.Thread(target=greet, daemon=True).start()
    got = tls.served(LocalTransport(name="local"), "127.0.0.21", port, "smtp")
    assert got.certificate is None and got.reachable and "no STARTTLS in the reply to EHLO" in got.detail
    plain.close()
    gone = tls.served(LocalTransport(name="local"), "127.0.0.21", port, "implicit")
    assert gone.certificate is None and not gone.reachable and "refused" in gone.detail
