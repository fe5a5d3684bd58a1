"""A validated playbook (its steps and diagnose: checks as written) and its binding to one host: variables resolved,
steps and checks built, before any connection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from remediate import yamlin as source
from remediate.errors import RemediateError
from remediate.inputs.inventory import Host
from remediate.inputs.search_path import argument, resolve_fix
from remediate.inputs.variables import Budget, Resolver, lookup_in, referenced, render, render_command_param, substitute
from remediate.kinds import REGISTRY, Step, StepOutput, StepSpec, failure
from remediate.records import record

if TYPE_CHECKING:
    from remediate.diagnostics import CheckType

#: Variables remediate itself reads from a host's variables, whatever the playbook says (runner: the journal's folder).
READ_BY_REMEDIATE: Final = frozenset({"remediate_state_dir"})


@record(frozen=True)
class RawStep:
    """A step as written: its kind, target and params (not yet substituted), and the file:line they came from."""

    id: str
    kind: str
    target: str
    params: Any
    where: str
    description: str
    #: None: always run. Else the ids of the steps one of which must change something in this run.
    when: tuple[str, ...] | None = None


@record(frozen=True)
class RawCheck:
    """A diagnose: check as written: its type, params (not yet substituted), and the playbook that fixes a finding."""

    id: str
    check: str
    params: Any
    where: str
    fix: str | None
    description: str = ""
    #: file:line of fix:, for an error about the playbook it names.
    fix_where: str = ""


@record(frozen=True)
class Playbook:
    """A validated playbook, not yet bound to a host."""

    name: str
    description: str
    path: str
    defaults: Mapping[str, Any]
    steps: tuple[RawStep, ...]
    diagnose: tuple[RawCheck, ...] = ()
    #: file:line of each variable under vars:, for errors about its value.
    var_lines: Mapping[str, str] = field(default_factory=dict)

    def checks(self, host: Host, extra: Mapping[str, Any], fixes: Mapping[str, str] | None = None) -> list[CheckType]:
        """The diagnose checks for one host with variables substituted; raises InputError before any connection.
        fixes: for each check id, how its fix playbook is named in the next command (see fix_arguments)."""
        from remediate.diagnostics import REGISTRY as CHECKS  # diagnose and validate only: plan and apply need none
        from remediate.diagnostics import CheckSpec

        budget = Budget()
        variables = self.variables(host, extra, budget)
        bound = []
        for raw in self.diagnose:
            # A variable without value (`name: ~`) reads as empty here: a check must run before anyone knows it.
            lookup = lookup_in(variables, raw.where, f"check {raw.id!r}", budget, given=False)
            params = substitute(source.plain(raw.params or {}), lookup, budget, raw.where, f"check {raw.id!r}")
            fix = (fixes or {}).get(raw.id, raw.fix)
            spec = CheckSpec(id=raw.id, check=raw.check, params=params, where=raw.where, fix=fix, playbook=self.name)
            bound.append(CHECKS[raw.check](spec))
        return bound

    def fixes(self) -> dict[str, Path]:
        """For each check with fix:, the playbook file it names (see resolve_fix); InputError citing fix:'s line."""
        return {raw.id: resolve_fix(raw.fix, Path(self.path), raw.fix_where) for raw in self.diagnose if raw.fix}

    def fix_arguments(self) -> dict[str, str]:
        """For each check with fix:, how `-p` names that playbook from here: the next command works as printed."""
        return {check: argument(path) for check, path in self.fixes().items()}

    def names_used(self) -> frozenset[str]:
        """Every variable this playbook reads: its vars:, and each {{ name }} in its steps, checks and vars."""
        texts = [self.defaults, *((s.params, s.target) for s in self.steps), *(c.params for c in self.diagnose)]
        return frozenset({*self.defaults, *referenced(texts)})

    def variables(self, host: Host, extra: Mapping[str, Any], budget: Budget | None = None) -> dict[str, Any]:
        """Playbook defaults < inventory vars < -e, with {{ var }} references resolved."""
        merged = {**self.defaults, **host.vars, **extra}
        merged["inventory_hostname"] = host.name
        resolver = Resolver(merged, lambda name: self._given_at(name, host, extra), budget or Budget())
        return {name: resolver.value(name) for name in merged}

    def _given_at(self, name: str, host: Host, extra: Mapping[str, Any]) -> str:
        """Where a variable's value was given, for an error: -e, the inventory (file:line) or vars: (file:line)."""
        if name in extra:
            return "-e"
        if name in host.vars:
            return host.origins.get(name) or host.where or f"inventory host {host.name!r}"
        return self.var_lines.get(name, self.path)

    def bind(self, host: Host, extra: Mapping[str, Any]) -> tuple[dict[str, Any], list[Step]]:
        """The steps for one host with variables substituted; raises InputError before any connection."""
        budget = Budget()
        variables = self.variables(host, extra, budget)
        steps = []
        for index, raw in enumerate(self.steps):
            kind = REGISTRY[raw.kind]
            takes = kind.params_for(raw.params or {})
            known = {**variables, **_outputs(self.steps[:index])}
            params = {name: (render_command_param if name in takes and takes[name].command else render)(
                          value, known, raw.where, f"step {raw.id!r}", budget)
                      for name, value in source.plain(raw.params or {}).items()}
            target = render(raw.target, variables, raw.where, f"step {raw.id!r}", budget)
            spec = StepSpec(id=raw.id, kind=raw.kind, target=str(target), params=params, where=raw.where,
                            description=raw.description, when=raw.when)
            try:
                steps.append(kind(spec))
            except RemediateError:
                raise
            except Exception as e:  # a bug in a kind's validate(): named with its package, not remediate's
                raise failure(raw.kind, raw.id, e) from e
        return variables, steps


def _outputs(earlier: tuple[RawStep, ...]) -> dict[str, StepOutput]:
    """steps.ID.NAME for every output an earlier step's kind declares."""
    return {f"steps.{raw.id}.{name}": StepOutput(raw.id, name) for raw in earlier for name in REGISTRY[raw.kind].outputs}
