"""The certificate a TLS listener serves, as its host sees it (implicit TLS, or STARTTLS after an SMTP/LMTP greeting),
and the certificate in a PEM file: SHA-256 fingerprint, notAfter and subject. The handshake runs on the host itself
(its python3, nothing installed), since services there are often bound to addresses only the host can reach; the
certificate is not verified there (the point is to see what is served), and it is parsed here."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from remediate.records import record
from remediate.transport import Transport

TIMEOUT: Final = 10.0
#: How the TLS session starts: implicit (TLS from the first byte: IMAPS, SMTPS), or STARTTLS after a greeting.
MODES: Final = ("implicit", "smtp", "lmtp")
PEM: Final = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.+?)-----END CERTIFICATE-----", re.DOTALL)
CONNECT_FAILED: Final = 10
HANDSHAKE_FAILED: Final = 11
NO_STARTTLS: Final = 12

# Arguments: host port mode seconds server-name. Prints "version TLSv1.3" and "cert BASE64-DER", or says on stderr
# why not and exits CONNECT_FAILED, HANDSHAKE_FAILED or NO_STARTTLS.
SCRIPT: Final = r"""import base64, socket, ssl, sys
h, p, mode, t, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
def out(code, text):
    sys.stderr.write(text + "\n"); sys.exit(code)
try:
    s = socket.create_connection((h, p), timeout=t)
except ConnectionRefusedError:
    out(10, "connect: Connection refused")
except socket.timeout:
    out(10, "connect: Connection timed out")
except OSError as e:
    out(10, "connect: %s" % (e.strerror or e))
f = s.makefile("rb", buffering=0)
def reply():
    lines = []
    while len(lines) < 64:
        line = f.readline(1024)
        if not line:
            raise EOFError("the connection closed")
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if line[3:4] != b"-":
            return lines
    raise EOFError("a reply of more than 64 lines")
try:
    if mode in ("smtp", "lmtp"):
        greeting = reply()
        if not greeting[0].startswith("220"):
            out(12, "greeting: %s" % greeting[0][:200])
        s.sendall(("EHLO" if mode == "smtp" else "LHLO").encode() + b" remediate.probe\r\n")
        offered = reply()
        if not any(l[4:].strip().upper() == "STARTTLS" for l in offered):
            out(12, "no STARTTLS in the reply to %s: %s" % ("EHLO" if mode == "smtp" else "LHLO",
                                                           " | ".join(l[:80] for l in offered[:8])))
        s.sendall(b"STARTTLS\r\n")
        ready = reply()
        if not ready[-1].startswith("220"):
            out(12, "STARTTLS answered: %s" % ready[-1][:200])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(s, server_hostname=sni or None)
    der = tls.getpeercert(binary_form=True)
    print("version %s" % tls.version())
    print("cert %s" % base64.b64encode(der).decode())
    tls.close()
except ssl.SSLError as e:
    out(11, "TLS handshake: %s" % e)
except (OSError, EOFError) as e:
    out(11, "dialogue: %s" % e)
"""


@record(frozen=True)
class Certificate:
    """What identifies a certificate to an operator."""

    fingerprint: str  # SHA-256 of the DER, lowercase hex
    not_after: datetime  # aware, UTC
    subject: str

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        cert = x509.load_der_x509_certificate(der)
        return cls(cert.fingerprint(hashes.SHA256()).hex(), cert.not_valid_after_utc, cert.subject.rfc4514_string())

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def describe(self) -> str:
        return f"sha256 {self.fingerprint}, notAfter {self.not_after:%Y-%m-%d %H:%M}Z"


@record(frozen=True)
class Served:
    """What a TLS listener gave us: its certificate, or (certificate None) why there is none."""

    target: str  # [host]:port
    mode: str
    certificate: Certificate | None
    detail: str  # the TLS version, or why there is no certificate
    reachable: bool = True  # False: nothing listens, or it does not answer


def first_certificate(pem: bytes) -> Certificate | None:
    """The first certificate of a PEM file (the server's own, in a full chain), or None when it holds none."""
    found = PEM.search(pem)
    if found is None:
        return None
    try:
        return Certificate.from_der(base64.b64decode(b"".join(found.group(1).split()), validate=True))
    except (ValueError, binascii.Error):
        return None


def served(transport: Transport, host: str, port: int, mode: str = "implicit", server_name: str = "",
           timeout: float = TIMEOUT) -> Served:
    """The certificate host:port serves, as `transport`'s host sees it; never raises for a network outcome."""
    where = f"[{host}]:{port}"
    how = "STARTTLS after " + ("EHLO" if mode == "smtp" else "LHLO") if mode in ("smtp", "lmtp") else "implicit TLS"
    result = transport.run([*transport.interpreter, "-c", SCRIPT, host, str(port), mode, f"{timeout:g}", server_name],
                           sudo=False, timeout=timeout * 4 + 10, display=f"TLS probe {where} ({how}) from {transport.name}")
    said = result.stderr.strip().splitlines()
    reason = said[-1] if said else f"exit code {result.exit_code}"
    if result.exit_code == CONNECT_FAILED:
        return Served(where, mode, None, reason, reachable=False)
    if not result.ok:
        return Served(where, mode, None, reason)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    try:
        certificate = Certificate.from_der(base64.b64decode(lines.get("cert", ""), validate=True))
    except (ValueError, binascii.Error):
        return Served(where, mode, None, "no certificate in the probe's answer")
    return Served(where, mode, certificate, f"{lines.get('version', 'TLS')}, {how}")
