"""Make a service serve the certificate its file holds: reload it in its container, and re-create the container only
when the reload did not take. No file is changed: a renewal client wrote the files; this makes the service read them."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from remediate.contract import validate
from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, argv, register
from remediate.probes.containers import compose_command, container_name
from remediate.probes.waiting import NotYet, wait
from remediate.transport import Transport

if TYPE_CHECKING:  # the probe imports cryptography (about 20 ms): imported where it is used, not with the kinds
    from remediate.contract.host import StepContext as Context
    from remediate.probes import tls

NO_FILE: Final = "changes no file: it makes the service read the certificate files already on disk"


@register
class TlsReload(Step):
    """Reload a service in its container until it serves the first certificate of cert_file; no file is changed.

    Compares SHA-256 fingerprints of the served certificate (address:port, probed from the host) and the file's. When
    the reload did not take within timeout, re-creates the container (compose up -d --force-recreate, given
    compose_dir and service). Rollback has nothing to undo."""

    kind = "tls-reload"
    params = {
        "container": Param(str, required=True, help="the container the service runs in"),
        "reload": Param((str, list), required=True, command=True,
                        help="the reload command inside the container, e.g. [postfix, reload] or [doveadm, reload]"),
        "address": Param(str, required=True, help="where the service listens, as the host reaches it"),
        "port": Param(int, required=True),
        "starttls": Param(str, default="implicit", help="implicit, smtp or lmtp (as the tls-certificate check)"),
        "cert_file": Param(str, required=True, help="the PEM file on the host the service reads its certificate from"),
        "server_name": Param(str, default=""),
        "timeout": Param(int, default=20, help="seconds for a reload (then a re-creation) to take"),
        "compose_dir": Param(str, default="", help="the compose project's folder: re-create the container there when "
                                                   "the reload does not take (empty: never re-create)"),
        "compose_file": Param(str, default="docker-compose.yml"),
        "service": Param(str, default="", help="the compose service of the container"),
    }

    def validate(self) -> None:
        where = f"{self.spec.where}: step {self.id!r}"
        container_name(self.p["container"], f"{where}: container")
        validate.host(self.p["address"], f"{where}: address")
        validate.port(self.p["port"], f"{where}: port")
        from remediate.probes import tls
        if self.p["starttls"] not in tls.MODES:
            raise InputError(f"{where}: starttls must be one of {', '.join(tls.MODES)}, not {self.p['starttls']!r}")
        if bool(self.p["compose_dir"]) != bool(self.p["service"]):
            raise InputError(f"{where}: give compose_dir and service together (to re-create the container when a "
                             "reload does not take), or neither")

    def _exec(self) -> list[str]:
        return ["docker", "exec", "--", self.p["container"], *argv(self.p["reload"])]

    def _recreate(self, transport: Transport) -> list[str]:
        path = posixpath.join(self.p["compose_dir"], self.p["compose_file"])
        return [*compose_command(transport), "--project-directory", self.p["compose_dir"], "-f", path, "up", "-d",
                "--no-deps", "--force-recreate", self.p["service"]]

    def _compare(self, transport: Transport) -> tuple[tls.Certificate, tls.Served]:
        """The file's certificate and what is served; a StepError when either cannot be read."""
        from remediate.probes import tls
        state = transport.read(self.p["cert_file"])
        on_disk = tls.first_certificate(state.content) if state is not None else None
        if on_disk is None:
            raise StepError(f"{self.p['cert_file']} holds no PEM certificate" if state else
                            f"no certificate file {self.p['cert_file']}", hint="renew the certificate first")
        return on_disk, tls.served(transport, self.p["address"], self.p["port"], self.p["starttls"],
                                   self.p["server_name"])

    def plan(self, ctx: Context) -> Plan:
        on_disk, got = self._compare(ctx.transport(self.target))
        if got.certificate is None:
            raise StepError(f"{got.target} serves no certificate we could read: {got.detail}",
                            hint="is the service up, and is this its TLS port?")
        if got.certificate.fingerprint == on_disk.fingerprint:
            return self.planned(f"{got.target} already serves {self.p['cert_file']}'s certificate ({on_disk.describe()})")
        commands = [shlex.join(self._exec())]
        if self.p["compose_dir"]:
            commands.append(f"only if the reload did not take: {shlex.join(self._recreate(ctx.transport(self.target)))}")
        return self.planned(f"{got.target} serves {got.certificate.describe()}; {self.p['cert_file']} has "
                            f"{on_disk.describe()}; {NO_FILE}", commands=tuple(commands),
                            data={"served": got.certificate.fingerprint, "file": on_disk.fingerprint})

    def apply(self, ctx: Context, plan: Plan) -> Applied:
        transport = ctx.transport(self.target)
        ctx.record(self.id, via=transport, files=[], note=NO_FILE, served_before=plan.data.get("served"),
                   file=plan.data.get("file"))
        result = transport.run(self._exec(), timeout=120)
        ctx.note(self.id, results=[result.summary()])
        if result.ok:
            try:
                return Applied(data={"how": "reload", "served": self._wait(transport, self.p["timeout"])})
            except StepError as e:
                if not self.p["compose_dir"]:
                    raise
                why = str(e)
        else:
            why = f"`{result.command}` exited {result.exit_code}: {result.output.strip()[-300:] or '(no output)'}"
            if not self.p["compose_dir"]:
                raise StepError(why)
        ctx.note(self.id, escalated=f"the reload did not take ({why}); re-creating the container")
        made = transport.run(self._recreate(transport), timeout=300)
        ctx.note(self.id, results=[result.summary(), made.summary()])
        if not made.ok:
            raise StepError(f"the reload did not take ({why}), and `{made.command}` exited {made.exit_code}: "
                            f"{made.output.strip()[-300:]}")
        return Applied(data={"how": "re-created", "served": self._wait(transport, self.p["timeout"] * 3)})

    def _wait(self, transport: Transport, seconds: float) -> str:
        """Until the served certificate is the file's; its fingerprint."""
        def same() -> str:
            on_disk, got = self._compare(transport)
            if got.certificate is None or got.certificate.fingerprint != on_disk.fingerprint:
                shown = got.certificate.describe() if got.certificate else got.detail
                raise NotYet(f"{got.target} serves {shown}, not {self.p['cert_file']}'s sha256 {on_disk.fingerprint}",
                             seen=shown)
            return on_disk.fingerprint
        return wait(seconds, f"{self.p['address']}:{self.p['port']} serving {self.p['cert_file']}'s certificate", same)

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        on_disk, got = self._compare(ctx.transport(self.target))
        if got.certificate is None or got.certificate.fingerprint != on_disk.fingerprint:
            raise StepError(f"{got.target} serves {got.certificate.describe() if got.certificate else got.detail}, "
                            f"not {self.p['cert_file']}'s {on_disk.describe()}")
        how = "after a reload" if applied.data.get("how") == "reload" else "after re-creating the container"
        return f"{got.target} serves {self.p['cert_file']}'s certificate {how} ({on_disk.describe()})"

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        return f"nothing to undo: this step {NO_FILE} (the old certificate is not served again)"
