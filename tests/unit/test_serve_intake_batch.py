"""serve's intake records a payload's firing alerts, new ones and repeats, in one transaction (one fsync per POST,
not one per alert), and acts on them only once that is committed: the planning jobs start, and the decisions are
told, after the commit; a payload that fails half-way records nothing and starts nothing."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from remediate.serve.intake import Intake
from remediate.serve.models import State, Webhook
from remediate.serve.rules import Rule
from remediate.serve.store import Store


def payload(*alerts: tuple[str, str, str]) -> Webhook:
    """A webhook v4: one alert per (status, fingerprint, instance)."""
    return Webhook.model_validate({"version": "4", "status": "firing", "receiver": "test", "alerts": [
        {"status": status, "labels": {"alertname": "Storm", "instance": f"{host}:9100"}, "fingerprint": fingerprint,
         "startsAt": "2026-12-06T06:00:00Z"} for status, fingerprint, host in alerts]})


def committed(db: Path) -> dict[int, list[str]]:
    """What another connection sees: each incident's history, committed only."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as other:
        found: dict[int, list[str]] = {int(r[0]): [] for r in other.execute("SELECT id FROM incidents")}
        for incident, what in other.execute("SELECT incident_id, what FROM history ORDER BY rowid"):
            found[int(incident)].append(str(what))
    return found


class Serve:
    """The intake over a real store, with the engine's parts it uses; each job submitted is kept, with what another
    connection saw of its incident at that moment."""

    def __init__(self, tmp_path: Path, route: Any = None) -> None:
        self.db = tmp_path / "incidents.db"
        (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1: {}\n    h2: {}\n")
        rule = Rule(name="storm", match={"alertname": "Storm"}, playbook=str(tmp_path / "storm.yml"),
                    max_runs_per_hour=1000)
        self.submitted: list[tuple[str, int, dict[int, list[str]]]] = []
        self.told: list[tuple[int, str, dict[int, list[str]]]] = []
        self.store = Store(self.db, echo=lambda number, what, detail: self.told.append(
            (number, what, committed(self.db))))
        self.engine = SimpleNamespace(
            store=self.store, rules=SimpleNamespace(route=route or (lambda labels: rule)),
            inventory=tmp_path / "inventory.yml", paused=False, clock=time.time, host_runs_per_hour=1000,
            jobs=SimpleNamespace(submit=lambda host, number, what, job, yielding: self.submitted.append(
                (host, number, committed(self.db))), arriving=lambda alerts: None),
            execution=SimpleNamespace(plan=None, run=None))
        self.intake = Intake(self.engine)  # type: ignore[arg-type]  # the engine's parts the intake uses


def test_a_payloads_alerts_are_one_commit_and_planned_once_committed(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    first = serve.intake.receive(payload(("firing", "f1", "h1")))
    before = serve.store.commits
    answers = serve.intake.receive(payload(("firing", "f1", "h1"), ("firing", "f2", "h2"), ("firing", "f1", "h1"),
                                           ("firing", "f2", "h2"), ("firing", "f3", "h1")))
    assert serve.store.commits == before + 1  # five alerts: two new, three repeats, one transaction
    assert [a["new"] for a in answers] == [False, True, False, False, True]
    assert answers[0]["id"] == answers[2]["id"] == first[0]["id"] and answers[1]["id"] == answers[3]["id"]
    assert all(a["state"] == State.PENDING for a in answers)
    # each planning job starts only once its incident, and the whole payload, is committed
    assert [(host, number) for host, number, _ in serve.submitted] == [
        ("h1", first[0]["id"]), ("h2", answers[1]["id"]), ("h1", answers[4]["id"])]
    seen = serve.submitted[1][2]
    assert set(seen) == {first[0]["id"], answers[1]["id"], answers[4]["id"]}
    assert seen[first[0]["id"]].count("repeat") == 2 and seen[answers[1]["id"]].count("repeat") == 1
    # and each decision is told after its commit: what was told, another connection could already read
    assert serve.told and all(what in seen_then.get(number, []) for number, what, seen_then in serve.told)


def test_a_repeat_recorded_in_a_payload_survives_a_restart(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    answers = serve.intake.receive(payload(("firing", "f1", "h1"), ("firing", "f1", "h1"), ("firing", "f1", "h1")))
    serve.store.close()  # no commit of the intake's is left for a shutdown to make
    again = Store(serve.db)
    try:
        history = [h["what"] for h in again.get(answers[0]["id"]).history]
    finally:
        again.close()
    assert history == ["received", "matched", "repeat", "repeat"]


def test_a_payload_that_fails_half_way_records_and_starts_nothing(tmp_path: Path) -> None:
    def route(labels: dict[str, str]) -> Rule:
        if labels["instance"].startswith("h2"):
            raise RuntimeError("the rules broke on the second alert")
        return Rule(name="storm", match={"alertname": "Storm"}, playbook=str(tmp_path / "storm.yml"),
                    max_runs_per_hour=1000)

    serve = Serve(tmp_path, route)
    with pytest.raises(RuntimeError, match="second alert"):
        serve.intake.receive(payload(("firing", "f1", "h1"), ("firing", "f2", "h2")))
    assert committed(serve.db) == {} and serve.submitted == [] and serve.told == []
    # Alertmanager sends the payload again: the first alert is new then, as it was never answered
    answers = serve.intake.receive(payload(("firing", "f1", "h1")))
    assert answers[0]["new"] and [number for _, number, _ in serve.submitted] == [answers[0]["id"]]


def test_a_resolved_alert_in_a_payload_is_answered_in_its_place(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    answers = serve.intake.receive(payload(("resolved", "r1", "h1"), ("firing", "f1", "h1"),
                                           ("firing", "f1", "h1")))
    assert [a["new"] for a in answers] == [True, True, False]
    assert answers[0]["state"] == State.IGNORED and answers[1]["state"] == State.PENDING
    assert answers[1]["id"] == answers[2]["id"] != answers[0]["id"]
    assert serve.store.get(answers[0]["id"]).reason == "resolved before serve saw it firing"


def test_payloads_that_arrive_while_one_is_recorded_share_the_next_commit(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    before = serve.store.commits
    answers: dict[str, list[dict[str, Any]]] = {}
    senders = [threading.Thread(target=lambda f=f: answers.__setitem__(f, serve.intake.receive(
        payload(("firing", f, "h1"), ("firing", "shared", "h2"))))) for f in ("a", "b", "c")]
    with serve.intake._receiving:  # as while another payload is being recorded: the three queue behind it
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while len(serve.intake._waiting) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(serve.intake._waiting) == 3
    for sender in senders:
        sender.join(30)
    assert serve.store.commits == before + 1  # three POSTs, six alerts: one transaction
    assert sorted(answers) == ["a", "b", "c"] and all(a[0]["new"] for a in answers.values())
    shared = [a[1] for a in answers.values()]
    assert len({a["id"] for a in shared}) == 1 and sorted(a["new"] for a in shared) == [False, False, True]
    assert len(serve.submitted) == 4 and all(len(seen) == 4 for _, _, seen in serve.submitted)


def test_one_failing_payload_among_waiting_ones_fails_alone(tmp_path: Path) -> None:
    def route(labels: dict[str, str]) -> Rule:
        if labels["instance"].startswith("h2"):
            raise RuntimeError("no route for h2")
        return Rule(name="storm", match={"alertname": "Storm"}, playbook=str(tmp_path / "storm.yml"),
                    max_runs_per_hour=1000)

    serve = Serve(tmp_path, route)
    outcome: dict[str, Any] = {}

    def send(name: str, *alerts: tuple[str, str, str]) -> None:
        try:
            outcome[name] = serve.intake.receive(payload(*alerts))
        except RuntimeError as e:
            outcome[name] = e

    senders = [threading.Thread(target=send, args=("good", ("firing", "g", "h1"))),
               threading.Thread(target=send, args=("bad", ("firing", "b1", "h1"), ("firing", "b2", "h2")))]
    with serve.intake._receiving:
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while len(serve.intake._waiting) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    for sender in senders:
        sender.join(30)
    assert isinstance(outcome["bad"], RuntimeError) and outcome["good"][0]["new"]
    assert list(committed(serve.db)) == [outcome["good"][0]["id"]]  # the bad payload's first alert: rolled back
