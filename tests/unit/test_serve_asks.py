"""Four eyes and what people ask for, over serve's HTTP API with named tokens: two approvers, the requester refused,
a run asked for by hand (POST /incidents), a re-plan and a rollback, each wanting its role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.serve.identity import Tokens

from . import test_serve as base
from .test_serve import Serve, alert, fake_host, make, person_token

receiver = base.receiver  # the fixture: an outgoing webhook's far end


@pytest.fixture
def two(tmp_path: Path, receiver: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """serve whose rule wants two distinct approvers; alice, bob, carol and dave each hold a named admin token."""
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    made = make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, receiver, approvals=2)
    yield made
    made.engine.stop()


def ask(serve: Serve, who: str, path: str = "/incidents", **body: str) -> tuple[int, dict[str, object]]:
    response = serve.client.post(path, json=body, headers=serve.people[who])
    serve.engine.idle()
    return response.status_code, response.json()


def test_four_eyes_over_http_two_named_tokens_and_the_same_one_twice_refused(two: Serve) -> None:
    number = two.post(alert())[0]["id"]
    first = two.act(number, "approve", who="alice")
    assert first.status_code == 200 and first.json()["state"] == "pending", first.text
    again = two.act(number, "approve", who="alice")
    assert again.status_code == 409 and "alice approved this plan already" in again.json()["error"]
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    done = two.act(number, "approve", who="bob")
    assert done.status_code == 200 and done.json()["approved_by"] == "alice, bob", done.text
    incident = two.incident(number)
    assert incident["state"] == "waiting_resolved" and two.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    assert [(a["by"], a["via"]) for a in incident["approvals"]] == [("alice", "token"), ("bob", "token")]
    details = [h["detail"] for h in incident["history"] if h["what"] in ("approved", "approval refused", "applying")]
    assert details[0] == "by alice (token) (1 of 2): the plan waits for 1 more"
    assert details[1].startswith("alice (token): alice approved this plan already")
    assert details[2] == "by bob (token) (2 of 2)"
    assert details[3].endswith("on h1, approved by alice (token), bob (token)")


def test_a_run_asked_for_by_hand_is_not_approved_by_whoever_asked(two: Serve) -> None:
    status, asked = ask(two, "carol", rule="app", host="h1")
    assert status == 201 and asked["requested_by"] == "carol", asked
    number = int(str(asked["id"]))
    assert two.incident(number)["plan_diff"]
    refused = two.act(number, "approve", who="carol")
    assert refused.status_code == 409 and "carol asked for this run: someone else must approve it" in \
        refused.json()["error"]
    assert two.act(number, "approve", who="alice").status_code == 200
    assert two.incident(number)["state"] == "pending"  # carol's refused approval did not count: alice is 1 of 2
    assert two.act(number, "approve", who="bob").json()["state"] in ("running", "waiting_resolved")
    assert two.incident(number)["state"] == "waiting_resolved"
    status, found = ask(two, "carol", rule="app", host="h9")
    assert status == 409 and "host 'h9' is not in" in str(found["error"])
    status, found = ask(two, "carol", rule="app")
    assert status == 400


def test_replan_and_rollback_over_http(two: Serve) -> None:
    number = two.post(alert())[0]["id"]
    two.act(number, "approve", who="alice")
    status, replanned = ask(two, "dave", f"/incidents/{number}/replan")
    assert status == 200 and replanned["approvals"] == [] and replanned["requested_by"] == "dave", replanned
    assert two.act(number, "approve", who="dave").status_code == 409
    two.act(number, "approve", who="alice")
    two.act(number, "approve", who="bob")
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    status, _ = ask(two, "dave", f"/incidents/{number}/replan")
    assert status == 409  # it ran: a re-plan no longer applies
    status, back = ask(two, "carol", f"/incidents/{number}/rollback")
    assert status == 200, back
    incident = two.incident(number)
    assert incident["state"] == "rolled_back" and two.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    assert str(incident["reason"]).startswith("rolled back by carol (token)")


def test_asking_wants_a_role_that_grants_it(two: Serve) -> None:
    token = person_token(Tokens(two.db.parent), "erin", ("watcher",))  # a role no grant names
    headers = {"Authorization": f"Bearer {token}"}
    response = two.client.post("/incidents", json={"rule": "app", "host": "h1"}, headers=headers)
    assert response.status_code == 403 and "erin (token) may not request" in response.json()["error"], response.text
    number = two.post(alert())[0]["id"]
    for action in ("replan", "rollback"):
        assert two.client.post(f"/incidents/{number}/{action}", headers=headers).status_code == 403
    assert [i for i in two.engine.store.all() if i.requested_by] == []
