"""The events a run emits, typed: every one names its host, so a fleet's interleaved --json stream stays readable.
Renderers receive them as JSON-ready mappings (`as_dict`), the form `--json` prints one per line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


# Events are built once and printed once: plain classes, the cheapest to make (start-up time).
@dataclass(eq=False, repr=False)
class Event:
    """Base: `event` is the name in JSON; fields left at None are not printed unless the event always carries them."""

    name: ClassVar[str]
    #: Fields printed even when None (automation reads them as present).
    always: ClassVar[frozenset[str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            elif value is not None or f.name in self.always:
                out[f.name] = value
        return out


@dataclass(eq=False, repr=False)
class RunStarted(Event):
    name = "run_started"
    host: str
    mode: str  # plan, apply, rollback
    run_id: str
    playbook: str | None


@dataclass(eq=False, repr=False)
class StepPlanned(Event):
    name = "step_planned"
    host: str
    #: The plan's own event fields (step, kind, target, changed, reason, diffs, commands, checks ...).
    extra: Mapping[str, Any]
    duration: float
    brief: bool | None = None


@dataclass(eq=False, repr=False)
class StepStarted(Event):
    name = "step_started"
    host: str
    step: str
    action: str  # apply, check


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
    outcome: str
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
    status: str
    exit_code: int
    run_id: str | None
    message: str


@dataclass(eq=False, repr=False)
class RolloutStarted(Event):
    """Several hosts: which, and how they will be gone through."""

    name = "rollout_started"
    always = frozenset({"serial"})
    mode: str
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
    status: str
    steps: list[Mapping[str, Any]]
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
