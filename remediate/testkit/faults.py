"""Faults to inject into a lab host: a file edit, a whole file, any callable, or one of the lab's named faults."""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes

if TYPE_CHECKING:
    from remediate.testkit.host import LabHost


class Injectable(Protocol):
    """A fault that knows how to make itself happen on a host."""

    def inject(self, host: LabHost) -> None: ...


@dataclass(frozen=True)
class Edit:
    """Replace `old` by `new` in a file of the host (old must be there, once or more: a fault that finds nothing to
    break fails the test rather than leaving the host healthy)."""

    path: str
    old: str
    new: str

    def inject(self, host: LabHost) -> None:
        text = host.read_text(self.path)
        if self.old not in text:
            raise AssertionError(f"fault Edit({self.path!r}): {self.old!r} is not in the file, so nothing was broken")
        host.write_text(self.path, text.replace(self.old, self.new))


@dataclass(frozen=True)
class Write:
    """Make a file of the host hold exactly `content` (mode 0644 when it is new)."""

    path: str
    content: str

    def inject(self, host: LabHost) -> None:
        host.write_text(self.path, self.content)


#: A fault: a named lab fault, an Edit or a Write, or any callable given the host.
Fault: TypeAlias = "str | Injectable | Callable[[LabHost], object]"

#: What the gateway answers a client outside mynetworks.
RELAY_DENIED: Final = (454, "4.7.1 <someone@example.com>: Relay access denied")
#: The bounce of the lab's smtp-to-lmtp incident: Postfix speaks SMTP to Dovecot's LMTP port.
LMTP_BOUNCE: Final = "refused to talk to me: 500 5.5.1 Unknown command"
#: Where the TLS gateway's Dovecot serves IMAPS, IMAP over implicit TLS (lab/hosts/ec2-mx-tls).
TLS_IMAPS_PORT: Final = 993


def relay_access_denied(host: LabHost, client: str = "127.0.0.25") -> None:
    """The relay gateway refuses the application host 127.0.0.25 relaying: one real 454 reject in its log."""
    address = host.postfix_address()
    host.wait_listening(address, 25)
    with smtplib.SMTP(source_address=(client, 0), timeout=10) as smtp:
        smtp.connect(address, 25)
        smtp.ehlo("app.lab")
        smtp.mail("test@kuma8088.com")
        code, reply = smtp.rcpt("someone@example.com")
        smtp.rset()
    if (code, reply.decode()) != RELAY_DENIED:
        raise AssertionError(f"fault relay-access-denied: RCPT from {client} to {address}:25 got {code} "
                             f"{reply.decode()!r}, not {RELAY_DENIED}: is mynetworks already covering it?")


def smtp_to_lmtp_bounce(host: LabHost) -> None:
    """The lab's incident as a user meets it: a mail sent through the gateway bounces off Dovecot's LMTP port."""
    tag = uuid.uuid4().hex[:12]
    container = host.vars.get("postfix_container", "mailserver-postfix")
    message = f"Subject: kit {tag}\nMessage-ID: <{tag}@kit.test>\n\nfault {tag}\n"
    host.docker("exec", "-i", container, "sendmail", "-f", "test@kuma8088.com", "test@kuma8088.com", stdin=message)
    queued = host.wait_for_log(container, f"message-id=<{tag}@kit.test>")
    queue_id = queued.split("]: ", 1)[1].split(":", 1)[0]
    line = host.wait_for_log(container, f"{queue_id}: to=<test@kuma8088.com>")
    if LMTP_BOUNCE not in line:
        raise AssertionError(f"fault smtp-to-lmtp: mail {queue_id} was not bounced by LMTP: {line}")


def served_fingerprint(address: str, port: int, starttls: bool) -> str:
    """The SHA-256 of the certificate address:port serves (STARTTLS after EHLO, or implicit TLS), not verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if starttls:
        with smtplib.SMTP(address, port, timeout=10) as smtp:
            smtp.starttls(context=context)
            assert isinstance(smtp.sock, ssl.SSLSocket)
            der = smtp.sock.getpeercert(binary_form=True)
    else:
        with socket.create_connection((address, port), timeout=10) as raw, context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def tls_renewed_on_disk(host: LabHost) -> None:
    """The TLS gateway's certificate renewed on disk (a new key and certificate, valid 90 days, written in place with
    openssl as a renewal client would), and neither Postfix nor Dovecot reloaded: both still serve the old one."""
    address, certs = host.postfix_address(), Path(host.compose_dir) / "certs"
    listeners = ((address, 25, True), (address, TLS_IMAPS_PORT, False))
    for where, port, starttls in listeners:
        host.wait_listening(where, port)
        served_fingerprint(where, port, starttls)  # a server process now holds the old certificate, as in production
    done = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-subj", "/CN=mx-tls.lab", "-days", "90", "-keyout", str(certs / "privkey.pem.new"),
                           "-out", str(certs / "fullchain.pem.new")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"fault tls-renewed-on-disk: openssl exited {done.returncode}: {done.stderr.strip()}")
    os.chmod(certs / "privkey.pem.new", 0o600)
    os.replace(certs / "privkey.pem.new", certs / "privkey.pem")
    os.replace(certs / "fullchain.pem.new", certs / "fullchain.pem")
    on_disk = x509.load_pem_x509_certificate((certs / "fullchain.pem").read_bytes()).fingerprint(hashes.SHA256()).hex()
    for where, port, starttls in listeners:
        if served_fingerprint(where, port, starttls) == on_disk:
            raise AssertionError(f"fault tls-renewed-on-disk: {where}:{port} already serves the renewed certificate "
                                 f"(sha256 {on_disk}): did it reload?")


#: How many mails the fault queue-stuck leaves deferred, and how long each of its waits may take.
QUEUE_STUCK_MAILS: Final = 3
QUEUE_STUCK_WAIT: Final = 60.0


def deferred_queue(host: LabHost, container: str) -> dict[str, str]:
    """Queue id -> queue name (active, deferred, ...) of every message in the container's Postfix queue."""
    lines = host.docker("exec", container, "postqueue", "-j").splitlines()
    return {m["queue_id"]: m["queue_name"] for m in map(json.loads, filter(None, lines))}


def lmtp_answers(address: str, port: int) -> bool:
    """Whether address:port answers LHLO with 250 (a listening socket alone does not say Dovecot is ready)."""
    try:
        with smtplib.LMTP(address, port, timeout=5) as lmtp:
            return lmtp.ehlo()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


def _until(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + QUEUE_STUCK_WAIT
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"fault queue-stuck: {what} within {QUEUE_STUCK_WAIT:.0f} s")
        time.sleep(0.2)


def queue_stuck(host: LabHost, count: int = QUEUE_STUCK_MAILS) -> tuple[str, ...]:
    """Mail stuck in the deferred queue after the next hop came back: Dovecot stopped, `count` mails sent over SMTP
    (each deferred: LMTP connection refused), Dovecot started again and answering LHLO, and Postfix not retrying
    before minimal_backoff_time. The queue ids of the stuck mails (host.inject drops them; call this for them)."""
    postfix, dovecot = host.vars["postfix_container"], host.vars["dovecot_container"]
    address, hop, port = host.postfix_address(), str(host.vars["next_hop_address"]), int(host.vars["next_hop_port"])
    host.wait_listening(address, 25)
    host.docker("stop", dovecot)
    made = []
    for _ in range(count):
        tag = uuid.uuid4().hex[:12]
        message = (f"From: test@kuma8088.com\r\nTo: test@kuma8088.com\r\nSubject: stuck {tag}\r\n"
                   f"Message-ID: <{tag}@kit.test>\r\n\r\nfault queue-stuck {tag}\r\n")
        with smtplib.SMTP(address, 25, source_address=(address, 0), timeout=10) as smtp:
            smtp.ehlo("app.lab")
            smtp.mail("test@kuma8088.com")
            smtp.rcpt("test@kuma8088.com")
            code, reply = smtp.data(message)
        if code != 250 or b"queued as " not in reply:
            raise AssertionError(f"fault queue-stuck: {address}:25 answered DATA with {code} {reply.decode()!r}")
        made.append(reply.decode().rsplit("queued as ", 1)[1].strip())
    _until(lambda: all(deferred_queue(host, postfix).get(i) == "deferred" for i in made),
           f"mails {', '.join(made)} were not all deferred in {postfix}'s queue (is the next hop still up?)")
    host.docker("start", dovecot)
    _until(lambda: lmtp_answers(hop, port), f"{dovecot} did not answer LHLO on {hop}:{port}")
    return tuple(made)


def named_faults() -> dict[str, Callable[[LabHost], object]]:
    """The lab's faults by name: each reproduces an incident on the lab host it is injected into."""
    return {"relay-access-denied": relay_access_denied, "smtp-to-lmtp": smtp_to_lmtp_bounce,
            "tls-renewed-on-disk": tls_renewed_on_disk, "queue-stuck": queue_stuck}


def inject(fault: Fault, host: LabHost) -> None:
    """Make fault happen on host."""
    if isinstance(fault, str):
        known = named_faults()
        if fault not in known:
            raise AssertionError(f"no lab fault named {fault!r}; the lab's faults: {', '.join(sorted(known))} "
                                 "(or give an Edit, a Write or a callable)")
        known[fault](host)
    elif isinstance(fault, (Edit, Write)):
        fault.inject(host)
    elif callable(fault):
        fault(host)
    else:
        fault.inject(host)

