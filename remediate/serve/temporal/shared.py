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
#: The proof activities (proof.py): the alert's silence in Alertmanager, the look at its API, the post to chat.
SILENCE: Final = "remediate_silence"
LOOK: Final = "remediate_look"
CHAT: Final = "remediate_chat"
#: The one workflow that holds the pause for every replica (its id ends with the task queue's name).
CONTROL_ID: Final = "remediate-control"
#: Search attributes (Keyword) each incident carries, for `remediate incidents`, the page and /metrics on any replica.
HOST_ATTRIBUTE: Final = "RemediateHost"
RULE_ATTRIBUTE: Final = "RemediateRule"
STATE_ATTRIBUTE: Final = "RemediateState"
ATTRIBUTES: Final = (HOST_ATTRIBUTE, RULE_ATTRIBUTE, STATE_ATTRIBUTE)
#: When the incident's apply started (Datetime): what the run limits count.
APPLIED_ATTRIBUTE: Final = "RemediateApplied"
#: Every search attribute serve needs in its namespace, and its type as `temporal operator search-attribute` names it.
SEARCH_ATTRIBUTES: Final = {**{name: "Keyword" for name in ATTRIBUTES}, APPLIED_ATTRIBUTE: "Datetime"}
#: The memo key under which each incident keeps its summary (summary()): what a listing shows without a query.
MEMO: Final = "incident"
#: The longest plan diff a summary carries; GET /incidents/N has the whole of it.
SUMMARY_DIFF: Final = 32 * 1024
#: An incident's fields a summary carries as they are (plus plan_diff, cut, and the latest history entry).
SUMMARY_FIELDS: Final = ("id", "fingerprint", "starts_at", "alertname", "host", "rule", "playbook", "labels", "state",
                         "reason", "run_id", "approved_by", "created", "updated", "started", "deadline",
                         "alert_resolved", "approvals", "requested_by", "planned_at")
#: Fields a summary carries only once they are set: the memo of an incident that has none stays as it always was.
SUMMARY_PROOF: Final = ("silence_id", "evidence")


def incident_number(fingerprint: str, starts_at: str) -> int:
    """An incident's number, from its alert's fingerprint and startsAt: the same on every replica (48 bits of
    sha256, so it stays a number the API and the CLI take as they are)."""
    return int(hashlib.sha256(f"{fingerprint}\0{starts_at}".encode()).hexdigest()[:12], 16)


def workflow_id(number: int) -> str:
    return f"remediate-incident-{number}"


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What an incident's memo keeps of its record: every field but the plan document, the plan diff cut at
    SUMMARY_DIFF, and the latest history entry alone (the whole record is the workflow's: GET /incidents/N)."""
    found = {name: record.get(name) for name in SUMMARY_FIELDS}
    found.update({name: record[name] for name in SUMMARY_PROOF if record.get(name) is not None})
    diff = record.get("plan_diff")
    if diff is not None and len(diff) > SUMMARY_DIFF:
        diff = (diff[:SUMMARY_DIFF].rsplit("\n", 1)[0] + f"\n# ... cut at {SUMMARY_DIFF // 1024} KiB in this list: "
                f"GET /incidents/{record.get('id')} has the whole diff\n")
    return {**found, "plan_diff": diff, "plan": None, "history": list(record.get("history") or [])[-1:]}


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
    #: Four eyes (approvals.py): how many distinct people approve the plan, for how long an approval counts, and the
    #: person who asked for the run (a manual trigger), who may not approve it.
    approvals: int = 1
    approval_expires: float = 3600.0
    requested_by: str | None = None
    #: Proof (serve --alertmanager, the rule's silence:, verify_again:, chat:), as the replica that routed the firing
    #: had it: the alert silenced while the fix runs; Alertmanager's API looked at every `look_every` seconds while
    #: waiting for resolved (0: no Alertmanager); the playbook's plan made again before resolved counts; the pending
    #: plan posted to chat. Their defaults are what an incident started before they existed does.
    silence: bool = False
    look_every: float = 0.0
    verify_again: bool = False
    chat: bool = False


def first_record(opened: Opened, now: float) -> dict[str, Any]:
    """An incident's record as the firing opens it: the workflow's first, and the memo its start carries."""
    return {"id": opened.number, "fingerprint": opened.fingerprint, "starts_at": opened.starts_at,
            "alertname": opened.alertname, "host": opened.host, "rule": opened.rule, "playbook": opened.playbook,
            "labels": opened.labels, "state": opened.state, "reason": opened.reason, "plan_diff": None, "plan": None,
            "run_id": None, "approved_by": None, "created": now, "updated": now, "started": None, "deadline": None,
            "alert_resolved": None, "history": [{"at": now, "what": "received", "detail": opened.detail}],
            "approvals": [], "requested_by": opened.requested_by, "planned_at": None}


@dataclass
class Decision:
    """A person's decision: an approval (identity: the plan the approver saw, when given), a denial (reason), a
    re-plan or a rollback. `by` is the verified person's name, `via` how they were proven."""

    by: str
    identity: str | None = None
    reason: str = ""
    #: How the person was proven ("token", "session", "proxy", "slack"; "typed" for a name given in the body).
    via: str = ""


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
    #: The plan key id of the replica that made the plan (planfile.key_id): the apply's replica must share the key.
    key_id: str = ""


@dataclass
class RunInput:
    """An apply (plan: the approved document) or a rollback (plan None) of the run the workflow named."""

    number: int
    rule: str
    host: str
    run_id: str
    plan: dict[str, Any] | None = None
    #: The plan key id the plan was made under ("" for a rollback, which needs no identity).
    key_id: str = ""
    #: Whom the run is for, as its journal keeps it: the incident's approvals (verified identities) and who asked.
    approvals: list[dict[str, Any]] = field(default_factory=list)
    requested_by: str | None = None


@dataclass
class Ran:
    """How an apply or rollback ended, and the steps it logged for the incident's history."""

    status: str
    run_id: str | None
    message: str
    log: list[list[str]] = field(default_factory=list)
    #: status "unapproved": the approvals that still count when the apply began (the others expired or were revoked
    #: while it waited for a worker); nothing was changed.
    approvals: list[dict[str, Any]] | None = None


@dataclass
class Told:
    """What the notify hooks are sent when an incident ends."""

    number: int
    body: dict[str, Any]
    #: The incident's record as it ends (its escalation's evidence), or as it is planned (its chat post).
    record: dict[str, Any] | None = None


@dataclass
class Hush:
    """What the silence activity is asked: make the incident's silence (or find the one an earlier attempt made),
    make it end `deadline` + LAPSE ("until"), let it lapse soon ("lapse"), or expire it now ("expire")."""

    number: int
    action: str
    labels: dict[str, str]
    rule: str
    host: str
    state: str
    silence_id: str | None = None
    deadline: float = 0.0


@dataclass
class Hushed:
    """The silence as the activity left it (None: there is none), and what it did, for the history."""

    silence_id: str | None
    log: list[list[str]] = field(default_factory=list)


@dataclass
class LookInput:
    """A look at the alert while waiting for resolved: Alertmanager's API (when `look`), then the playbook's verify
    (when `verify` and the alert is gone). `webhook`: when the webhook's resolved asked for it."""

    number: int
    rule: str
    host: str
    fingerprint: str
    labels: dict[str, str]
    look: bool
    verify: bool
    webhook: str | None = None


@dataclass
class Looked:
    """The API's word (state firing, absent or unknown; "none" when not asked) and the verify's ("verified at ...")."""

    state: str
    said: str | None
    at: float
    reached: bool = True
    verify: str | None = None
