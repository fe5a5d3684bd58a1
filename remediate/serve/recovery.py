"""After a restart (a SIGKILL included) nothing runs twice: a run the host's journal shows finished takes its state
from the journal, one that never began is resumed, one cut off mid-way is reported, not guessed at."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remediate.engine import journal as journal_mod
from remediate.serve.jobs import APPLYING, PLANNING
from remediate.serve.models import State
from remediate.serve.store import Incident

if TYPE_CHECKING:
    from remediate.serve.engine import Engine


def recover(engine: Engine) -> list[str]:
    """Take up what the previous serve left pending or running; what was done, one line per incident."""
    said = []
    store, execution, jobs = engine.store, engine.execution, engine.jobs
    for incident in store.all([State.PENDING, State.RUNNING]):
        if incident.state == State.PENDING:
            if incident.plan is None:
                store.log(incident.id, "resumed", "serve restarted before the plan was made (or an older serve kept "
                                                  "it without the playbook's text); planning again")
                jobs.submit(str(incident.host), incident.id, PLANNING, execution.plan)
                said.append(f"incident {incident.id}: planning again")
            continue
        record = journal_record(engine, incident)
        if record is None and engine.paused:
            execution.hold(incident.id, "serve restarted paused before the run began")
            if incident.plan is None:
                jobs.submit(str(incident.host), incident.id, PLANNING, execution.plan)
            said.append(f"incident {incident.id}: not started (paused): pending")
        elif record is None and not _still_approved(engine, incident):
            said.append(f"incident {incident.id}: its approvals lapsed while serve was down: pending")
        elif record is None:
            store.log(incident.id, "resumed", "serve restarted before the run began (the host's journal has no run "
                                              "for it); starting it now")
            jobs.submit(str(incident.host), incident.id, APPLYING, execution.run)
            said.append(f"incident {incident.id}: run resumed")
        else:
            said.extend(_adopt(engine, incident, record))
    return said


def _still_approved(engine: Engine, incident: Incident) -> bool:
    """A run approved before serve stopped, not begun: its approvals must still count now (the rule's
    approval_expires, asked again), else it waits for approval once more (execution.approved says why)."""
    rule = engine.rules.named(str(incident.rule))
    return rule is None or engine.execution.approved(incident, rule, rule.approval_expires)  # no rule: run fails it


def _adopt(engine: Engine, incident: Incident, record: dict[str, Any]) -> list[str]:
    """The incident's state from its run's journal: applied, rolled back, still running elsewhere, or cut off."""
    outcome = journal_mod.live_outcome(record)
    run_id = record["run_id"]
    rule = engine.rules.named(str(incident.rule))
    if outcome == "applied" and rule is not None:
        engine.store.transition(incident.id, [State.RUNNING], State.WAITING_RESOLVED, "recovered",
                                f"serve restarted; the journal says run {run_id} applied: waiting for resolved",
                                run_id=run_id, deadline=engine.clock() + rule.resolve_timeout)
    elif outcome == "rolled-back":
        engine.execution.finish(incident.id, State.ROLLED_BACK,
                                f"serve restarted; the journal says run {run_id} was rolled back", run_id=run_id)
    elif outcome == "running":
        engine.store.log(incident.id, "in flight", f"run {run_id} is still running in another process")
        return []
    else:
        engine.execution.finish(incident.id, State.FAILED,
                                f"serve was stopped while run {run_id} was in flight; its journal says {outcome}. "
                                f"Nothing was run again: see `remediate runs show {run_id}`, and `remediate rollback "
                                f"--host {incident.host} --run {run_id}` to undo it", run_id=run_id)
    return [f"incident {incident.id}: run {run_id} {outcome}"]


def journal_record(engine: Engine, incident: Incident) -> dict[str, Any] | None:
    """The journal record of this incident's apply: by run id, else the first apply of its playbook on its host
    since the run began (the id is stored as the run starts, a SIGKILL may come first)."""
    if incident.run_id:
        return next(iter(journal_mod.records(incident.host, run_id=incident.run_id)), None)
    if incident.started is None:
        return None
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(incident.started - 1))
    records = journal_mod.records(incident.host, since=since)
    books = {str(Path(str(incident.playbook)).resolve())}
    if incident.plan is not None:  # the apply read the saved text, from a copy when the file had changed
        books.add(str(Path(engine.runs.playbook(incident.plan)).resolve()))
    later = [r for r in records if str(r.get("started") or "") >= since
             and str(Path(str(r.get("playbook_path") or "")).resolve()) in books]
    return later[-1] if later else None
