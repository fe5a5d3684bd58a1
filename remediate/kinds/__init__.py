"""Step kinds: each reads the host (check), changes it (apply), proves it (verify) and undoes it (rollback)."""

from __future__ import annotations

import shlex
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Final

from remediate.contract import plugins
from remediate.contract.entrypoints import entry_points
from remediate.contract.host import HOST as HOST  # re-exported: where a step runs
from remediate.contract.host import LOCAL as LOCAL
from remediate.contract.params import Param as Param  # re-exported: the kind API
from remediate.contract.params import did_you_mean as did_you_mean
from remediate.contract.params import param_value as param_value
from remediate.contract.params import refuse_unknown as refuse_unknown
from remediate.contract.plan import NOTHING_APPLIED, Applied, Plan  # noqa: F401 - NOTHING_APPLIED re-exported for kinds
from remediate.errors import InputError, StepError
from remediate.records import record

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context



@record(frozen=True)
class StepOutput:
    """`{{ steps.ID.NAME }}` in a param: the value step ID's plan gives as its output NAME, filled in at check time."""

    step: str
    name: str

    def __str__(self) -> str:
        return f"{{{{ steps.{self.step}.{self.name} }}}}"


@record(frozen=True)
class StepSpec:
    """A step as the playbook wrote it, variables already substituted."""

    id: str
    kind: str
    target: str
    params: Mapping[str, Any]
    where: str = ""
    description: str = ""
    #: None: always. Else the ids of the steps one of which must change something in this run (when: changed(...)).
    when: tuple[str, ...] | None = None


class Step(ABC):
    """Base of every step kind."""

    kind: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    #: Reconcilers (a restart) roll back after every other step, so they converge on the restored files.
    reconciler: ClassVar[bool] = False
    #: Kinds that only prove something (a test mail): without when:, they run when an earlier step changed.
    proves_only: ClassVar[bool] = False
    #: Values this kind's plan gives to later steps, which name them as {{ steps.ID.NAME }}.
    outputs: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A kind written for 0.1 (`check(ctx)` made the plan, `checks_only`) still loads, and is told what to rename."""
        super().__init_subclass__(**kwargs)
        old = vars(cls)
        if "check" in old and "plan" not in old:
            warnings.warn(f"{cls.__module__}.{cls.__qualname__}: rename check(ctx) to plan(ctx) (0.2); the old name "
                          "goes in 0.3", DeprecationWarning, stacklevel=2)
            check = old["check"]

            def plan(self: Step, ctx: Any, **kwargs: Any) -> Plan:
                if isinstance(ctx, str):  # 0.1's helper, self.plan(reason, ...), now planned()
                    return self.planned(ctx, **kwargs)
                return check(self, ctx)  # type: ignore[no-any-return]

            cls.plan = plan  # type: ignore[method-assign]
        if "checks_only" in old and "proves_only" not in old:
            warnings.warn(f"{cls.__module__}.{cls.__qualname__}: rename checks_only to proves_only (0.2)",
                          DeprecationWarning, stacklevel=2)
            cls.proves_only = bool(old["checks_only"])

    def __init__(self, spec: StepSpec) -> None:
        self.spec = spec
        self.id = spec.id
        self.target = spec.target
        self.p: dict[str, Any] = {}
        deferred = False
        for name, param in self.params.items():
            value = spec.params.get(name, param.default)
            if isinstance(value, StepOutput):
                self.p[name], deferred = value, True  # checked once the earlier step's plan gives it
                continue
            self.p[name] = param_value(name, param, value, spec.where, f"step {spec.id!r}", self.kind)
        refuse_unknown(spec.params, self.params, spec.where, f"step {spec.id!r}", self.kind)
        if not deferred:
            self.validate()

    def reads_ahead(self) -> list[tuple[str, ...]]:
        """What this step's plan will ask its target for with remediate's read-only operations, as the transport
        asks (transport.read_ask(path), or (operation, *args)). A plan asks for the steps' on the host all at once,
        in one round trip, before the first step plans; an answer no plan takes is dropped."""
        return []

    def with_outputs(self, outputs: Mapping[str, Mapping[str, Any]]) -> Step:
        """This step with every {{ steps.ID.NAME }} filled from the plans made so far, and checked as any param is."""
        filled = {}
        for name, value in self.spec.params.items():
            if isinstance(value, StepOutput):
                given = outputs.get(value.step) or {}
                if value.name not in given:
                    raise InputError(f"{self.spec.where}: step {self.id!r}: {value} has no value: step {value.step!r} "
                                     f"gave {', '.join(sorted(given)) or 'no outputs'}")
                value = given[value.name]
            filled[name] = value
        if filled == dict(self.spec.params):
            return self
        return type(self)(replace(self.spec, params=filled))

    @classmethod
    def params_for(cls, given: Mapping[str, Any]) -> Mapping[str, Param]:
        """The parameters a step of this kind with these params takes (a kind whose parameters depend on one of them,
        such as assert's check:, says so here); the playbook is held to them before anything is bound."""
        return cls.params

    def validate(self) -> None:
        """Extra parameter checks; raise InputError citing self.spec.where."""

    def hosts(self) -> set[str]:
        """Inventory hosts this step will contact besides the one being remediated."""
        return set() if self.target in (HOST, LOCAL) else {self.target}

    def planned(self, reason: str, **kwargs: Any) -> Plan:
        return Plan(step_id=self.id, kind=self.kind, target=self.target, reason=reason, **kwargs)

    @abstractmethod
    def plan(self, ctx: Context) -> Plan:
        """Read the host, change nothing, and say what apply would do."""

    @abstractmethod
    def apply(self, ctx: Context, plan: Plan) -> Applied | None:
        """Make the planned change; journal what undo needs (ctx.record) before each mutation. Return what verify
        needs to know of it (or None): a step keeps no state on itself."""

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        """Prove the change took; raise StepError when it did not. applied: what apply returned (NOTHING_APPLIED
        for a step that only checks)."""
        return "applied"

    def rollback(self, ctx: Context, entry: Mapping[str, Any]) -> str:
        """Undo from the journal entry alone (a new process may run it); return what was restored."""
        return "nothing to undo"

    def settle(self, ctx: Context, plan: Plan, entry: Mapping[str, Any]) -> str | None:
        """Once every step of the run is applied and verified (never in a run that rolls back): what must not be
        done before, because no rollback could undo it (a backup step prunes its older backups here). entry: the
        step's journal entry. Returns what it did, journalled; its failure is said and undoes nothing."""
        return None


#: Kinds whose plug-in cannot be loaded, and why: only what uses one fails, so a broken plug-in stops no other run.
BROKEN: dict[str, str] = {}
REGISTRY: plugins.Registry[type[Step]] = plugins.Registry("step kind", "kinds", BROKEN)
#: Which installed package each kind came from (entry point group remediate.kinds).
ORIGIN: dict[str, str] = {}
ENTRY_POINTS: Final = "remediate.kinds"
#: The shipped kinds' modules (imported directly when remediate runs from a source tree that is not installed).
SHIPPED: Final = ("assertion", "backup", "command", "compose_env", "compose_restart", "env_list_prune", "file", "iac",
                   "log_check", "mail_delivery", "postfix_config", "queue_flush", "relay_transport", "smtp_check",
                   "tls_reload")


def register(cls: type[Step]) -> type[Step]:
    REGISTRY[cls.kind] = cls
    return cls


def argv(value: str | list[str]) -> list[str]:
    """A command as an argv list; a string is split like a shell would, never run through one."""
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def load_kinds(*, every: bool = True) -> None:
    """Fill REGISTRY from the remediate.kinds entry points of every installed package, remediate's own included.

    A kind in another package is usable from a playbook with no change to remediate: its package declares
    `[project.entry-points."remediate.kinds"] NAME = "module:Class"`. Two packages may not give one kind: a plug-in
    never replaces a shipped kind (or another plug-in's) unnoticed. Run from a source tree that is not installed,
    the shipped kinds are imported directly. every=False leaves remediate's own kinds to be imported when one is first
    looked up (a playbook names a few of them)."""
    if not ORIGIN:
        plugins.load_into(REGISTRY, ORIGIN, entry_points(group=ENTRY_POINTS), base=Step, attr="kind",
                          doc="docs/writing-kinds.md", package=__name__, shipped=SHIPPED)
    if every:
        REGISTRY.load_all()


def shipped_kind(kind: str) -> bool:
    """Whether kind comes with remediate (else a plug-in's package gives it)."""
    return ORIGIN.get(kind, "remediate").split()[0] == "remediate"


def blame(kind: str, step_id: str, error: BaseException) -> str:
    """A kind's own exception (a bug, not a RemediateError) as people need it: the step, the kind, the package it came
    from and the exception's type. A plug-in's bug is the plug-in's, never remediate's."""
    origin = ORIGIN.get(kind, "remediate")
    raised = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if shipped_kind(kind):
        return (f"step {step_id!r}: kind {kind} ({origin}) raised {raised}: a bug in remediate; report it (-vv shows "
                "the traceback)")
    return (f"step {step_id!r}: kind {kind}, from the plug-in {origin}, raised {raised}: a bug in that plug-in, not in "
            "remediate; report it to its authors (-vv shows the traceback)")


def failure(kind: str, step_id: str, error: Exception) -> StepError:
    """A kind's own exception as the error remediate reports (see blame); raise it `from error`, which -vv shows."""
    return StepError(blame(kind, step_id, error))
