"""What a fleet rollout on Temporal hands around (the operator's `apply --backend temporal`, the rollout workflow, its
per-host children and their apply activity): plain dataclasses that Temporal's JSON converter carries, and the names
they agree on. Standard library only: the workflow sandbox imports it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

#: The workflow types and the apply activity, by name (the workflows never import the activity's code).
ROLLOUT: Final = "RemediateRollout"
ROLLOUT_HOST: Final = "RemediateRolloutHost"
APPLY_HOST: Final = "remediate_rollout_apply"
#: A rollout's workflow id is this prefix and its id; each host's child adds "--" and the host's name.
PREFIX: Final = "remediate-rollout-"
#: A retried apply that finds its run cut off undoes it; the host's child then starts a fresh run, at most this many
#: times, before it counts the host as failed.
RESTARTS: Final = 3
#: An apply activity retried this many times (a worker that died or stopped heartbeating each time, or a bug) fails
#: its host, naming the run, rather than retrying for ever.
APPLY_ATTEMPTS: Final = 20


def workflow_id(rollout_id: str) -> str:
    return PREFIX + rollout_id


def host_workflow_id(rollout_id: str, host: str) -> str:
    return f"{PREFIX}{rollout_id}--{host}"


def rollout_id_of(given: str) -> str:
    """A rollout's id as `remediate rollouts` prints it, given either that or its workflow id."""
    return given.removeprefix(PREFIX)


class HostState(StrEnum):
    """Where one host of a rollout stands (`remediate rollouts show`)."""

    UNCHANGED = "nothing to do"  # planned with nothing to change: never part of the rollout's batches
    PENDING = "pending"  # its batch has not started
    APPLYING = "applying"  # its child workflow runs (a worker applies, or waits to take over a cut-off run)
    APPLIED = "applied"  # applied and verified
    FAILED = "failed"  # its apply failed: nothing was changed, or every applied step was rolled back
    STALE = "stale"  # the host was no longer as the reviewed plan saw it: nothing was changed
    INCOMPLETE = "rollback incomplete"  # a step failed and its rollback did not finish: the host needs attention
    SKIPPED = "skipped"  # never started: the rollout stopped first
    ROLLING_BACK = "rolling back"  # applied, now undone because the rollout stopped (--rollback-fleet-on-abort)
    ROLLED_BACK = "rolled back"  # applied, then undone because the rollout stopped


class RolloutState(StrEnum):
    RUNNING = "running"
    ROLLING_BACK = "rolling back"  # stopped; the hosts it fixed are being rolled back
    DONE = "done"  # every host was tried
    STOPPED = "stopped"  # the failure budget stopped it: hosts not started were skipped
    ROLLED_BACK = "stopped, rolled back"  # and the hosts it had fixed were rolled back


ENDED: Final = frozenset({RolloutState.DONE, RolloutState.STOPPED, RolloutState.ROLLED_BACK})


@dataclass
class Settings:
    """The rollout's settings, as `apply` was given them (fleet.Rollout's, and Temporal's timing)."""

    forks: int = 20
    serial: str | None = None  # --serial as given ("1,5,20%"); parsed by fleet.parse_serial
    max_fail_percent: float = 0.0
    rollback_fleet_on_abort: bool = False
    #: A host's apply whose worker sent no heartbeat (one per step) for this long is retried on another worker.
    takeover_after: float = 60.0
    retry_interval: float = 10.0
    #: serve is paused: a host's apply is held (nothing changed) and tried again after this long.
    held_retry: float = 60.0


@dataclass
class RolloutInput:
    """What `apply --backend temporal` starts: the reviewed plan document (planfile.document: the playbook's text,
    the variables, every host's plan and identity), the hosts with changes in rollout order, and the settings."""

    rollout_id: str
    plan: dict[str, Any]
    hosts: list[str]
    settings: Settings
    #: The id of the plan key the identities were made under (rollout_activities.key_id): a worker whose key is
    #: another could never find a host as planned, and says so instead of calling every host stale.
    key_id: str
    started_by: str
    playbook: str
    #: Hosts planned with nothing to do, and why (never applied; shown with the rollout).
    unchanged: dict[str, str] = field(default_factory=dict)


@dataclass
class HostInput:
    """One host's child workflow: its slice of the plan document (that host alone) and the rollout's timing."""

    rollout_id: str
    host: str
    plan: dict[str, Any]
    key_id: str
    settings: Settings


@dataclass
class HostRun:
    """The apply activity's input: exactly this host's reviewed plan, as the run the child workflow named."""

    host: str
    run_id: str
    plan: dict[str, Any]
    key_id: str


@dataclass
class HostRan:
    """How a host's apply ended: the library's status word and exit code (engine.outcome.Status), or `retry`: "held"
    (serve is paused; nothing changed) or "cut off" (a run whose worker died, found and undone: start afresh)."""

    status: str
    exit_code: int
    run_id: str | None
    message: str
    log: list[list[str]] = field(default_factory=list)
    retry: str | None = None


def host_plan(doc: dict[str, Any], host: str) -> dict[str, Any]:
    """The plan document narrowed to one host: its apply checks that host alone, against its own plan."""
    return {**doc, "hosts": [host], "plans": {host: (doc.get("plans") or {}).get(host)}}
