"""The records the commands that only read print, typed: the inventory as read, the playbooks, step kinds and check
types installed, and what diagnose found. Part of events (which re-exports them): each is an Event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediate.engine.event import Event
from remediate.records import plain, record


@record(frozen=True)
class HostVar:
    """One variable of `inventory --host`: its value and where it came from (file:line, group or host)."""

    value: Any
    origin: str

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "from": self.origin}


@plain
class InventoryHost(Event):
    """`inventory --host`: one host's merged variables, each with where its value came from."""

    name = "inventory_host"
    always = frozenset({"port", "user"})
    host: str
    address: str
    port: int | None
    user: str | None
    become: bool
    vars: Mapping[str, HostVar]

    @classmethod
    def typed(cls, given: dict[str, Any]) -> dict[str, Any]:
        return {**given, "vars": {k: HostVar(v["value"], v["from"]) for k, v in given["vars"].items()}}


@plain
class InventoryGroup(Event):
    """`inventory --graph`: one group, all its hosts (its child groups' included), and the child groups and hosts
    named in it (None: not known, as from an older remediate; each group is then shown with all its hosts)."""

    name = "inventory_group"
    group: str
    hosts: list[str]
    children: list[str] | None = None
    direct_hosts: list[str] | None = None


@plain
class PlaybookListed(Event):
    """`remediate playbooks`: one playbook on the search path: its steps, its variables with their defaults, the
    files of the same name it hides, and where it comes from (source: shipped (remediate X.Y), package NAME VERSION
    for a playbook an installed package declares, or the folder of yours that holds it)."""

    name = "playbook"
    always = frozenset({"description"})
    playbook: str
    description: str | None
    steps: list[str]
    vars: Mapping[str, Any]
    path: str
    shipped: bool
    shadows: list[str]
    source: str | None = None


@record(frozen=True)
class ParamInfo:
    """One parameter of a step kind or check type, as `remediate kinds` and `remediate checks` show it."""

    name: str
    type: str  # as people read it: "string", "number or empty" ...
    required: bool
    default: Any
    help: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required, "default": self.default,
                "help": self.help}


def _params(given: dict[str, Any]) -> dict[str, Any]:
    return {**given, "params": [ParamInfo(**p) for p in given["params"]]}


@plain
class KindListed(Event):
    """`remediate kinds`: one step kind, where it comes from, its parameters, what later steps get, an example."""

    name = "kind"
    always = frozenset({"reconciler"})
    kind: str
    package: str
    plugin: bool
    summary: str
    reconciler: bool | None
    params: list[ParamInfo]
    outputs: list[str]
    example: str

    @classmethod
    def typed(cls, given: dict[str, Any]) -> dict[str, Any]:
        return _params(given)


@plain
class CheckType(Event):
    """`remediate checks`: one diagnose check type, where it comes from, its parameters and an example."""

    name = "check_type"
    check: str
    package: str
    plugin: bool
    summary: str
    params: list[ParamInfo]
    example: str

    @classmethod
    def typed(cls, given: dict[str, Any]) -> dict[str, Any]:
        return _params(given)


@plain
class CheckResult(Event):
    """diagnose: one check on one host, what it found and the playbook that fixes it (with the variables to give
    it, found on the host; None: none)."""

    name = "check"
    always = frozenset({"ok", "fix"})
    host: str
    check: str
    ok: bool | None  # None: could not be decided (and why is in evidence)
    evidence: str
    fix: str | None
    playbook: str
    suggest: Mapping[str, str] | None = None


@plain
class SignatureFound(Event):
    """diagnose: a known failure seen in the mail log, how often and when, what it cost and from where."""

    name = "signature"
    always = frozenset({"first_seen", "last_seen"})
    host: str
    signature: str
    meaning: str
    count: int
    first_seen: str | None
    last_seen: str | None
    messages_bounced: int
    recipient_domains: Mapping[str, int]
    clients: Mapping[str, int]


@plain
class ProbeResult(Event):
    """diagnose: what a probe of the host's mail path found."""

    name = "probe"
    always = frozenset({"target", "verdict", "evidence"})
    host: str
    target: str
    verdict: str
    evidence: Any


@plain
class Diagnosed(Event):
    """diagnose: the verdict on one host, last; the fixes (as -p takes them) with the -e each suggests."""

    name = "diagnosis"
    always = frozenset({"error"})
    host: str
    healthy: bool
    exit_code: int
    findings: int
    fixes: list[str]
    error: str | None
    playbooks: list[str]
    suggest: Mapping[str, Mapping[str, Any]]
