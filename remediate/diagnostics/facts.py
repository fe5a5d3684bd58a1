"""One diagnose pass over one host: the host's facts (probes.facts.HostFacts, the same object the run's probes and
kinds use) and what this pass asked of its logs and found listening. No fact of the host is kept here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from remediate.probes import facts as host_facts
from remediate.probes.facts import HostFacts
from remediate.transport import Transport

if TYPE_CHECKING:
    from remediate.diagnostics.logscan import Pattern, Signature
    from remediate.diagnostics.postfix import Probe


class Facts:
    """What the checks of one host read, each asked once (through HostFacts): compose environments, containers,
    postconf, logs; and the log signatures they asked for, counted in one pass per container."""

    def __init__(self, transport: Transport, local: Transport | None) -> None:
        self.host: HostFacts = host_facts.of(transport)
        self.local = local
        self.signatures: dict[str, list[Pattern]] = {}  # container -> the log signatures asked for, in order
        self.other_deferred: set[str] = set()
        self.probes: list[Probe] = []
        self._scanned: dict[str, dict[str, Signature]] = {}

    @property
    def transport(self) -> Transport:
        return self.host.transport

    def compose(self, path: str, service: str) -> dict[str, str | None]:
        """The service's environment as compose reads it (env_file, .env, interpolation)."""
        return self.host.compose(path, service)

    def container(self, name: str) -> dict[str, Any] | None:
        return self.host.container(name)

    def running(self, name: str) -> bool:
        return self.host.running(name)

    def postconf(self, container: str, keys: list[str]) -> dict[str, str]:
        """Postfix's effective values inside a running container; the keys not yet known asked in one call."""
        return self.host.postconf(container, keys)

    def scanned(self, container: str) -> dict[str, Signature]:
        """Every log signature asked for this container, counted in one pass over its log (see logscan)."""
        if container not in self._scanned:
            from remediate.diagnostics.logscan import scan  # its regexes compiled only when a log is read
            self._scanned[container] = {s.name: s for s in scan(self.host.logs(container),
                                                                self.signatures.get(container, []),
                                                                other_deferred=container in self.other_deferred)}
        return self._scanned[container]
