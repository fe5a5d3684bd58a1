"""serve on Temporal: the apply's retries outlast a dead attempt's lease whatever the heartbeat timeout, so that a
takeover, not the attempt budget, ends an incident whose worker died."""

from __future__ import annotations

import pytest

from remediate.serve.temporal import workflow
from remediate.serve.temporal.shared import Opened, Timing


def waited(attempts: int, interval: float) -> float:
    """How long `attempts` retries of an attempt that fails at once span: Temporal's backoff from 1 s, doubling,
    capped at the retry interval."""
    total, step = 0.0, 1.0
    for _ in range(attempts - 1):
        total += min(step, interval)
        step *= 2
    return total


@pytest.mark.parametrize("heartbeat", [1.0, 5.0, 60.0, 200.0, 900.0])
def test_the_apply_may_wait_out_a_whole_lease_and_still_have_its_own_attempts(heartbeat: float) -> None:
    incident = object.__new__(workflow.IncidentWorkflow)  # its __init__ runs in a workflow only
    timing = Timing(heartbeat=heartbeat, retry_interval=10.0)
    incident.opened = Opened(1, "fp", "t", None, {}, "h1", "r", "p", "pending", None, "received", timing=timing)
    attempts = incident.apply_attempts()
    lease = max(2 * heartbeat, 10.0)
    # every attempt spent waiting for the lease (each fails at once, retryable) leaves APPLY_ATTEMPTS of its own
    spent_waiting = next(n for n in range(1, attempts + 1) if waited(n, timing.retry_interval) >= lease)
    assert attempts - spent_waiting >= workflow.APPLY_ATTEMPTS - 1, (attempts, spent_waiting)
