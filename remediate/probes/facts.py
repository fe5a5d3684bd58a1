"""What was learned about one host on one connection (one per transport: per host per run), each asked once and
shared by probes, kinds and diagnose: which compose it has, whether it forwards ports, container state, compose
environments, Postfix's running values, container logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from remediate.errors import CommandError, InputError
from remediate.mail import resolve
from remediate.probes import docker
from remediate.transport import Transport


@dataclass
class HostFacts:
    """One host's facts. Two sorts: those that hold for the whole connection (the compose command, a refused port
    forwarding, whether a container's start-up log shows boky/postfix's contract as the plan read it), and the
    host's state as last read (containers, compose environments, postconf, logs), kept until forget()."""

    transport: Transport
    #: `docker compose` or `docker-compose`, once asked (containers.compose_command).
    compose_command: tuple[str, ...] | None = None
    #: Why the SSH server refused port forwarding ("" until it did): dialogues then run from the host's own shell.
    forwarding_refused: str = ""
    #: Per container: None when its start-up log shows boky/postfix's contract at work, else why it does not.
    contract_log: dict[str, str | None] = field(default_factory=dict)
    _inspect: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _env: dict[tuple[str, str], dict[str, str | None]] = field(default_factory=dict)
    _postconf: dict[str, dict[str, str]] = field(default_factory=dict)
    _logs: dict[str, list[str]] = field(default_factory=dict)

    def forget(self) -> None:
        """Drop the host's state as read so far (after something may have changed it); keep the connection's facts."""
        for table in (self._inspect, self._env, self._postconf, self._logs):
            table.clear()

    def container(self, name: str) -> dict[str, Any] | None:
        """docker inspect of the container, or None when there is none."""
        if name not in self._inspect:
            self._inspect[name] = docker.inspect(self.transport, name)
        return self._inspect[name]

    def running(self, name: str) -> bool:
        found = self.container(name)
        return bool(found and found["State"]["Running"])

    def compose(self, path: str, service: str) -> dict[str, str | None]:
        """The service's environment as compose reads it (env_file, .env, interpolation)."""
        if (path, service) not in self._env:
            state = self.transport.read(path)
            if state is None:
                raise InputError(f"{self.transport.name}:{path} does not exist", hint="set compose_dir / compose_file")
            text = state.content.decode("utf-8", "replace")
            self._env[(path, service)] = resolve.read(self.transport.read, path, service, text).resolved()
        return self._env[(path, service)]

    def postconf(self, container: str, keys: list[str]) -> dict[str, str]:
        """Postfix's running values inside a container; the keys not yet known asked in one call."""
        known = self._postconf.setdefault(container, {})
        missing = [k for k in keys if k not in known]
        if missing:
            seen = docker.postconf(self.transport, container, missing)
            if seen is None:
                raise CommandError(f"{self.transport.name}: postconf in {container} failed")
            known.update(seen)
        return {k: known[k] for k in keys}

    def logs(self, container: str) -> list[str]:
        """The container's recent log (docker.logs), read once until forget()."""
        if container not in self._logs:
            self._logs[container] = docker.logs(self.transport, container)
        return self._logs[container]


def of(transport: Transport) -> HostFacts:
    """The facts of transport's host, made on first use and kept with the connection."""
    if transport.facts is None:
        transport.facts = HostFacts(transport)
    facts: HostFacts = transport.facts
    return facts
