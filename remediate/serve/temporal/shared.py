"""What the incident workflow, its activities and serve's front end hand each other (plain dataclasses, so Temporal's
JSON converter carries them), and the names they agree on. Standard library only: the workflow sandbox imports it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

#: The workflow types and activities, by name (the workflow never imports the activities' code).
INCIDENT: Final = "RemediateIncident"
CONTROL: Final = "RemediateControl"
PLAN: Final = "remediate_plan"
APPLY: Final = "remediate_apply"
ROLLBACK: Final = "remediate_rollback"
NOTIFY: Final = "remediate_notify"
#: The one workflow that holds the pause for every replica (its id ends with the task queue's name).
CONTROL_ID: Final = "remediate-control"
#: Search attributes (Keyword) each incident carries, for `remediate incidents` and the page on any replica.
HOST_ATTRIBUTE: Final = "RemediateHost"
RULE_ATTRIBUTE: Final = "RemediateRule"
STATE_ATTRIBUTE: Final = "RemediateState"
ATTRIBUTES: Final = (HOST_ATTRIBUTE, RULE_ATTRIBUTE, STATE_ATTRIBUTE)


def incident_number(fingerprint: str, starts_at: str) -> int:
    """An incident's number, from its alert's fingerprint and startsAt: the same on every replica (48 bits of
    sha256, so it stays a number the API and the CLI take as they are)."""
    return int(hashlib.sha256(f"{fingerprint}\0{starts_at}".encode()).hexdigest()[:12], 16)


def workflow_id(number: int) -> str:
    return f"remediate-incident-{number}"


@dataclass
class Timing:
    """How long the workflow waits: for an approval, before trying a held rollback again, for a heartbeat."""

    approval_expiry: float = 7 * 24 * 3600.0
    held_retry: float = 60.0
    heartbeat: float = 60.0
    retry_interval: float = 10.0


@dataclass
class Opened:
    """A firing as the front end routed it: the incident's first record, and the rule's words on what follows."""

    number: int
    fingerprint: str
    starts_at: str
    alertname: str | None
    labels: dict[str, str]
    host: str | None
    rule: str | None
    playbook: str | None
    state: str
    reason: str | None
    detail: str
    approval: str = "required"
    resolve_timeout: float = 600.0
    on_unresolved: str = "rollback"
    timing: Timing = field(default_factory=Timing)


@dataclass
class Decision:
    """An approval (identity: the plan the approver saw, when given) or a denial (reason)."""

    by: str
    identity: str | None = None
    reason: str = ""


@dataclass
class PlanInput:
    number: int
    rule: str
    host: str


@dataclass
class Planned:
    """remediate.serve.runs.Planned, as the workflow keeps it."""

    status: str
    diff: str
    plan: dict[str, Any] | None
    message: str
    fixed_by: str | None = None


@dataclass
class RunInput:
    """An apply (plan: the approved document) or a rollback (plan None) of the run the workflow named."""

    number: int
    rule: str
    host: str
    run_id: str
    plan: dict[str, Any] | None = None


@dataclass
class Ran:
    """How an apply or rollback ended, and the steps it logged for the incident's history."""

    status: str
    run_id: str | None
    message: str
    log: list[list[str]] = field(default_factory=list)


@dataclass
class Told:
    """What the notify hooks are sent when an incident ends."""

    number: int
    body: dict[str, Any]
