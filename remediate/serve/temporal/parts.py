"""What a serve worker runs on Temporal: the workflow classes and the activities, in one place, so that each
workflow family (incidents, the pause, fleet rollouts) is registered here and backend.py stays the front end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remediate.serve.temporal.activities import Activities
from remediate.serve.temporal.proof import ProofActivities
from remediate.serve.temporal.rollout import RolloutHostWorkflow, RolloutWorkflow
from remediate.serve.temporal.rollout_activities import RolloutActivities
from remediate.serve.temporal.workflow import ControlWorkflow, IncidentWorkflow


def workflows() -> list[type]:
    """Every workflow class a worker runs."""
    return [IncidentWorkflow, ControlWorkflow, RolloutWorkflow, RolloutHostWorkflow]


def activities(incidents: Activities, proof: ProofActivities) -> list[Callable[..., Any]]:
    """Every activity a worker runs: the incidents' (plan, apply, rollback, notify; silence, look, chat) and the
    rollouts' host apply (with the same runs and pause; a rollout's fleet rollback is the incidents' rollback
    activity)."""
    return incidents.all() + proof.all() + RolloutActivities(incidents.runs, incidents.running).all()
