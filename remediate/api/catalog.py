"""What is written and installed, without connecting: a playbook validated, the inventory as read, the playbooks
on the search path, the step kinds and the diagnose check types with their parameters and an example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from remediate import __version__
from remediate.engine.events import (
    CheckType,
    HostVar,
    InventoryGroup,
    InventoryHost,
    KindListed,
    ParamInfo,
    PlaybookListed,
)
from remediate.engine.options import refuse_unused
from remediate.errors import InputError
from remediate.inputs import inventory as inventory_mod
from remediate.inputs import playbook as playbook_mod
from remediate.inputs import search_path, templates
from remediate.inputs.inventory import Host
from remediate.kinds import ORIGIN, REGISTRY, did_you_mean, load_kinds
from remediate.records import record


@record(frozen=True)
class Described:
    """A step kind (key "kind") or a check type (key "check"): where it comes from, its parameters, an example.
    `event` is what the commands print, `as_dict` its JSON form (`remediate kinds --json`, `remediate checks --json`)."""

    key: str
    name: str
    package: str
    plugin: bool
    summary: str
    params: tuple[ParamInfo, ...]
    example: str
    reconciler: bool | None = None  # a step kind's only
    outputs: tuple[str, ...] = ()  # a step kind's only: what later steps get ({{ steps.ID.NAME }})

    def event(self) -> KindListed | CheckType:
        """What `remediate kinds` or `remediate checks` prints of it."""
        if self.key == "kind":
            return KindListed(self.name, self.package, self.plugin, self.summary, self.reconciler, list(self.params),
                              list(self.outputs), self.example)
        return CheckType(self.name, self.package, self.plugin, self.summary, list(self.params), self.example)

    def as_dict(self) -> dict[str, Any]:
        """Its JSON form (the event's, without the event's name)."""
        return {k: v for k, v in self.event().as_dict().items() if k != "event"}


def validate(playbook: str | None, inventory: Path | None, extra: tuple[str, ...],
             refuse_unused_vars: bool = False) -> list[str]:
    """Check a playbook without connecting: syntax, kinds, parameters, its diagnose: checks (parameters,
    expectations and the playbooks their fix: names) and, with an inventory, every host's variables.
    Returns what was checked; raises InputError at the first problem."""
    book = playbook_mod.load(playbook_mod.locate(playbook))
    variables = playbook_mod.parse_extra(extra)
    for raw in book.steps:  # where a variable would become code, whatever its value (templates.py)
        for name, value in (raw.params or {}).items():
            param = REGISTRY[raw.kind].params.get(name)
            if param is not None and param.command:
                templates.render_command(value, lambda _: "", f"{raw.where}: step {raw.id!r}")
    checked = [f"{book.path}: {len(book.steps)} step(s), kinds {', '.join(sorted({s.kind for s in book.steps}))}"]
    fixes = book.fixes()
    hosts = list(inventory_mod.load(inventory).hosts.values()) if inventory is not None else []
    if refuse_unused_vars:
        refuse_unused(variables, [book], hosts)
    for host in hosts:
        book.bind(host, variables)
    for host in hosts or [Host(name="(any host)", address="")]:  # diagnose reads a variable without value as empty
        book.checks(host, variables)
    if book.diagnose:
        named = sorted({playbook_mod.argument(p) for p in fixes.values()})
        checked.append(f"{book.path}: {len(book.diagnose)} diagnose check(s), types "
                       f"{', '.join(sorted({c.check for c in book.diagnose}))}"
                       + (f"; fixed by {', '.join(named)}" if named else ""))
    if inventory is not None:
        checked.append(f"{inventory}: bound to {len(hosts)} host(s): {', '.join(h.name for h in hosts)}")
    return checked


def inventory_graph(path: Path) -> list[InventoryGroup]:
    """Every group with its direct hosts and child groups, as `ansible-inventory --graph` shows them."""
    return [InventoryGroup(g["group"], g["hosts"], g["children"], g["direct_hosts"])
            for g in inventory_mod.graph(inventory_mod.load(path))]


def inventory_host(path: Path, name: str) -> InventoryHost:
    """One host's merged variables, each with where its value came from."""
    host = inventory_mod.load(path).get(name, needed_by="remediate inventory --host")
    return InventoryHost(host.name, host.address, host.port, host.user, host.become,
                         {k: HostVar(v, host.origins.get(k, "")) for k, v in host.vars.items()})


def playbooks() -> tuple[list[PlaybookListed], list[str]]:
    """Every playbook on the search path (name, file, description, steps, variables with their defaults, the files
    of the same name it hides, where it comes from), and the problems of those that do not load or cannot be used."""
    books, problems = [], []
    for listed in playbook_mod.catalog():
        try:
            b = playbook_mod.load(listed.path)
        except InputError as e:
            problems.append(str(e))
            continue
        books.append(PlaybookListed(listed.name, b.description, [s.id for s in b.steps], dict(b.defaults),
                                    str(listed.path), listed.shipped, [str(p) for p in listed.shadows],
                                    listed.source))
    problems += [str(error) for error in search_path.refused()]  # a package's playbook that cannot be used
    return books, problems


def kinds(name: str | None) -> list[Described]:
    """Every step kind installed (or the one named), with its parameters and an example step."""
    load_kinds()
    if name is not None and name not in REGISTRY:
        raise InputError(f"no step kind named {name!r}",
                         hint=f"{did_you_mean(name, REGISTRY)}installed kinds: {', '.join(sorted(REGISTRY))}")
    return [describe_kind(k) for k in sorted(REGISTRY) if name in (None, k)]


def describe_kind(name: str) -> Described:
    cls = REGISTRY[name]
    origin = ORIGIN.get(name, "remediate")
    shipped = origin.split()[0] == "remediate"
    return Described("kind", name, f"remediate {__version__}" if shipped else origin, not shipped, _summary(cls),
                     _params(cls.params), _example(name, "kind", cls.params), cls.reconciler, tuple(cls.outputs))


def checks(name: str | None) -> list[Described]:
    """Every diagnose check type (or the one named), with its parameters and an example check."""
    from remediate.diagnostics import ORIGIN as CHECK_ORIGIN
    from remediate.diagnostics import REGISTRY as CHECKS
    from remediate.diagnostics import load_checks, shipped_check
    load_checks()
    if name is not None and name not in CHECKS:
        raise InputError(f"no check type named {name!r}",
                         hint=f"{did_you_mean(name, CHECKS)}check types: {', '.join(sorted(CHECKS))}")
    return [Described("check", n, f"remediate {__version__}" if shipped_check(n) else CHECK_ORIGIN[n],
                      not shipped_check(n), _summary(CHECKS[n]), _params(CHECKS[n].params),
                      _example(n, "check", CHECKS[n].params))
            for n in sorted(CHECKS) if name in (None, n)]


def _summary(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def _params(params: dict[str, Any]) -> tuple[ParamInfo, ...]:
    return tuple(ParamInfo(p, _type_label(spec.type), spec.required, spec.default, spec.help)
                 for p, spec in params.items())


def _example(name: str, key: str, params: dict[str, Any]) -> str:
    """A playbook entry using name: every parameter, the optional ones commented out with their default."""
    example = [f"- id: my-{name}", f"  {key}: {name}"]
    if key == "check":
        example.append("  fix: PLAYBOOK   # the playbook that fixes a finding (optional)")
    example.append("  params:")
    for p in _params(params):
        value = f"<{p.type}>" if p.default is None else json.dumps(p.default)
        example.append(f"    {'' if p.required else '# '}{p.name}: {value}" + (f"   # {p.help}" if p.help else ""))
    return "\n".join(example)


def _type_label(t: Any) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join({"str": "string", "int": "number", "list": "list", "dict": "mapping", "bool": "true/false",
                        "NoneType": "empty"}.get(x.__name__, x.__name__) for x in types)


