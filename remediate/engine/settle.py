"""After a run's every step is applied and verified: each step's settle (kinds.Step.settle), what no rollback could
undo and so is done only now (a backup step prunes its older backups). A failure here is said and undoes nothing: the
run stays applied."""

from __future__ import annotations

from collections.abc import Iterable

from remediate import redact
from remediate.contract.plan import Plan
from remediate.engine import events
from remediate.engine.context import Context
from remediate.engine.events import Emit
from remediate.engine.journal import Journal
from remediate.errors import RemediateError
from remediate.kinds import Step, blame


def settle(host: str, steps: Iterable[tuple[Step, Plan]], ctx: Context, journal: Journal, emit: Emit) -> None:
    """Each changed step's settle, in order, what it did journalled with the run's end."""
    for step, plan in steps:
        if not plan.changed:
            continue
        why = None
        try:
            said = step.settle(ctx, plan, journal.step(step.id))
        except RemediateError as e:
            why = str(e)
        except Exception as e:  # noqa: BLE001 - a kind's own bug: named as that kind's, and the run stays applied
            why = blame(step.kind, step.id, e)
        if why is not None:
            said = f"not settled: {redact.text(why)}"
            emit(events.Notice(host, f"step {step.id!r}: {said} (the run stays applied)"))
        if said is not None:
            journal.update_step(step.id, later=True, settled=said)
