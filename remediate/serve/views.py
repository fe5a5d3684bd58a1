"""What the page shows of an incident beyond its fields, worked out once here and not in the templates: who approved
(verified identities, each with the plan they approved), how far the approvals are ("1 of 2 approvals; runs when one
more person approves"), whether the diff on the page was applied, the steps applied, and a stamp that changes with
every decision (the live page's cue to fetch it again)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from remediate.serve.backend import plan_identity
from remediate.serve.models import State
from remediate.serve.store import Incident, iso

#: What the diff is, by state, once it was reviewed: the page keeps it after the decision.
APPLIED: Final = "reviewed and applied"
NOT_APPLIED: Final = "reviewed, not applied"
TO_REVIEW: Final = "to review"


@dataclass(frozen=True)
class Approval:
    """One approval as the page shows it: who (as the audit log words them), when, and which plan."""

    said: str
    at: str
    plan: str
    note: str = ""


@dataclass(frozen=True)
class View:
    """An incident and what the page says about it."""

    incident: Incident
    identity: str  # the identity of the plan it holds now, "" before one is made
    stamp: str
    needed: int
    progress: str
    label: str
    approvals: list[Approval] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def decidable(self) -> bool:
        """Whether the page offers Approve and Deny: pending, with its plan made."""
        return self.incident.state == State.PENDING and bool(self.incident.plan_diff)


def stamp(incident: Incident) -> str:
    """Changes with every decision the incident records (a history line need not touch `updated`)."""
    return f"{incident.updated:.6f}/{len(incident.history)}/{State(incident.state).value}"


def view(incident: Incident, *, needed: int = 1, expires: float | None = None, now: float | None = None) -> View:
    """The page's view of `incident`, whose rule wants `needed` distinct approvers, each approval good for `expires`
    seconds (None: no expiry known)."""
    now = time.time() if now is None else now
    identity = plan_identity(incident) or ""
    approvals = [_approval(a, identity, expires, now) for a in incident.approvals]
    if not approvals and incident.approved_by:  # an incident approved before approvals were kept one by one
        approvals = [Approval(incident.approved_by, "", "", "recorded before verified identities")]
    steps = [h for h in incident.history if str(h.get("what", "")).startswith("step ")]
    return View(incident, identity, stamp(incident), needed, _progress(incident, approvals, needed), _label(incident, steps),
                approvals, steps)


def _approval(raw: dict[str, Any], identity: str, expires: float | None, now: float) -> Approval:
    at = raw.get("at")
    plan = str(raw.get("plan") or "")
    note = ""
    if plan and identity and plan != identity:
        note = "another plan than the one held now"
    elif isinstance(at, (int, float)) and expires is not None and at + expires < now:
        note = "expired"
    said = f"{raw.get('by')} ({raw.get('via')})" if raw.get("via") else str(raw.get("by"))
    return Approval(said, iso(at) if isinstance(at, (int, float)) else str(at or ""), plan, note)


def _progress(incident: Incident, approvals: list[Approval], needed: int) -> str:
    """One line: where the incident stands on its approvals."""
    good = [a for a in approvals if not a.note]
    names = ", ".join(a.said for a in good)
    state = State(incident.state)
    if state == State.PENDING:
        if not incident.plan_diff:
            return "planning…"
        if not good:
            return "waiting for approval" + (f": {needed} people must approve" if needed > 1 else "")
        more = needed - len(good)
        if more > 0:
            return (f"approved by {names}: {len(good)} of {needed} approvals; runs when "
                    f"{'one more person approves' if more == 1 else f'{more} more people approve'}")
        return f"approved by {names}: {len(good)} of {needed} approvals; starting"
    if state in (State.DENIED, State.IGNORED):
        return state.said
    if not approvals:
        return f"{state.said}; ran without an approval (the rule's approval is auto)" if incident.run_id else state.said
    return f"approved by {', '.join(a.said for a in approvals)}; {state.said}"


def _label(incident: Incident, steps: list[dict[str, Any]]) -> str:
    """What the diff on the page is now: to review, reviewed and applied, or reviewed and not applied."""
    if not incident.plan_diff:
        return ""
    state = State(incident.state)
    if state == State.PENDING:
        return TO_REVIEW
    if state == State.RUNNING:
        return "reviewed, being applied"
    applied = any(h.get("what") == "step applied" for h in steps)
    if state == State.ROLLED_BACK or any(h.get("what") == "step rolled back" for h in steps):
        return f"{APPLIED}, then rolled back" if applied else NOT_APPLIED
    if applied or state in (State.WAITING_RESOLVED, State.RESOLVED):
        return APPLIED
    return NOT_APPLIED
