"""assert: any check type (what a playbook's diagnose: declares) as a verification step: read at plan time, proven by
verify, which fails with the check's own evidence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from remediate.contract.host import LOCAL
from remediate.contract.params import did_you_mean
from remediate.contract.plan import Applied, Plan
from remediate.diagnostics import BROKEN, REGISTRY, CheckSpec, CheckType, Facts, Verdict, load_checks
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, StepOutput, StepSpec, register
from remediate.probes.facts import of as facts_of

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context

CHECK: Final = Param(str, required=True, help="the check type to prove (remediate checks lists them); the step's "
                                                 "other params are that check type's own")


@register
class Assert(Step):
    """Prove what a check type reads on the host (any check of diagnose:); fail with its evidence."""

    kind = "assert"
    proves_only = True
    params = {"check": CHECK}  # and the named check type's: params_for()

    def __init__(self, spec: StepSpec) -> None:
        self.spec, self.id, self.target = spec, spec.id, spec.target
        at = f"{spec.where}: step {spec.id!r}"
        name = spec.params.get("check")
        load_checks(every=False)
        if not isinstance(name, str) or name not in REGISTRY:
            if isinstance(name, str) and name in BROKEN:
                raise InputError(f"{at}: {BROKEN[name]}", hint="reinstall or remove that package")
            raise InputError(f"{at}: check must name a check type, not {name!r}",
                             hint=f"{did_you_mean(str(name), REGISTRY)}check types: {', '.join(sorted(REGISTRY))}")
        self.p: dict[str, Any] = {"check": name}
        given = {k: v for k, v in spec.params.items() if k != "check"}
        self.check: CheckType | None = None
        if not any(isinstance(v, StepOutput) for v in given.values()):  # else checked once the earlier plan gives it
            self.check = REGISTRY[name](CheckSpec(id=spec.id, check=name, params=given, where=spec.where,
                                                  label=f"step {spec.id!r}"))

    @classmethod
    def params_for(cls, given: Mapping[str, Any]) -> dict[str, Param]:
        """The parameters a step with these params takes: check:, and its check type's (those of none if unknown)."""
        load_checks(every=False)
        name = given.get("check")
        own = REGISTRY[name].params if isinstance(name, str) and name in REGISTRY else {}
        return {"check": CHECK, **own}

    @property
    def name(self) -> str:
        return str(self.p["check"])

    def _verdict(self, ctx: Context) -> Verdict | None:
        assert self.check is not None, "with_outputs() fills every {{ steps.ID.NAME }} before plan()"
        facts = Facts(ctx.transport(self.target), ctx.transport(LOCAL))
        self.check.prepare(facts)
        return self.check.run(facts)

    def plan(self, ctx: Context) -> Plan:
        summary = (type(self.check).__doc__ or "").strip().splitlines()[:1] if self.check else []
        proof = (f"the check {self.name} holds" + (f": {summary[0]}" if summary else ""),)
        verdict = self._verdict(ctx)
        now = "does not apply here" if verdict is None else verdict.evidence
        earlier = ctx.changed_dependencies(self.spec)
        if earlier:
            return self.planned(f"prove {self.name} after {', '.join(earlier)}; now: {now}", checks=proof)
        return self.planned(f"{self.name} now: {now}", checks=proof)

    def apply(self, ctx: Context, plan: Plan) -> None:
        """Nothing to change: verify runs the check."""

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        facts_of(ctx.transport(self.target)).forget()  # what earlier steps changed is read anew
        verdict = self._verdict(ctx)
        if verdict is None:
            return f"{self.name}: does not apply here, nothing to prove"
        if verdict.ok is None:
            raise StepError(f"{self.name} could not be decided: {verdict.evidence}")
        if not verdict.ok:
            raise StepError(f"{self.name} does not hold: {verdict.evidence}")
        return f"{self.name}: {verdict.evidence}"
