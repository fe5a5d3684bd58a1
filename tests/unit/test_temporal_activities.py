"""serve on Temporal: nothing of temporalio's cuts an activity short. No activity takes its thread-cancel exception
(thrown into the activity's thread on a cancel or a worker's shutdown, it lands at whatever bytecode runs next; the
integration test test_a_worker_stopped_mid_plan_lets_the_plan_run_to_its_end... shows it for the plan on a real
worker, this one holds it for every activity registered, the ones added later too), and a heartbeat that cannot be
sent is dropped rather than raised into a step; a worker that does not stop in time keeps its loop for the
activities still running, and serve says so."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from remediate.serve.backend import Unavailable
from remediate.serve.rules import Rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal import backend as backend_mod
from remediate.serve.temporal import launch, parts, shared, takeover
from remediate.serve.temporal.activities import Activities
from remediate.serve.temporal.backend import Connection, TemporalBackend
from remediate.serve.temporal.proof import ProofActivities, Proofing


def test_every_activity_a_worker_runs_runs_to_its_end_when_cancelled(tmp_path: Path) -> None:
    runs = LibraryRuns(tmp_path / "inventory.yml", lambda opts, emit: (lambda h: None), tmp_path)
    rules = Rules(tmp_path / "rules.yml", ())
    registered = parts.activities(Activities(runs, rules, lambda: True), ProofActivities(runs, rules, Proofing()))
    names = {activity._Definition.must_from_callable(fn).name: activity._Definition.must_from_callable(fn)
             for fn in registered}
    assert {shared.PLAN, shared.APPLY, shared.ROLLBACK, shared.NOTIFY, shared.SILENCE} <= set(names), sorted(names)
    assert [name for name, defn in names.items() if not defn.no_thread_cancel_exception] == []


def test_a_heartbeat_that_cannot_be_sent_never_cuts_the_activity_short() -> None:
    """temporalio's heartbeat from a thread waits up to 10 s for the worker's loop, then raises TimeoutError: sent
    from a step's event, it would have failed the step mid-run."""
    env = ActivityEnvironment()
    sent: list[tuple[Any, ...]] = []

    def refused(*details: Any) -> None:
        sent.append(details)
        raise TimeoutError()
    env.on_heartbeat = refused
    with pytest.raises(TimeoutError):
        env.run(activity.heartbeat, "as temporalio sends it")
    assert env.run(takeover.heartbeat, "step", "conf") is None
    assert sent == [("as temporalio sends it",), ("step", "conf")]


def test_a_heartbeat_outside_an_activity_is_a_mistake_and_said() -> None:
    with pytest.raises(RuntimeError, match="Not in activity context"):
        takeover.heartbeat("no activity here")


class Hung:
    """A worker whose shutdown never ends (an activity in flight that does not)."""

    async def shutdown(self) -> None:
        await asyncio.Event().wait()


def test_a_worker_that_does_not_stop_in_time_keeps_its_loop_and_serve_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The activities still running heartbeat and report their ends through the loop: it is not stopped under them."""
    runs = LibraryRuns(tmp_path / "inventory.yml", lambda opts, emit: (lambda h: None), tmp_path)
    backend = TemporalBackend(Connection("127.0.0.19:1"), Rules(tmp_path / "rules.yml", ()), None, runs)
    backend._thread.start()
    backend._worker = Hung()  # type: ignore[assignment]
    monkeypatch.setattr(backend_mod, "STOP_WAIT", 0.2)
    try:
        with pytest.raises(Unavailable, match=r"did not stop within 0.2 s: an activity in flight is still running"):
            backend.stop()
        assert backend.loop.is_running() and backend._thread.is_alive()
        launch._stopped("SIGTERM", backend)
        said = capsys.readouterr().err
        assert "serve: the Temporal worker did not stop within 0.2 s" in said and "serve: stopped" not in said, said
    finally:
        backend.loop.call_soon_threadsafe(backend.loop.stop)
        backend._thread.join(10)
