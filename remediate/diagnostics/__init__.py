"""Diagnose check types: what a playbook's `diagnose:` section declares. Each reads the host through the probes (and a
shared, cached Facts), changes nothing, and returns a Verdict with the line that proves it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, ClassVar, Final

from remediate.contract.params import Param, param_value, refuse_unknown
from remediate.diagnostics.logscan import scan
from remediate.errors import CommandError, InputError
from remediate.mail import resolve
from remediate.probes import containers
from remediate.transport import Transport


@dataclass(frozen=True)
class CheckSpec:
    """A diagnose check as the playbook wrote it, variables substituted."""

    id: str
    check: str
    params: Mapping[str, Any]
    where: str = ""
    #: The playbook that fixes a finding of this check (None: no playbook does).
    fix: str | None = None
    playbook: str = ""


@dataclass(frozen=True)
class Verdict:
    """ok None: could not be decided (evidence says why). fixable: the check's fix: applies to this finding.
    suggest: variables to pass to that fix (e.g. the client address seen in the rejects)."""

    ok: bool | None
    evidence: str
    fixable: bool = True
    suggest: Mapping[str, str] = field(default_factory=dict)


class CheckType(ABC):
    """Base of every diagnose check type."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        label = f"check {spec.id!r}"
        refuse_unknown(spec.params, self.params, spec.where, label, self.name)  # a misspelt name first: it explains a missing one
        self.p = {name: param_value(name, param, spec.params.get(name, param.default), spec.where, label, self.name)
                  for name, param in self.params.items()}
        self.validate()

    @property
    def at(self) -> str:
        return f"{self.spec.where}: check {self.spec.id!r}"

    def validate(self) -> None:
        """Extra parameter checks; raise InputError citing self.at."""

    def prepare(self, facts: Facts) -> None:
        """Tell the shared facts what this check will ask, before any check runs (log signatures)."""

    @abstractmethod
    def run(self, facts: Facts) -> Verdict | None:
        """Read the host; None when the check does not apply here (it is left out)."""


REGISTRY: dict[str, type[CheckType]] = {}
SHIPPED: Final = ("container", "logs", "postfix", "iac")


def register(cls: type[CheckType]) -> type[CheckType]:
    REGISTRY[cls.name] = cls
    return cls


def load_checks() -> None:
    """Import the shipped check types (each registers itself)."""
    for module in SHIPPED:
        import_module(f"{__name__}.{module}")


class Facts:
    """What the checks of one host read, each asked once: compose environments, containers, postconf, logs."""

    def __init__(self, transport: Transport, local: Transport | None) -> None:
        self.transport = transport
        self.local = local
        self.signatures: dict[str, list[Any]] = {}  # container -> the log signatures asked for, in order
        self.other_deferred: set[str] = set()
        self.probes: list[Any] = []
        self._env: dict[tuple[str, str], dict[str, str | None]] = {}
        self._inspect: dict[str, dict[str, Any] | None] = {}
        self._postconf: dict[str, dict[str, str]] = {}
        self._scanned: dict[str, dict[str, Any]] = {}

    def compose(self, path: str, service: str) -> dict[str, str | None]:
        """The service's environment as compose reads it (env_file, .env, interpolation)."""
        if (path, service) not in self._env:
            state = self.transport.read(path)
            if state is None:
                raise InputError(f"{self.transport.name}:{path} does not exist", hint="set compose_dir / compose_file")
            text = state.content.decode("utf-8", "replace")
            self._env[(path, service)] = resolve.read(self.transport.read, path, service, text).resolved()
        return self._env[(path, service)]

    def container(self, name: str) -> dict[str, Any] | None:
        if name not in self._inspect:
            self._inspect[name] = containers.inspect(self.transport, name)
        return self._inspect[name]

    def running(self, name: str) -> bool:
        facts = self.container(name)
        return bool(facts and facts["State"]["Running"])

    def postconf(self, container: str, keys: list[str]) -> dict[str, str]:
        """Postfix's effective values inside a running container; the keys not yet known asked in one call."""
        known = self._postconf.setdefault(container, {})
        missing = [k for k in keys if k not in known]
        if missing:
            seen = containers.postconf(self.transport, container, missing)
            if seen is None:
                raise CommandError(f"{self.transport.name}: postconf in {container} failed")
            known.update(seen)
        return {k: known[k] for k in keys}

    def scanned(self, container: str) -> dict[str, Any]:
        """Every log signature asked for this container, counted in one pass over its log (see checks.logscan)."""
        if container not in self._scanned:
            self._scanned[container] = {s.name: s for s in scan(containers.logs(self.transport, container),
                                                                self.signatures.get(container, []),
                                                                other_deferred=container in self.other_deferred)}
        return self._scanned[container]
