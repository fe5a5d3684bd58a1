"""Faults to inject into a lab host: a file edit, a whole file, any callable, or one of the lab's named faults."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, TypeAlias

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


def named_faults() -> dict[str, Callable[[LabHost], object]]:
    """The lab's faults by name: each reproduces an incident on the lab host it is injected into."""
    return {"relay-access-denied": relay_access_denied, "smtp-to-lmtp": smtp_to_lmtp_bounce}


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

