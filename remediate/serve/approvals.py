"""Four eyes: whether one more approval is taken, and whether the approvals held are enough to apply a plan. Pure and
standard library only (the Temporal workflow's sandbox imports it): both backends decide the same way.

An approval is {"by": name, "via": how it was proven, "at": epoch seconds, "plan": the plan identity approved}. It
counts while it is younger than the rule's `approval_expires` and names the plan the incident holds now; the person
who asked for the run (a manual trigger or a re-plan) never approves it, and nobody approves the same plan twice."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Decision", "Standing", "alive", "decide", "held", "identity_of", "reviewed", "said", "standing"]


@dataclass(frozen=True)
class Decision:
    """What one more approval comes to: refused (why), or the approvals to keep and whether they are enough.

    `dropped` says, one line each, which approvals held before no longer count (expired, or of another plan)."""

    refused: str | None
    approvals: list[dict[str, Any]]
    enough: bool
    dropped: tuple[str, ...] = field(default=())


def identity_of(plan: dict[str, Any] | None, host: str | None) -> str | None:
    """The identity of the plan document's plan for `host` (what an approval approves), or None before it is made."""
    plans = (plan or {}).get("plans") or {}
    found = plans.get(host) if isinstance(plans, dict) else None
    return str(found["identity"]) if isinstance(found, dict) and found.get("identity") else None


def clock(epoch: float) -> str:
    """An approval's time as the audit log words it: 20:04:44 (UTC)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%H:%M:%S")


def held(approvals: Iterable[dict[str, Any]], plan_identity: str | None, now: float,
         expires: float) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The approvals that still count (of this plan, unexpired), and a line for each one that no longer does."""
    kept: list[dict[str, Any]] = []
    dropped: list[str] = []
    for approval in approvals:
        by, at = str(approval.get("by")), float(approval.get("at") or 0.0)
        if approval.get("plan") != plan_identity:
            dropped.append(f"{by}'s approval of {clock(at)} was of another plan (identity "
                           f"{str(approval.get('plan'))[:8]}…), not the one held now: it no longer counts")
        elif now - at > expires:
            dropped.append(f"{by}'s approval of {clock(at)} expired (approvals count for {expires:g} s)")
        else:
            kept.append(dict(approval))
    return kept, tuple(dropped)


def alive(approvals: Iterable[dict[str, Any]],
          live: Callable[[str, str], bool]) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The approvals whose person still stands (`live(name, via)`: a revoked token's no longer does), and a line for
    each one dropped."""
    kept: list[dict[str, Any]] = []
    dropped: list[str] = []
    for approval in approvals:
        by, via = str(approval.get("by")), str(approval.get("via") or "")
        if live(by, via):
            kept.append(dict(approval))
        else:
            dropped.append(f"{by}'s approval of {clock(float(approval.get('at') or 0.0))} ({via or 'unknown'}) no "
                           f"longer counts: {by} has no live {'mapping' if via not in ('token', 'session') else 'token'}"
                           " now (revoked)")
    return kept, tuple(dropped)


@dataclass(frozen=True)
class Standing:
    """What the approvals held are worth as an apply begins: those that still count, a line for each dropped one,
    and whether they are enough."""

    kept: list[dict[str, Any]]
    dropped: tuple[str, ...]
    enough: bool
    needed: int

    def refusal(self) -> str:
        return (f"the approvals held no longer approve this plan ({len(self.kept)} of {self.needed} count): nothing "
                "was changed; the plan waits for approval")


def standing(approvals: Iterable[dict[str, Any]], plan: dict[str, Any] | None, host: str | None, now: float,
             expires: float, live: Callable[[str, str], bool], needed: int) -> Standing:
    """The approvals that still approve `plan` on `host` at `now` (of this plan, younger than `expires`, their person
    still standing): what either backend asks just before it applies."""
    kept, expired = held(approvals, identity_of(plan, host), now, expires)
    kept, gone = alive(kept, live)
    return Standing(kept, (*expired, *gone), len({a["by"] for a in kept}) >= needed, needed)


def decide(approvals: Iterable[dict[str, Any]], person_name: str, via: str, plan_identity: str | None, now: float, *,
           needed: int, expires: float, requested_by: str | None) -> Decision:
    """One more approval, by `person_name` (proven `via`), of the plan whose identity is `plan_identity`, at `now`.

    Refused before the plan is made, for the person who asked for the run, and for a second approval of the same
    plan by the same person. Otherwise the approvals that still count, this one added, and `enough` once `needed`
    distinct people hold one."""
    kept, dropped = held(approvals, plan_identity, now, expires)
    if plan_identity is None:
        return Decision("its plan is not ready yet; approve once it shows a diff", kept, False, dropped)
    if requested_by is not None and person_name == requested_by:
        return Decision(f"{person_name} asked for this run: someone else must approve it", kept, False, dropped)
    mine = next((a for a in kept if a.get("by") == person_name), None)
    if mine is not None:
        return Decision(f"{person_name} approved this plan already (at {clock(float(mine['at']))}): someone else "
                        "must approve it", kept, False, dropped)
    kept.append({"by": person_name, "via": via, "at": now, "plan": plan_identity})
    return Decision(None, kept, len({a["by"] for a in kept}) >= needed, dropped)


def said(approvals: Iterable[dict[str, Any]]) -> str:
    """The approvers as the audit log names them: 'alice (token), bob (slack)'."""
    return ", ".join(f"{a.get('by')} ({a.get('via')})" if a.get("via") else str(a.get("by")) for a in approvals)


def reviewed(planned_at: float, identity: str | None, host: str | None, approvals: list[dict[str, Any]],
             approved_by: str | None) -> str:
    """What an apply applies, as its history says: the plan the approvers reviewed (when it was made, its identity),
    on which host, and who approved it."""
    plan = f"exactly the plan of {clock(planned_at)}" + (f" (identity {identity[:8]}…)" if identity else "")
    if approvals:
        return f"{plan} on {host}, approved by {said(approvals)}"
    return f"{plan} on {host}" + (f", approved by {approved_by}" if approved_by else " (approval: auto)")
