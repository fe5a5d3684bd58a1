"""What happened on one host: the record every command returns, and the exit code derives from; and the words for
how a run goes (its mode, each step's state in the journal, how it ended). StrEnums: each compares equal to, and
prints as, the word the JSON and the journal have always used."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from remediate.contract.plan import Plan
from remediate.records import record


class Status(StrEnum):
    """How a command left one host (Outcome.status; the `summary` event's status)."""

    PENDING = "pending"  # plan: changes to apply
    OK = "ok"  # nothing to do (or a rollback with nothing left to undo)
    CHANGED = "changed"  # applied and verified
    LOCKED = "locked"  # nothing to do as the host is now, but another run holds its lock
    STALE = "stale"  # a saved plan no longer holds on this host: nothing was changed
    SKIPPED = "skipped"  # not started (another host refused, or the rollout stopped)
    ROLLED_BACK = "rolled-back"  # a step failed and every applied step was undone; or a rollback that finished
    ROLLBACK_INCOMPLETE = "rollback-incomplete"  # an undo failed: the host needs attention
    FAILED = "failed"  # a step failed before anything changed
    ERROR = "error"  # could not start: connection, lock, input


class RunEnd(StrEnum):
    """How one run on one host ended (the `run_finished` event's outcome)."""

    PENDING = "pending"
    NO_OP = "no-op"
    APPLIED = "applied"
    ROLLED_BACK = "rolled-back"
    ROLLBACK_INCOMPLETE = "rollback-incomplete"
    FAILED = "failed"


class Mode(StrEnum):
    """What a run does (the `run_started` event's mode)."""

    PLAN = "plan"
    APPLY = "apply"
    ROLLBACK = "rollback"


class Action(StrEnum):
    """What a step is about to do on its host (the `step_started` event's action)."""

    APPLY = "apply"  # change it, then verify
    CHECK = "check"  # only check it
    VERIFY = "verify"  # prove what apply did


class StepState(StrEnum):
    """A step's state when its run's journal is started: it will change the host, only check it, or neither."""

    PLANNED = "planned"
    TO_CHECK = "to-check"
    NO_OP = "no-op"


@record(frozen=True)
class Outcome:
    """What happened on one host; the exit code is derived from these."""

    host: str
    status: Status
    exit_code: int
    message: str = ""
    run_id: str | None = None
    plans: Sequence[Plan] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))  # a word outside the vocabulary is a bug: refused
