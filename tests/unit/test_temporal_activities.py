"""serve on Temporal: nothing of temporalio's cuts an activity short. No activity takes its thread-cancel exception
(thrown into the activity's thread on a cancel or a worker's shutdown, it lands at whatever bytecode runs next; the
integration test test_a_worker_stopped_mid_plan_lets_the_plan_run_to_its_end... shows it for the plan on a real
worker, this one holds it for every activity registered, the ones added later too), and a heartbeat that cannot be
sent is dropped rather than raised into a step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from remediate.serve.rules import Rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.temporal import parts, shared, takeover
from remediate.serve.temporal.activities import Activities
from remediate.serve.temporal.proof import ProofActivities, Proofing


def test_every_activity_a_worker_runs_runs_to_its_end_when_cancelled(tmp_path: Path) -> None:
    runs = LibraryRuns(tmp_path / "inventory.yml", lambda opts, emit: (lambda h: None), tmp_path)
    rules = Rules(tmp_path / "rules.yml", ())
    registered = parts.activities(Activities(runs, rules, lambda: True), ProofActivities(runs, rules, Proofing()))
    names = {activity._Definition.must_from_callable(fn).name: activity._Definition.must_from_callable(fn)
             for fn in registered}
    assert {shared.PLAN, shared.APPLY, shared.ROLLBACK, shared.NOTIFY, shared.SILENCE} <= set(names), sorted(names)
    assert [name for name, defn in names.items() if not defn.no_thread_cancel_exception] == []


@pytest.mark.parametrize("error", [TimeoutError(), RuntimeError("Event loop is closed")])
def test_a_heartbeat_that_cannot_be_sent_never_cuts_the_activity_short(error: Exception) -> None:
    """temporalio's heartbeat from a thread waits up to 10 s for the worker's loop: stopped, it raises TimeoutError;
    closed, RuntimeError. Sent from a step's event, either would have failed the step mid-run."""
    env = ActivityEnvironment()
    sent: list[tuple[Any, ...]] = []

    def refused(*details: Any) -> None:
        sent.append(details)
        raise error
    env.on_heartbeat = refused
    with pytest.raises(type(error)):
        env.run(activity.heartbeat, "as temporalio sends it")
    assert env.run(takeover.heartbeat, "step", "conf") is None
    assert sent == [("as temporalio sends it",), ("step", "conf")]
