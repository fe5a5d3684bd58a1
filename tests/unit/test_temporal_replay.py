"""Incident workflows started by an older serve replay on today's code: two histories recorded before the proof
features (Alertmanager silences, the API's look, chat) were added — an incident approved, applied and resolved, and
one denied — must replay without a nondeterminism error. New workflow paths stay behind `workflow.patched`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from remediate.serve.temporal import parts, proving

HISTORIES = Path(__file__).parent / "data" / "temporal_histories"


def replay(name: str) -> BaseException | None:
    history = WorkflowHistory.from_json(f"remediate-incident-{name}", (HISTORIES / f"{name}.json").read_text())
    replayer = Replayer(workflows=parts.workflows(), workflow_runner=UnsandboxedWorkflowRunner())
    result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
    return result.replay_failure


@pytest.mark.parametrize("name", ["resolved", "denied"])
def test_an_incident_an_older_serve_started_replays_on_this_code(name: str) -> None:
    assert replay(name) is None


def test_the_replay_would_catch_a_new_path_taken_without_its_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The histories do reach the place the proof features changed: forcing the new path there breaks the replay."""
    monkeypatch.setattr(proving.Proving, "proving", lambda self: True)
    assert type(replay("resolved")).__name__ == "NondeterminismError"
