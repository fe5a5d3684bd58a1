"""Four eyes, the pure policy (serve/approvals.py): who may approve, which approvals still count, when they are enough."""

from __future__ import annotations

from typing import Any

from remediate.serve import approvals
from remediate.serve.approvals import decide

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PLAN = "abcd1234" * 8


def approval(by: str, at: float = NOW - 60, plan: str = PLAN, via: str = "token") -> dict[str, Any]:
    return {"by": by, "via": via, "at": at, "plan": plan}


def test_two_distinct_approvers_are_enough_where_two_are_needed() -> None:
    first = decide([], "alice", "token", PLAN, NOW, needed=2, expires=3600, requested_by=None)
    assert first.refused is None and not first.enough
    assert first.approvals == [{"by": "alice", "via": "token", "at": NOW, "plan": PLAN}]
    second = decide(first.approvals, "bob", "slack", PLAN, NOW + 5, needed=2, expires=3600, requested_by=None)
    assert second.refused is None and second.enough and [a["by"] for a in second.approvals] == ["alice", "bob"]
    assert approvals.said(second.approvals) == "alice (token), bob (slack)"


def test_one_approval_is_enough_where_one_is_needed() -> None:
    assert decide([], "alice", "token", PLAN, NOW, needed=1, expires=3600, requested_by=None).enough


def test_the_same_person_twice_is_refused_and_does_not_count_twice() -> None:
    again = decide([approval("alice")], "alice", "session", PLAN, NOW, needed=2, expires=3600, requested_by=None)
    assert again.refused == "alice approved this plan already (at 07:59:00): someone else must approve it"
    assert not again.enough and again.approvals == [approval("alice")]


def test_the_requester_is_refused() -> None:
    mine = decide([], "alice", "token", PLAN, NOW, needed=1, expires=3600, requested_by="alice")
    assert mine.refused == "alice asked for this run: someone else must approve it"
    assert not mine.enough and mine.approvals == []
    assert decide([], "bob", "token", PLAN, NOW, needed=1, expires=3600, requested_by="alice").enough


def test_no_plan_yet_is_refused() -> None:
    early = decide([], "alice", "token", None, NOW, needed=1, expires=3600, requested_by=None)
    assert early.refused is not None and "not ready" in early.refused and not early.enough


def test_an_expired_approval_is_dropped_said_and_not_counted() -> None:
    old = approval("bob", at=NOW - 3601)
    late = decide([old], "alice", "token", PLAN, NOW, needed=2, expires=3600, requested_by=None)
    assert late.refused is None and not late.enough and [a["by"] for a in late.approvals] == ["alice"]
    assert late.dropped == ("bob's approval of 06:59:59 expired (approvals count for 3600 s)",)
    # an expired approval of one's own is no second approval: it may be given again
    assert decide([old], "bob", "token", PLAN, NOW, needed=1, expires=3600, requested_by=None).enough


def test_an_approval_of_another_plan_is_dropped_and_not_counted() -> None:
    other = approval("bob", plan="ffff0000" * 8)
    replanned = decide([other], "alice", "token", PLAN, NOW, needed=2, expires=3600, requested_by=None)
    assert not replanned.enough and [a["by"] for a in replanned.approvals] == ["alice"]
    assert len(replanned.dropped) == 1 and "bob's approval of 07:59:00 was of another plan (identity ffff0000…)" \
        in replanned.dropped[0]
    assert decide([other], "bob", "token", PLAN, NOW, needed=1, expires=3600, requested_by=None).enough


def test_the_plan_identity_of_a_plan_document() -> None:
    document = {"plans": {"h1": {"identity": PLAN}, "h2": {}}}
    assert approvals.identity_of(document, "h1") == PLAN
    assert approvals.identity_of(document, "h2") is None and approvals.identity_of(None, "h1") is None
