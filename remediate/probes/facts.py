"""What was learned about one host on one connection (one per transport: per host per run), each asked once and
shared by probes, kinds and diagnose: which compose it has, whether it forwards ports, container state, compose
environments, Postfix's running values, container logs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import field
from typing import Any, TypeVar

from remediate.errors import CommandError, InputError
from remediate.mail import resolve
from remediate.probes import docker
from remediate.records import record
from remediate.transport import Transport

T = TypeVar("T")
_MAKING = threading.Lock()  # one HostFacts per transport, even when two hosts' threads ask for it at once


@record
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

    @staticmethod
    def _cached(table: dict[Any, T], key: Hashable, read: Callable[[], T]) -> T:
        """table[key], read once. One connection's facts may be shared by several hosts' threads (a step that runs
        locally, or on another inventory host), and one may forget() while another reads: the value read is the one
        returned, never looked up again."""
        if key in table:
            try:
                return table[key]
            except KeyError:  # forgotten meanwhile: read again
                pass
        value = table[key] = read()
        return value

    def container(self, name: str) -> dict[str, Any] | None:
        """docker inspect of the container, or None when there is none."""
        return self._cached(self._inspect, name, lambda: docker.inspect(self.transport, name))

    def running(self, name: str) -> bool:
        found = self.container(name)
        return bool(found and found["State"]["Running"])

    def compose(self, path: str, service: str) -> dict[str, str | None]:
        """The service's environment as compose reads it (env_file, .env, interpolation)."""
        def read() -> dict[str, str | None]:
            state = self.transport.read(path)
            if state is None:
                raise InputError(f"{self.transport.name}:{path} does not exist", hint="set compose_dir / compose_file")
            text = state.content.decode("utf-8", "replace")
            return resolve.read(self.transport.read, path, service, text).resolved()

        return self._cached(self._env, (path, service), read)

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
        return self._cached(self._logs, container, lambda: docker.logs(self.transport, container))


def of(transport: Transport) -> HostFacts:
    """The facts of transport's host, made on first use and kept with the connection."""
    with _MAKING:
        if transport.facts is None:
            transport.facts = HostFacts(transport)
    facts: HostFacts = transport.facts
    return facts
