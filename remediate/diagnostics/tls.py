"""tls-certificate: is a TLS listener serving the certificate its file holds, and is that one far from expiring."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from remediate.contract import validate
from remediate.contract.params import Param
from remediate.diagnostics import CheckType, Facts, Verdict, register
from remediate.errors import InputError

if TYPE_CHECKING:  # the probe imports cryptography (about 20 ms): imported where it is used, not with the checks
    from remediate.probes import tls


def now() -> datetime:
    """The time expiry is measured from (a function, so that tests can move it)."""
    return datetime.now(UTC)


@register
class TlsCertificate(CheckType):
    """The certificate served on address:port is the first in cert_file (SHA-256), valid min_days more.

    The handshake runs on the host (implicit TLS, or STARTTLS after EHLO/LHLO), and the findings name both
    fingerprints. A renewed file that the service has not loaded yet is a finding its fix can act on (a reload); a
    file that itself expires within min_days is not (it needs a renewal). A host without cert_file is left out."""

    name = "tls-certificate"
    params = {
        "address": Param(str, required=True, help="where the service listens, as the host reaches it"),
        "port": Param(int, required=True, help="e.g. 25 (with starttls: smtp), 465, 993"),
        "starttls": Param(str, default="implicit",
                          help="implicit (TLS from the first byte: IMAPS, SMTPS), smtp or lmtp (STARTTLS after EHLO/LHLO)"),
        "cert_file": Param(str, required=True, help="the PEM file on the host the service reads its certificate from "
                                                    "(the first certificate in it is compared)"),
        "min_days": Param((int, float), default=14, help="days the served certificate must still be valid for"),
        "server_name": Param(str, default="", help="the name to ask for (SNI), when the service serves several"),
    }

    def validate(self) -> None:
        from remediate.probes import tls
        if self.p["starttls"] not in tls.MODES:
            raise InputError(f"{self.at}: starttls must be one of {', '.join(tls.MODES)}, not {self.p['starttls']!r}")
        validate.host(self.p["address"], f"{self.at}: address")
        validate.port(self.p["port"], f"{self.at}: port")

    def run(self, facts: Facts) -> Verdict | None:
        from remediate.probes import tls
        path = self.p["cert_file"]
        state = facts.transport.read(path)
        if state is None:
            return None  # no such certificate on this host: the check does not apply here (diagnose without -p)
        on_disk = tls.first_certificate(state.content)
        if on_disk is None:
            return Verdict(False, f"{path} holds no PEM certificate", fixable=False)
        got = tls.served(facts.transport, self.p["address"], self.p["port"], self.p["starttls"], self.p["server_name"])
        if got.certificate is None:
            return Verdict(None, f"{got.target} serves no certificate we could read: {got.detail}; {path} has "
                                 f"{on_disk.describe()}", fixable=False)
        return judge(got, on_disk, path, float(self.p["min_days"]), now())


def judge(got: tls.Served, on_disk: tls.Certificate, path: str, min_days: float, at: datetime) -> Verdict:
    """The verdict on a served certificate against its file and the expiry threshold."""
    served = got.certificate
    assert served is not None
    seen = f"{got.target} serves {served.describe()} ({got.detail}); {path} has {on_disk.describe()}"
    left, file_left = served.days_left(at), on_disk.days_left(at)
    if served.fingerprint != on_disk.fingerprint:
        if file_left < min_days:
            return Verdict(False, f"{seen}: not the file's certificate, and the file's own expires in "
                                  f"{file_left:.1f} days (under {min_days:g}): it needs a renewal, not a reload",
                           fixable=False)
        return Verdict(False, f"{seen}: the file was renewed and the service still serves the old certificate "
                              f"(valid {left:.1f} more days): it has not reloaded it")
    if left < min_days:
        return Verdict(False, f"{seen}: the file's certificate is served, and expires in {left:.1f} days (under "
                              f"{min_days:g}): it needs a renewal, not a reload", fixable=False)
    return Verdict(True, f"{seen}: the file's certificate is served, valid {left:.1f} more days")
