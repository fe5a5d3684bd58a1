"""Everything remediate prints, typed: the events of a run (each names its host, so a fleet's interleaved --json
stream stays readable), and the records the other commands list. Renderers receive these objects; `as_dict` is the
one serializer, the JSON object `--json` prints one per line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from remediate.contract.plan import ShownPlan
from remediate.engine.outcome import Action, Mode, RunEnd, Status


# Events are built once and printed once: plain classes, the cheapest to make (start-up time).
@dataclass(eq=False, repr=False)
class Event:
    """Base: `event` is the name in JSON; fields left at None are not printed unless the event always carries them."""

    name: ClassVar[str]
    #: Fields printed even when None (automation reads them as present).
    always: ClassVar[frozenset[str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        """The JSON object: `event` first, then the fields in order; `extra` (a record's own fields) and `plan` (a
        step's plan as shown) in their place."""
        out: dict[str, Any] = {"event": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("extra", "plan"):
                out.update(_json(value))
            elif value is not None or f.name in self.always:
                out[f.name] = _json(value)
        return out

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Event:
        """An event again from its JSON form (a test's or a reader's mapping): its class by `event`, its fields by
        name, the rest in `extra` where the event has one."""
        kind = next(c for c in _subclasses(Event) if c.name == data["event"])
        names = {f.name for f in fields(kind)}
        given = {k: v for k, v in data.items() if k in names and k not in ("event", "extra", "plan")}
        if "plan" in names:
            given["plan"] = ShownPlan.parse(data)
        if "extra" in names:
            given["extra"] = {k: v for k, v in data.items() if k not in names and k != "event"}
        return kind(**given)


def _subclasses(cls: type[Event]) -> list[type[Event]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def _json(value: Any) -> Any:
    """A field's JSON form: a typed record by its own as_dict, a list item by item, anything else as it is."""
    if isinstance(value, ShownPlan):
        return value.as_dict()
    if isinstance(value, list) and value and isinstance(value[0], ShownPlan):
        return [v.as_dict() for v in value]
    return value


@dataclass(eq=False, repr=False)
class RunStarted(Event):
    name = "run_started"
    host: str
    mode: Mode
    run_id: str
    playbook: str | None


#: Where events go: a renderer, serve's incident log, a test's list.
Emit = Callable[[Event], None]


@dataclass(eq=False, repr=False)
class StepPlanned(Event):
    name = "step_planned"
    host: str
    #: The step's plan as shown (printed in place: step, kind, target, status, reason, diffs, commands, checks).
    plan: ShownPlan
    duration: float | None = None  # None: a saved plan's step, shown again (`remediate show`)
    brief: bool | None = None


@dataclass(eq=False, repr=False)
class StepStarted(Event):
    name = "step_started"
    host: str
    step: str
    action: Action


@dataclass(eq=False, repr=False)
class StepApplied(Event):
    name = "step_applied"
    host: str
    step: str
    duration: float


@dataclass(eq=False, repr=False)
class StepVerified(Event):
    name = "step_verified"
    host: str
    step: str
    message: str
    duration: float


@dataclass(eq=False, repr=False)
class StepFailed(Event):
    name = "step_failed"
    host: str
    step: str
    error: str


@dataclass(eq=False, repr=False)
class StepRolledBack(Event):
    name = "step_rolled_back"
    host: str
    step: str
    message: str


@dataclass(eq=False, repr=False)
class StepRollbackSkipped(Event):
    name = "step_rollback_skipped"
    host: str
    step: str
    message: str


@dataclass(eq=False, repr=False)
class StepRollbackFailed(Event):
    name = "step_rollback_failed"
    host: str
    step: str
    error: str


@dataclass(eq=False, repr=False)
class RunFinished(Event):
    name = "run_finished"
    host: str
    run_id: str | None
    outcome: RunEnd
    exit_code: int
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(eq=False, repr=False)
class Notice(Event):
    name = "notice"
    host: str
    message: str


@dataclass(eq=False, repr=False)
class Summary(Event):
    """How one host ended, after everything else (cli prints one per host)."""

    name = "summary"
    always = frozenset({"run_id"})
    host: str
    status: Status
    exit_code: int
    run_id: str | None
    message: str


@dataclass(eq=False, repr=False)
class RolloutStarted(Event):
    """Several hosts: which, and how they will be gone through."""

    name = "rollout_started"
    always = frozenset({"serial"})
    mode: Mode
    hosts: list[str]
    forks: int
    serial: str | None
    max_fail_percent: float


@dataclass(eq=False, repr=False)
class PlanGroup(Event):
    """Hosts whose plans are identical (host names aside), with that plan once."""

    name = "plan_group"
    always = frozenset({"error"})
    hosts: list[str]
    changed: int
    status: Status
    steps: list[ShownPlan]
    error: str | None


@dataclass(eq=False, repr=False)
class RolloutAborted(Event):
    """No new host starts: why, which hosts were skipped, and whether the fixed ones are rolled back."""

    name = "rollout_aborted"
    host: str  # the skipped hosts, comma-separated ("-" for none), so that every host event names hosts
    reason: str
    skipped: list[str]
    failed: int
    fleet_rolled_back: bool


@dataclass(eq=False, repr=False)
class RolloutFinished(Event):
    """The last event over several hosts: how many ended in each status, and the exit code."""

    name = "rollout_finished"
    hosts: int
    statuses: Mapping[str, int]
    exit_code: int


@dataclass(eq=False, repr=False)
class Command(Event):
    """-v: a remote command, its exit code and time; -vv: what it printed too (the last 2000 characters)."""

    name = "command"
    host: str
    command: str
    exit_code: int
    duration: float
    stdout: str | None = None
    stderr: str | None = None


@dataclass(eq=False, repr=False)
class Error(Event):
    """A command that could not do its work: the message (with its hint) and the exit code."""

    name = "error"
    message: str
    exit_code: int


@dataclass(eq=False, repr=False)
class SavedPlan(Event):
    """`remediate show --json`: a plan file's content, checked."""

    name = "saved_plan"
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class Validated(Event):
    """`remediate validate`: one thing checked; the last one says "valid" with the exit code."""

    name = "validated"
    message: str
    exit_code: int | None = None


@dataclass(eq=False, repr=False)
class InventoryHost(Event):
    """`inventory --host`: one host's merged variables, each with where its value came from."""

    name = "inventory_host"
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class InventoryGroup(Event):
    """`inventory --graph`: one group, its hosts and child groups."""

    name = "inventory_group"
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class PlaybookListed(Event):
    """`remediate playbooks`: one playbook on the search path."""

    name = "playbook"
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class KindListed(Event):
    """`remediate kinds`: one step kind, its parameters and an example."""

    name = "kind"
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class CheckType(Event):
    """`remediate checks`: one diagnose check type, its parameters and an example."""

    name = "check_type"
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class RunRecord(Event):
    """`remediate runs`: one recorded run (a row), or `runs show`: its whole journal."""

    name = "run"
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class CheckResult(Event):
    """diagnose: one check on one host, what it found and the playbook that fixes it."""

    name = "check"
    host: str
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class SignatureFound(Event):
    """diagnose: a known failure seen in the mail log, how often and when."""

    name = "signature"
    host: str
    extra: Mapping[str, Any]


@dataclass(eq=False, repr=False)
class ProbeResult(Event):
    """diagnose: what a probe of the host's mail path found."""

    name = "probe"
    always = frozenset({"target", "verdict", "evidence"})
    host: str
    target: str
    verdict: str
    evidence: Any


@dataclass(eq=False, repr=False)
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
