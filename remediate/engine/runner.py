"""Per host: check every step -> (stop here on plan) -> journal -> apply and verify each -> roll back on failure."""

from __future__ import annotations

import functools
import inspect
import posixpath
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from remediate import __version__, redact
from remediate.contract.plan import NOTHING_APPLIED, Applied, Plan
from remediate.engine import events, identity, planfile, shown
from remediate.engine.context import HOST, Context, TransportPool
from remediate.engine.events import Emit
from remediate.engine.journal import UNDO_STATES, Journal, StepRecord, new_run_id, now
from remediate.engine.outcome import Action, Mode, Outcome, RunEnd, Status, StepState
from remediate.engine.settle import settle
from remediate.engine.undo import DEFAULT_STATE_DIR, Terminated, Undo, lock_path, signals_held
from remediate.errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_ROLLBACK_INCOMPLETE,
    ConnectError,
    JournalWriteError,
    LeaseLost,
    RemediateError,
)
from remediate.inputs.inventory import Host
from remediate.inputs.playbook import Playbook
from remediate.kinds import ORIGIN, Step, blame, failure
from remediate.records import record
from remediate.transport import BEFORE_COMMAND, Transport

__all__ = ["Bound", "Emit", "Outcome", "Runner", "error_outcome"]


@record
class Bound:
    """A playbook bound to one host and checked: ready to show or to apply."""

    host: Host
    variables: dict[str, Any]
    steps: list[Step]
    ctx: Context
    plans: list[Plan] = field(default_factory=list)
    #: The plan as people read it (shown.normalized: what a saved plan file shows); set by run().
    events: list[dict[str, Any]] = field(default_factory=list)
    #: The plan's identity (identity.py): structural, what decides whether a saved plan still holds; set by run().
    identity: str = ""
    #: The other inventory hosts the steps contact, as the inventory says to reach them: part of the identity.
    others: dict[str, Host] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(p.changed for p in self.plans)


@record
class Failure:
    """What _undo_on_failure saw: the step running when it failed, and the outcome after rolling back."""

    step: Step | None = None
    outcome: Outcome | None = None


class Runner(Undo):
    """Applies one playbook to hosts, emitting events for the renderer; on failure, undoes what it applied."""

    def __init__(self, *, playbook: Playbook | None, pool: TransportPool, emit: Emit, break_lock: bool = False,
                 skipped: frozenset[str] = frozenset(), verbose: int = 0) -> None:
        super().__init__(pool=pool, emit=emit, break_lock=break_lock)
        self.playbook = playbook
        #: -vv: a kind's own exception (a bug, in a plug-in or in remediate) is shown with its traceback.
        self.verbose = verbose
        #: The playbook's text as this run read it: part of every plan's identity.
        self.playbook_text = Path(playbook.path).read_bytes() if playbook is not None else b""
        #: Steps the operator left out (--steps, --skip-steps, --start-at-step): checked for their outputs, never
        #: applied, and unchanged for the steps that depend on them.
        self.skipped = skipped

    def bind(self, host: Host, extra: Mapping[str, Any]) -> Bound:
        """Validate the playbook for this host; no connection yet."""
        assert self.playbook is not None
        try:
            variables, steps = self.playbook.bind(host, extra)
        except RemediateError as e:
            self._traceback(host.name, e.__cause__)
            raise
        register_secrets(variables)
        inventory = self.pool.inventory
        others = {} if inventory is None else {  # each named where it is needed, before any connection
            name: inventory.get(name, needed_by=f"{step.spec.where}: step {step.id!r} contacts it")
            for step in steps for name in sorted(step.hosts() - {host.name})}
        ctx = Context(host=host, vars=variables, run_id=new_run_id(), pool=self.pool)
        return Bound(host, variables, steps, ctx, others=others)

    def run(self, bound: Bound, *, mode: Mode) -> Outcome:
        """Read-only: every step's plan, in order, each seeing the files as earlier steps will leave them."""
        assert self.playbook is not None
        self.emit(events.RunStarted(bound.host.name, mode, bound.ctx.run_id, self.playbook.name))
        timings: list[float] = []
        ahead = self._ask_ahead(bound)
        try:
            for index, step in enumerate(bound.steps):
                started = time.monotonic()
                earlier = {p.step_id: p for p in bound.plans}
                with self._blamed(bound.host.name, step):  # a kind's own exception names the step, kind and package
                    step = bound.steps[index] = step.with_outputs({i: p.outputs for i, p in earlier.items()})
                    deps = step.spec.when
                    if deps is not None and all(d in earlier for d in deps) and not any(earlier[d].changed for d in deps):
                        plan = step.planned(f"not needed: {', '.join(deps)} change{'s' if len(deps) == 1 else ''} "
                                            "nothing")
                    else:  # runs, or depends on a later step: checked now, settled below once every plan is known
                        plan = step.plan(bound.ctx)
                if step.id in self.skipped:
                    plan = step.planned("skipped: not selected (--steps, --skip-steps or --start-at-step)",
                                        outputs=plan.outputs)
                bound.plans.append(plan)
                bound.ctx.plans = bound.plans
                timings.append(round(time.monotonic() - started, 3))
        finally:
            if ahead is not None:
                ahead.forget_ahead()  # what no plan took: the apply reads anew
        bound.plans[:] = _settle(bound.steps, bound.plans)
        planned = [plan.shown() for plan in bound.plans]
        bound.identity = self.identity(bound)
        bound.events = shown.normalized([p.as_dict() for p in planned], bound.ctx.run_id)
        brief = mode == Mode.APPLY and shown.recently(bound.host.name, bound.identity)
        if mode == Mode.PLAN:
            shown.remember(bound.host.name, bound.identity)
        elif brief:
            self.emit(events.Notice(bound.host.name, f"this is the plan `remediate plan` showed at {brief}, unchanged: its "
                                                     "diffs are not repeated (`remediate plan` shows them again)"))
        for view, duration in zip(planned, timings):
            self.emit(events.StepPlanned(bound.host.name, view, duration, True if brief else None))
        pending = sum(p.changed for p in bound.plans)
        if mode == Mode.PLAN:  # the run ends here; apply goes on and says how it ends
            self.emit(events.RunFinished(bound.host.name, bound.ctx.run_id, RunEnd.PENDING if pending else RunEnd.NO_OP,
                                         EXIT_CHANGES if pending else EXIT_OK))
        if pending:
            return Outcome(bound.host.name, Status.PENDING, EXIT_CHANGES, f"{pending} step(s) would change the host",
                           bound.ctx.run_id, bound.plans)
        return Outcome(bound.host.name, Status.OK, EXIT_OK, "nothing to do", bound.ctx.run_id, bound.plans)

    def _ask_ahead(self, bound: Bound) -> Transport | None:
        """Ask the host, in one round trip, for what the steps' plans will read there (Step.reads_ahead); the
        transport asked, or None when there is not more than one thing to ask."""
        asks: list[tuple[str, ...]] = []
        for index, step in enumerate(bound.steps):
            deps = step.spec.when
            earlier = {s.id for s in bound.steps[:index]}
            # A step whose `when:` names earlier steps only may be skipped unplanned: what it would read is not asked
            # (a file on a hung mount it never reads must not stop the plan). One naming a later step is planned.
            if step.target != HOST or step.id in self.skipped or (deps is not None and set(deps) <= earlier):
                continue
            with self._blamed(bound.host.name, step):  # a kind's mistake here is its own, as in its plan
                for ask in step.reads_ahead():
                    if not (isinstance(ask, tuple) and ask and all(isinstance(word, str) for word in ask)):
                        raise TypeError(f"reads_ahead() gave {ask!r}: each must be a tuple of str")
                    asks.append(ask)
        if len(asks) < 2:
            return None
        transport = bound.ctx.transport(HOST)
        transport.read_ahead(asks)
        return transport

    def identity(self, bound: Bound) -> str:
        """The checked plan's identity: structural, from what will run and what was read (see identity.py)."""
        assert self.playbook is not None
        return identity.of_host(
            host=bound.host.name, playbook_text=self.playbook_text, variables=bound.variables, skipped=self.skipped,
            steps=[(s.id, s.kind, s.target, s.spec.params, s.spec.when) for s in bound.steps], plans=bound.plans,
            reads=bound.ctx.reads, run_id=bound.ctx.run_id, key=planfile.key(), others=bound.others,
            code={"remediate": __version__, **{f"kind {s.kind}": ORIGIN.get(s.kind, "") for s in bound.steps}})

    def apply(self, bound: Bound) -> Outcome:
        """Apply the checked plans; on any failure roll back what was applied, in reverse order."""
        assert self.playbook is not None
        host, ctx = bound.host, bound.ctx
        if not bound.changed:
            self.emit(events.RunFinished(host.name, ctx.run_id, RunEnd.NO_OP, EXIT_OK))
            return Outcome(host.name, Status.OK, EXIT_OK, "nothing to do", ctx.run_id, bound.plans)
        journal = Journal.start(
            run_id=ctx.run_id, host=host.name, address=host.address, playbook=self.playbook.name,
            playbook_path=self.playbook.path, variables=dict(bound.variables),
            steps=[StepRecord(s.id, s.kind, s.target, dict(s.spec.params),
                              step_state(p),
                              p.reason, [f.diff() for f in p.files], list(p.commands))
                   for s, p in zip(bound.steps, bound.plans)],
        )
        ctx.journal = journal
        journal.save(remote=False)
        hook = BEFORE_COMMAND.set(journal.before_command)  # what journal.begin leaves is saved before any command
        try:
            with self._locked(ctx):
                outcome = self._apply_steps(bound, journal)
        except LeaseLost as taken:  # another attempt of this run took it over (seen at a renewal or at the release)
            self.taken_over(ctx, journal, taken)
            raise
        except RemediateError:  # the lock was not ours to take: nothing ran
            journal.finish("refused")
            raise
        finally:
            BEFORE_COMMAND.reset(hook)
        left = self.lock_left(host.name, journal)
        if left is not None:  # the host is fixed; the lock left behind stops its next run: said, and not exit 0
            outcome = replace(outcome, exit_code=max(outcome.exit_code, EXIT_ERROR), message=f"{outcome.message}; but "
                              f"it {left}")
        if outcome.status == Status.CHANGED:  # said once the release found the lock still ours
            self.emit(events.RunFinished(host.name, ctx.run_id, RunEnd.APPLIED, outcome.exit_code,
                                         outcome.message if left else None))
        return outcome

    def _apply_steps(self, bound: Bound, journal: Journal) -> Outcome:
        """Under the lock: every step in order; any failure (or Ctrl-C) rolls back and becomes the outcome."""
        host, ctx = bound.host, bound.ctx
        main = ctx.transport(HOST)
        state_dir = posixpath.join(self._state_dir(bound), ctx.run_id)
        with self._undo_on_failure(bound, journal) as failure:
            main.mkdir(state_dir, later=True)  # made by the request that writes the journal's first copy there
            # The host's copy is first written with the record before the first mutation (ctx.record), in that
            # step: a full disk or a read-only folder stops the run there, before anything changes.
            journal.attach(main, posixpath.join(state_dir, "journal.json"))
            for step, plan in zip(bound.steps, bound.plans):
                if not plan.changed and not plan.checks:
                    continue
                if self.stop.is_set():  # a rollout was interrupted while this host ran: undo it like Ctrl-C
                    raise self.stop.cause
                failure.step = step
                self._apply_step(ctx, journal, step, plan)
            failure.step = None
            self.renew(ctx)  # a leased run still its own: the host's copy of the journal goes with the release
        if failure.outcome is not None:
            return failure.outcome
        with signals_held():  # verified: its housekeeping and its record end the run, a Ctrl-C waits for them
            settle(bound.host.name, zip(bound.steps, bound.plans), bound.ctx, journal, self.emit)
            journal.finish("applied", via=main)  # the host's copy goes with the lock's release (fenced, when leased)
        changed = sum(p.changed for p in bound.plans)
        return Outcome(host.name, Status.CHANGED, EXIT_OK, f"{changed} step(s) applied and verified", ctx.run_id, bound.plans)

    @contextmanager
    def _undo_on_failure(self, bound: Bound, journal: Journal) -> Iterator[Failure]:
        """Any failure (or Ctrl-C, or SIGTERM) inside the block rolls back what was applied, and becomes the
        outcome: one path, whatever failed and wherever."""
        failure = Failure()
        try:
            yield failure
        except LeaseLost:  # another attempt took this run over: what was applied is its to undo, not ours
            raise
        except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - every failure rolls back
            with signals_held():  # from the first failure on: a second Ctrl-C waits until the rollback ends
                if isinstance(error, ConnectError):
                    self._recover(bound.ctx, journal)
                failure.outcome = self._fail(bound, journal, failure.step, error)

    def _apply_step(self, ctx: Context, journal: Journal, step: Step, plan: Plan) -> None:
        self.renew(ctx)  # a leased run: its lease first (LeaseLost: another attempt took the run over)
        transport = ctx.transport(step.target)
        mark = len(transport.history)
        started = time.monotonic()
        self.emit(events.StepStarted(ctx.host.name, step.id, Action.APPLY if plan.changed else Action.CHECK))
        applied = NOTHING_APPLIED
        if plan.changed:
            journal.begin(step.id, state="applying", started=now())  # saved with its first record, or before a command
            applied = step.apply(ctx, plan) or NOTHING_APPLIED
            journal.update_step(step.id, later=True, state="applied",
                                commands=[r.summary() for r in transport.history[mark:]])
            self.emit(events.StepApplied(ctx.host.name, step.id, round(time.monotonic() - started, 3)))
        message = verify(step, ctx, plan, applied)
        journal.update_step(step.id, later=True, state="verified" if plan.changed else "checked", verified=message,
                            finished=now(), commands=[r.summary() for r in transport.history[mark:]])
        self.emit(events.StepVerified(ctx.host.name, step.id, redact.text(message), round(time.monotonic() - started, 3)))

    def _fail(self, bound: Bound, journal: Journal, step: Step | None, error: BaseException) -> Outcome:
        host = bound.host.name
        journal.failing(error)
        if isinstance(error, Terminated):
            what = "terminated (SIGTERM)"
        elif isinstance(error, KeyboardInterrupt):
            what = "interrupted (Ctrl-C)"
        elif step is not None and isinstance(error, Exception) and not isinstance(error, RemediateError):
            self._traceback(host, error)  # a kind's own exception: a KeyError is not just "'missing'"
            what = redact.text(blame(step.kind, step.id, error).removeprefix(f"step {step.id!r}: "))
        else:
            what = redact.text(str(error))
        if step is not None and isinstance(error, JournalWriteError) and not bound.ctx.began(step.id):
            journal.update_step(step.id, state="not-started")  # its first mutation never ran: nothing of it did
        began = any(e.get("state") in UNDO_STATES for e in journal.record["steps"])
        if step is not None:
            # A step whose journal never reached the host (not-started) changed nothing: it stays out of the undo.
            started = journal.step(step.id).get("state") != "not-started"
            journal.update_step(step.id, state="failed" if started else "not-started", error=what, finished=now())
            self.emit(events.StepFailed(host, step.id, what))
        problems = self.rollback_journal(bound.ctx, journal, {s.id: s for s in bound.steps})
        outcome = RunEnd.ROLLBACK_INCOMPLETE if problems else (RunEnd.ROLLED_BACK if began else RunEnd.FAILED)
        journal.finish(outcome, via=self.fenced(bound.ctx, journal))  # a leased lock's release carries the copy
        failed = f"step {step.id!r} failed: {what}" if step is not None else what
        if problems:
            message = f"{failed}; ROLLBACK INCOMPLETE, the host needs attention: {'; '.join(problems)}"
            code = EXIT_ROLLBACK_INCOMPLETE
        elif began:
            message = f"{failed}; every applied step was rolled back"
            code = EXIT_ERROR
        else:
            message = f"{failed}; nothing was changed"
            code = EXIT_ERROR
        self.emit(events.RunFinished(host, journal.run_id, outcome, code, message))
        return Outcome(host, Status(outcome), code, message, journal.run_id, bound.plans)

    @contextmanager
    def _blamed(self, host: str, step: Step) -> Iterator[None]:
        """A kind's own exception (not a RemediateError) in the block becomes a StepError that names the step, the
        kind and the package it came from: a plug-in's bug is never reported as remediate's."""
        try:
            yield
        except RemediateError:
            raise
        except Exception as e:  # any bug in a kind's code is reported as that kind's, with its package
            self._traceback(host, e)
            raise failure(step.kind, step.id, e) from e

    def _traceback(self, host: str, error: BaseException | None) -> None:
        """-vv: the traceback of a kind's own exception, as a notice (masked like everything shown)."""
        if self.verbose > 1 and error is not None and not isinstance(error, RemediateError):
            text = "".join(traceback.format_exception(error)).rstrip()
            self.emit(events.Notice(host, f"-vv: where {type(error).__name__} was raised:\n{text}"))

    def _state_dir(self, bound: Bound) -> str:
        """Where the run's folder goes on the host (its journal copy): beside the first file it changes; a leased
        run's in the lock's folder, where a worker on another machine finds it from the run id alone."""
        if self.lease is not None:
            return posixpath.dirname(lock_path(bound.host))
        for plan in bound.plans:
            if plan.data.get("folders"):
                continue  # its folder does not exist yet: the journal must not be what keeps it there
            for change in plan.files:
                if change.target == bound.host.name:
                    return posixpath.join(posixpath.dirname(change.path), ".remediate")
        return str(bound.variables.get("remediate_state_dir") or DEFAULT_STATE_DIR)


def step_state(plan: Plan) -> StepState:
    """The journal's first word for a step: it will change the host, only check it, or do nothing."""
    return StepState.PLANNED if plan.changed else StepState.TO_CHECK if plan.checks else StepState.NO_OP


def register_secrets(variables: Mapping[str, Any]) -> None:
    """Mask the value of every secret-named variable (api_token, db_password ...) wherever it would be shown: a
    command, a diff, a reason, the journal, a plan file. Values shorter than 4 characters are left alone: masking
    every "no" would say nothing and hide the rest."""
    for name, value in variables.items():
        if isinstance(value, str) and len(value) >= 4 and redact.is_secret_key(name):
            redact.register(value)


def verify(step: Step, ctx: Context, plan: Plan, applied: Applied) -> str:
    """step.verify with what its apply returned; a plug-in written before the record (verify(ctx, plan)) is called
    as it was written."""
    if _takes_record(type(step)):
        return step.verify(ctx, plan, applied)
    return step.verify(ctx, plan)  # type: ignore[call-arg]


@functools.cache
def _takes_record(kind: type[Step]) -> bool:
    try:
        return len(inspect.signature(kind.verify).parameters) >= 4  # self, ctx, plan, applied
    except (TypeError, ValueError):
        return True


def _settle(steps: list[Step], plans: list[Plan]) -> list[Plan]:
    """Drop the changes and checks of steps whose when: dependencies, as finally settled, change nothing (to a fixed
    point, so a chain settles too: a backup that serves later edits, and the checks that named the backup)."""
    changed = {p.step_id for p in plans if p.changed}
    settled = list(plans)
    moved = True
    while moved:
        moved = False
        for index, (step, plan) in enumerate(zip(steps, settled)):
            deps = step.spec.when
            if deps is None or not (plan.changed or plan.checks) or changed & set(deps):
                continue
            changed.discard(step.id)
            settled[index] = replace(plan, files=(), commands=(), checks=(),
                                     reason=f"not needed: {', '.join(deps)} change{'s' if len(deps) == 1 else ''} nothing")
            moved = True
    return settled


def error_outcome(host: str, error: RemediateError) -> Outcome:
    return Outcome(host, Status.ERROR, error.exit_code or EXIT_ERROR, str(error))
