"""Everything remediate prints, typed: the events of a run (each names its host, so a fleet's interleaved --json
stream stays readable), and the records the other commands list. Renderers receive these objects; `as_dict` is the
one serializer, the JSON object `--json` prints one per line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from remediate.contract.plan import ShownPlan
from remediate.engine import listing
from remediate.engine.event import Event as Event
from remediate.engine.outcome import Action, Mode, RunEnd, Status
from remediate.records import plain

# The records of the commands that only read: defined there, shown and parsed as events like the rest.
CheckResult = listing.CheckResult
CheckType = listing.CheckType
Diagnosed = listing.Diagnosed
HostVar = listing.HostVar
InventoryGroup = listing.InventoryGroup
InventoryHost = listing.InventoryHost
KindListed = listing.KindListed
ParamInfo = listing.ParamInfo
PlaybookListed = listing.PlaybookListed
ProbeResult = listing.ProbeResult
SignatureFound = listing.SignatureFound


@plain
class RunStarted(Event):
    name = "run_started"
    host: str
    mode: Mode
    run_id: str
    playbook: str | None


#: Where events go: a renderer, serve's incident log, a test's list.
Emit = Callable[[Event], None]


@plain
class StepPlanned(Event):
    name = "step_planned"
    host: str
    #: The step's plan as shown (printed in place: step, kind, target, status, reason, diffs, commands, checks).
    plan: ShownPlan
    duration: float | None = None  # None: a saved plan's step, shown again (`remediate show`)
    brief: bool | None = None


@plain
class StepStarted(Event):
    name = "step_started"
    host: str
    step: str
    action: Action


@plain
class StepApplied(Event):
    name = "step_applied"
    host: str
    step: str
    duration: float


@plain
class StepVerified(Event):
    name = "step_verified"
    host: str
    step: str
    message: str
    duration: float


@plain
class StepFailed(Event):
    name = "step_failed"
    host: str
    step: str
    error: str


@plain
class StepRolledBack(Event):
    name = "step_rolled_back"
    host: str
    step: str
    message: str


@plain
class StepRollbackSkipped(Event):
    name = "step_rollback_skipped"
    host: str
    step: str
    message: str


@plain
class StepRollbackFailed(Event):
    name = "step_rollback_failed"
    host: str
    step: str
    error: str


@plain
class RunFinished(Event):
    name = "run_finished"
    host: str
    run_id: str | None
    outcome: RunEnd
    exit_code: int
    error: str | None = None


@plain
class Notice(Event):
    name = "notice"
    host: str
    message: str


@plain
class Summary(Event):
    """How one host ended, after everything else (cli prints one per host)."""

    name = "summary"
    always = frozenset({"run_id"})
    host: str
    status: Status
    exit_code: int
    run_id: str | None
    message: str


@plain
class RolloutStarted(Event):
    """Several hosts: which, and how they will be gone through."""

    name = "rollout_started"
    always = frozenset({"serial"})
    mode: Mode
    hosts: list[str]
    forks: int
    serial: str | None
    max_fail_percent: float


@plain
class PlanGroup(Event):
    """Hosts whose plans are identical (host names aside), with that plan once."""

    name = "plan_group"
    always = frozenset({"error"})
    hosts: list[str]
    changed: int
    status: Status
    steps: list[ShownPlan]
    error: str | None


@plain
class RolloutAborted(Event):
    """No new host starts: why, which hosts were skipped, and whether the fixed ones are rolled back."""

    name = "rollout_aborted"
    host: str  # the skipped hosts, comma-separated ("-" for none), so that every host event names hosts
    reason: str
    skipped: list[str]
    failed: int
    fleet_rolled_back: bool


@plain
class RolloutFinished(Event):
    """The last event over several hosts: how many ended in each status, and the exit code."""

    name = "rollout_finished"
    hosts: int
    statuses: Mapping[str, int]
    exit_code: int


@plain
class Command(Event):
    """-v: a remote command, its exit code and time; -vv: what it printed too (the last 2000 characters)."""

    name = "command"
    host: str
    command: str
    exit_code: int
    duration: float
    stdout: str | None = None
    stderr: str | None = None


@plain
class Error(Event):
    """A command that could not do its work: the message (with its hint) and the exit code."""

    name = "error"
    message: str
    exit_code: int


@plain
class SavedPlan(Event):
    """`remediate show --json`: a plan file's content, checked."""

    name = "saved_plan"
    extra: Mapping[str, Any]


@plain
class Validated(Event):
    """`remediate validate`: one thing checked; the last one says "valid" with the exit code."""

    name = "validated"
    message: str
    exit_code: int | None = None


@plain
class RunRecord(Event):
    """`remediate runs`: one recorded run (a row), or `runs show`: its whole journal."""

    name = "run"
    extra: Mapping[str, Any]
