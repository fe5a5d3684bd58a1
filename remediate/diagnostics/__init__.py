"""Check types: what a playbook's `diagnose:` section declares, and what an `assert` step proves. Each reads the host
through the probes (and the host's shared facts), changes nothing, and returns a Verdict with the line that proves it.
They are plug-ins like step kinds: any installed package may give one (entry-point group remediate.checks)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import field
from typing import Any, ClassVar, Final

from remediate.contract import plugins
from remediate.contract.entrypoints import entry_points
from remediate.contract.params import Param, param_value, refuse_unknown
from remediate.diagnostics.facts import Facts as Facts  # re-exported: what a check type's run() is given
from remediate.records import record


@record(frozen=True)
class CheckSpec:
    """A check as the playbook wrote it (in diagnose:, or as an assert step), variables substituted."""

    id: str
    check: str
    params: Mapping[str, Any]
    where: str = ""
    #: The playbook that fixes a finding of this check (None: no playbook does).
    fix: str | None = None
    playbook: str = ""
    #: How messages name it: "check 'ID'" in diagnose: (the default), "step 'ID'" for an assert step.
    label: str = ""


@record(frozen=True)
class Verdict:
    """ok None: could not be decided (evidence says why). fixable: the check's fix: applies to this finding.
    suggest: variables to pass to that fix (e.g. the client address seen in the rejects)."""

    ok: bool | None
    evidence: str
    fixable: bool = True
    suggest: Mapping[str, str] = field(default_factory=dict)


class CheckType(ABC):
    """Base of every check type (diagnose: and assert steps)."""

    name: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        label = self.label
        refuse_unknown(spec.params, self.params, spec.where, label, self.name)  # a misspelt name first: it explains a missing one
        self.p = {name: param_value(name, param, spec.params.get(name, param.default), spec.where, label, self.name)
                  for name, param in self.params.items()}
        self.validate()

    @property
    def label(self) -> str:
        return self.spec.label or f"check {self.spec.id!r}"

    @property
    def at(self) -> str:
        return f"{self.spec.where}: {self.label}"

    def validate(self) -> None:
        """Extra parameter checks; raise InputError citing self.at."""

    def prepare(self, facts: Facts) -> None:
        """Tell the shared facts what this check will ask, before any check runs (log signatures)."""

    @abstractmethod
    def run(self, facts: Facts) -> Verdict | None:
        """Read the host; None when the check does not apply here (it is left out)."""


#: Check types whose plug-in cannot be loaded, and why: only a playbook that uses one fails.
BROKEN: dict[str, str] = {}
REGISTRY: plugins.Registry[type[CheckType]] = plugins.Registry("check type", "check types", BROKEN)
#: Which installed package each check type came from (entry point group remediate.checks).
ORIGIN: dict[str, str] = {}
ENTRY_POINTS: Final = "remediate.checks"
SHIPPED: Final = ("container", "logs", "postfix", "iac", "tls", "queue")


def register(cls: type[CheckType]) -> type[CheckType]:
    REGISTRY[cls.name] = cls
    return cls


def load_checks(*, every: bool = True) -> None:
    """Fill REGISTRY from the remediate.checks entry points of every installed package, remediate's own included.

    A check type in another package is usable in a playbook's diagnose: (and by an assert step) with no change to
    remediate: its package declares `[project.entry-points."remediate.checks"] NAME = "module:Class"`. Two packages
    may not give one check type. Run from a source tree that is not installed, the shipped ones are imported.
    every=False leaves remediate's own to be imported when one is first looked up."""
    if not ORIGIN:
        plugins.load_into(REGISTRY, ORIGIN, entry_points(group=ENTRY_POINTS), base=CheckType, attr="name",
                          doc="docs/writing-runbooks.md", package=__name__, shipped=SHIPPED)
    if every:
        REGISTRY.load_all()


def shipped_check(name: str) -> bool:
    """Whether the check type comes with remediate (else a plug-in's package gives it)."""
    return ORIGIN.get(name, "remediate").split()[0] == "remediate"
