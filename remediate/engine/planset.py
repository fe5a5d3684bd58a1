"""A PlanSet: what `plan` found on each host, typed, and everything needed to apply exactly that later (the
playbook's text, the variables, the step selection). The saved plan file is its JSON form (planfile.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from remediate import redact
from remediate.contract.plan import Plan, ShownPlan
from remediate.engine import planfile
from remediate.engine.events import PlanGroup
from remediate.engine.options import Options, saved_options
from remediate.engine.outcome import Outcome
from remediate.errors import EXIT_ERROR
from remediate.kinds import Step
from remediate.records import record


@record(frozen=True)
class HostPlan:
    """One host's checked plan: its steps as bound, each step's plan, the plan as people read it, its identity."""

    host: str
    #: Structural (identity.py): what decides whether the host still gets this very plan.
    identity: str
    #: Every step's plan as shown (shown.normalized: what a saved plan file keeps).
    shown: tuple[Mapping[str, Any], ...]
    outcome: Outcome | None = None  # None: restored from a saved plan, not planned in this process
    steps: tuple[Step, ...] = ()
    plans: tuple[Plan, ...] = ()

    @property
    def changed(self) -> bool:
        return any(p.changed for p in self.plans)

    def saved(self) -> dict[str, Any]:
        """The plan file's entry for this host."""
        return {"identity": self.identity, "steps": [dict(s) for s in self.shown]}

    def review(self) -> str:
        """The plan as a reviewer reads it: each changing or checking step, its reason, its diffs and its commands."""
        parts = []
        for plan in self.plans:
            if not (plan.changed or plan.checks):
                continue
            parts.append(f"# {plan.step_id} ({plan.kind}): {redact.text(plan.reason)}")
            parts += [f.diff().rstrip("\n") for f in plan.files]
            parts += [f"$ {redact.text(c)}" for c in plan.commands]
            parts += [f"? {redact.text(c)}" for c in plan.checks]
        return "\n".join(parts) + ("\n" if parts else "")


@record(frozen=True)
class PlanSet:
    """Per host, its plan; and the options, the playbook's text and the variables it was made with."""

    options: Options
    playbook_path: str
    playbook_text: bytes
    playbook_name: str | None
    extra: Mapping[str, Any]
    hosts: Mapping[str, HostPlan] = field(default_factory=dict)

    @property
    def outcomes(self) -> list[Outcome]:
        return [h.outcome for h in self.hosts.values() if h.outcome is not None]

    @property
    def failed(self) -> bool:
        """Some host could not be planned: such a plan is never saved, nor applied."""
        return any(o.exit_code == EXIT_ERROR for o in self.outcomes)

    def with_options(self, **changes: Any) -> PlanSet:
        """The same plans, applied with other run settings (--break-lock, --forks, -v ...)."""
        return replace(self, options=replace(self.options, **changes))

    def document(self) -> dict[str, Any]:
        """The saved plan file's content (sealed): what `remediate apply PLANFILE` and serve's approval take back."""
        return planfile.document(playbook_path=self.playbook_path, playbook_text=self.playbook_text,
                                 inventory=self.options.inventory, hosts=self.options.hosts, extra=self.extra,
                                 selection=self.options.selection(), rollout=self.options.saved_rollout(),
                                 plans={name: h.saved() for name, h in self.hosts.items()})

    @classmethod
    def saved(cls, doc: Mapping[str, Any], inventory: Path | None = None, extra: tuple[str, ...] = ()) -> PlanSet:
        """A saved plan (planfile.load, or serve's stored one) again: its options, and per host the identity every
        host must still have; -e gives masked secrets again, -i names the inventory anew."""
        options = saved_options(dict(doc), inventory, extra)
        path = str(options.playbook)
        values = json.loads(options.extra[0]) if options.extra else {}
        plans = {str(name): HostPlan(str(name), str(p.get("identity")), tuple(p.get("steps") or ()))
                 for name, p in (doc.get("plans") or {}).items()}
        return cls(options, path, Path(path).read_bytes(), None, values, plans)


def groups(bound: Sequence[Any], outcomes: Sequence[Outcome]) -> list[PlanGroup]:
    """Hosts whose plans are identical (host names aside), largest group first: one diff to read, not twenty.
    bound: each host's runner.Bound (its host, plans and plan as shown)."""
    found: dict[str, PlanGroup] = {}
    for b, outcome in zip(bound, outcomes):
        failed = outcome.exit_code == EXIT_ERROR
        steps = [] if failed else [ShownPlan.parse(e) for e in b.events]
        # Host names aside, where they are whole path segments ("--- a/HOST:/srv/HOST/app.conf"), never inside a
        # longer name.
        text = json.dumps([s.as_dict() for s in steps], sort_keys=True)
        key = f"error: {outcome.message}" if failed else (
            text.replace(f"/{b.host.name}:", "/\x00HOST:").replace(f"/{b.host.name}/", "/\x00HOST/"))
        group = found.setdefault(key, PlanGroup([], sum(1 for p in b.plans if p.changed), outcome.status, steps,
                                                outcome.message if failed else None))
        group.hosts.append(b.host.name)
    return sorted(found.values(), key=lambda g: (-len(g.hosts), g.hosts[0]))
