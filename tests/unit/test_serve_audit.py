"""What an incident's history keeps of the library's typed events, the same words on either backend."""

from __future__ import annotations

from remediate.engine import events
from remediate.engine.outcome import Mode
from remediate.serve.runs import audit_line


def test_a_steps_end_and_a_rollbacks_start_are_kept_in_one_wording() -> None:
    said = [audit_line(e) for e in (
        events.RunStarted("gw", Mode.APPLY, "R1", "smtp-to-lmtp"),
        events.StepApplied("gw", "relay", 0.2),
        events.StepVerified("gw", "relay", "relay_transport is lmtp:[10.0.0.5]:2525", 0.1),
        events.StepFailed("gw", "test-mail", "no 'Saved' for queue id 4F2A1 within 60 s"),
        events.RunStarted("gw", Mode.ROLLBACK, "R1", "smtp-to-lmtp"),
        events.StepRolledBack("gw", "relay", "restored /opt/mail/docker-compose.yml"),
    )]
    assert said == [
        None,
        ("step applied", "relay"),
        ("step verified", "relay: relay_transport is lmtp:[10.0.0.5]:2525"),
        ("step failed", "test-mail: no 'Saved' for queue id 4F2A1 within 60 s"),
        ("rollback started", "run R1"),
        ("step rolled back", "relay: restored /opt/mail/docker-compose.yml"),
    ]
