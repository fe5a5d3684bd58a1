"""serve under an alert storm, small: bench/serve_storm.py's burst (20 alerts, mostly repeats, over 2 hosts on real
sshds) against a real `remediate serve`, checked for what it must get right (each firing one incident, every incident
pending with its plan, the hosts unchanged), never for how fast; and the intake's part in it, in process: a repeat is
attached without the inventory being read again, and an edited inventory counts from the next alert."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from remediate.serve import intake as intake_mod
from remediate.serve.intake import Intake
from remediate.serve.models import Webhook
from remediate.serve.rules import Rule
from remediate.serve.store import Store
from tests import sshd

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def storm() -> Any:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import serve_storm
    return serve_storm


def test_a_small_storm_is_deduped_and_every_incident_is_planned(storm: Any) -> None:
    why = sshd.available()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="remediate-storm-test-"))  # not under pytest's 0700 folder: sshd reads the
    try:                                                               # authorized keys in it as the login user
        result = storm.storm(work, alerts=20, hosts=2, alertnames=2, group=1, senders=4, within=120)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert result.problems == []
    assert (result.firings, result.posts, result.alerts, result.incidents) == (4, 20, 20, 4)
    assert len(result.answer_ms) == 20 and len(result.to_pending_s) == 4


def payload(*alerts: tuple[str, str]) -> Webhook:
    """A webhook v4 with one firing per (fingerprint, instance)."""
    return Webhook.model_validate({"version": "4", "status": "firing", "receiver": "test", "alerts": [
        {"status": "firing", "labels": {"alertname": "Storm", "instance": f"{host}:9100"}, "fingerprint": fingerprint,
         "startsAt": "2026-12-06T06:00:00Z"} for fingerprint, host in alerts]})


def test_a_repeat_is_attached_without_reading_the_inventory_again(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1: {}\n")
    reads: list[Path] = []
    load = intake_mod.inventory_mod.load

    def counted(path: Path) -> Any:
        reads.append(path)
        return load(path)

    monkeypatch.setattr(intake_mod.inventory_mod, "load", counted)
    planned: list[tuple[str, int]] = []
    rule = Rule(name="storm", match={"alertname": "Storm"}, playbook=str(tmp_path / "storm.yml"),
                max_runs_per_hour=1000)
    engine = SimpleNamespace(store=Store(tmp_path / "incidents.db"), rules=SimpleNamespace(route=lambda labels: rule),
                             inventory=inventory, paused=False, clock=time.time, host_runs_per_hour=1000,
                             jobs=SimpleNamespace(submit=lambda host, number, what, job, yielding: planned.append(
                                 (host, number)), arriving=lambda alerts: None),
                             execution=SimpleNamespace(plan=None, run=None))
    intake = Intake(engine)  # type: ignore[arg-type]  # the engine's parts the intake uses
    first = intake.receive(payload(*[("f1", "h1")] * 5))
    assert [a["new"] for a in first] == [True, False, False, False, False]
    assert {a["id"] for a in first} == {first[0]["id"]} and planned == [("h1", first[0]["id"])]
    again = intake.receive(payload(("f1", "h1"), ("f2", "h1")))
    assert [a["new"] for a in again] == [False, True]
    assert len(reads) == 1  # read once, when serve starts; repeats and an unchanged file read nothing
    inventory.write_text("all:\n  hosts:\n    h1: {}\n    h2: {}\n")  # a host added while serve runs
    added = intake.receive(payload(("f3", "h2")))
    assert added[0]["new"] and planned[-1] == ("h2", added[0]["id"]) and len(reads) == 2
    history = [h["what"] for h in engine.store.get(first[0]["id"]).history]
    assert history.count("repeat") == 5  # four in the first payload, one in the second: each recorded
