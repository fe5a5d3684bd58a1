"""The library under the CLI and serve: plan() -> PlanSet, apply(PlanSet), rollback(), diagnose(); each loads the
inputs, connects once per host, runs, and returns per-host outcomes. Events go to `emit` as they happen."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from remediate.engine import events, fleet, hostcopy, lock, planfile
from remediate.engine import journal as journal_mod
from remediate.engine.context import TransportPool
from remediate.engine.events import Emit
from remediate.engine.history import still_as_left
from remediate.engine.options import Options, load, refuse_unused, saved_options, skipped_steps
from remediate.engine.outcome import Mode, Outcome, RunEnd, Status
from remediate.engine.planset import HostPlan, PlanSet, groups
from remediate.engine.runner import Bound, Runner, error_outcome
from remediate.engine.undo import lock_path
from remediate.errors import (
    EXIT_ABORTED,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_FLEET_ROLLED_BACK,
    EXIT_OK,
    EXIT_ROLLBACK_INCOMPLETE,
    InputError,
    RemediateError,
)
from remediate.inputs import inventory as inventory_mod
from remediate.inputs import playbook as playbook_mod
from remediate.inputs.inventory import Host
from remediate.kinds import HOST
from remediate.transport import Result, Transport
from remediate.transport.ssh import ClientFiles, PasswordSource, connect

if TYPE_CHECKING:
    from remediate.api.catalog import (
        checks,
        describe_kind,
        inventory_graph,
        inventory_host,
        kinds,
        playbooks,
        validate,
    )
    from remediate.api.diagnosis import Diagnosis, diagnose, diagnosed_playbooks, next_options

#: What the commands that read catalogues (catalog.py) and diagnose (diagnosis.py) call: imported when first asked
#: for, so that plan and apply make neither module.
LATER: Final = {**dict.fromkeys(("checks", "describe_kind", "inventory_graph", "inventory_host", "kinds", "playbooks",
                                 "validate"), "catalog"),
                **dict.fromkeys(("Diagnosis", "diagnose", "diagnosed_playbooks", "next_options"), "diagnosis")}


def __getattr__(name: str) -> Any:
    """One of LATER's names, from its module (imported now); module attribute lookup's last resort (PEP 562)."""
    module = LATER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module == "catalog":
        from remediate.api import catalog
        value = getattr(catalog, name)
    else:
        from remediate.api import diagnosis
        value = getattr(diagnosis, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *LATER})


__all__ = [
    "Confirm", "Diagnosis", "Emit", "HostPlan", "Options", "Outcome", "PlanSet", "Status", "already_rolled_back",
    "apply", "checks", "describe_kind", "diagnose", "diagnosed_playbooks", "exit_code", "fixed_by", "groups",
    "host_run", "inventory_graph", "inventory_host", "kinds", "last_applied", "load", "next_options", "plan", "playbooks",
    "prepare", "refuse_unused", "rollback", "saved_options", "skipped_steps", "ssh_factory", "validate",
]

Confirm = Callable[[list[Bound]], bool]
Factory = Callable[[Host], Transport]


def last_applied(playbook: str | None, hosts: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """For each host (of hosts, when given), the record of the newest run of this playbook that applied (a resumed
    rollout names it): from the run index, and one read of each such host's journal."""
    return journal_mod.newest_applied(playbook, None if hosts is None else frozenset(hosts))


def fixed_by(playbook: str | None, hosts: Iterable[str] | None = None) -> dict[str, str]:
    """For each host (of hosts, when given), "RUN_ID (started)" of the newest run of this playbook that applied."""
    return {host: f"{r['run_id']} ({r.get('started')})" for host, r in last_applied(playbook, hosts).items()}


def already_rolled_back(host: str) -> dict[str, Any] | None:
    """The host's last run that changed something, when it is rolled back whole: a second `rollback` has nothing
    left to do, which is exit 0 like every "nothing to do" (an older run is never reached for on its own)."""
    record = journal_mod.newest_changed(host)
    return record if record is not None and journal_mod.live_outcome(record) == RunEnd.ROLLED_BACK else None


def ssh_factory(opts: Options, emit: Emit, password_source: PasswordSource) -> Factory:
    files = ClientFiles()  # ssh_config and known_hosts, read once for every host of the run

    def factory(host: Host) -> Transport:
        transport = connect(host, accept_new_host_keys=opts.accept_new_host_keys, password_source=password_source,
                            notify=lambda message: emit(events.Notice(host.name, message)), files=files)
        if opts.verbose:
            transport.observe = lambda result: emit(command_event(host.name, result, opts.verbose))
        return transport
    return factory


def command_event(host: str, result: Result, verbose: int) -> events.Command:
    """-v: a remote command, its exit code and time; -vv: what it printed too (masked like everything shown)."""
    more = verbose > 1
    return events.Command(host, result.command, result.exit_code, result.duration,
                          result.stdout[-2000:] if more else None, result.stderr[-2000:] if more else None)


def prepare(opts: Options, emit: Emit, factory: Factory) -> tuple[Runner, list[Bound]]:
    """Load every input and bind the playbook to each host, still without connecting; then the first --forks hosts
    are connected to in the background (TransportPool.warm) while the caller goes on to plan."""
    inventory, hosts, book, extra = load(opts)
    shadowed = playbook_mod.shadowed(Path(book.path))
    if shadowed is not None and hosts:
        emit(events.Notice(",".join(h.name for h in hosts), f"playbook {Path(book.path).stem}: using {book.path} "
                           f"(${playbook_mod.PATH_ENV}), not the shipped {shadowed}"))
    runner = Runner(playbook=book, pool=TransportPool(inventory, factory), emit=emit, break_lock=opts.break_lock,
                    skipped=skipped_steps(opts, [s.id for s in book.steps]), verbose=opts.verbose)
    bound = [runner.bind(host, extra) for host in hosts]  # every input error before any connection
    runner.pool.warm(hosts, opts.rollout.forks)
    return runner, bound


def plan(opts: Options, emit: Emit, factory: Factory, out: Path | None = None) -> PlanSet:
    """Check every host (--forks at a time); with out, save the plan there for a later `apply PLANFILE` (only when
    no host failed). Several hosts: hosts whose plans are the same are shown once, as a group."""
    runner, bound = prepare(opts, emit, factory)
    try:
        outcomes = _check_all(runner, bound, opts, emit, mode=Mode.PLAN)
    finally:
        runner.pool.close()
    assert runner.playbook is not None
    hosts = {b.host.name: HostPlan(b.host.name, b.identity, tuple(b.events), o, tuple(b.steps), tuple(b.plans))
             for b, o in zip(bound, outcomes)}
    planset = PlanSet(opts, runner.playbook.path, runner.playbook_text, runner.playbook.name,
                      playbook_mod.parse_extra(opts.extra), hosts)
    if out is not None and not planset.failed:
        planfile.save(out, planset.document())
        emit(events.Notice(",".join(b.host.name for b in bound),
                           f"plan saved to {out}; apply exactly this plan with `remediate apply {out}`"))
    return planset


def _check_all(runner: Runner, bound: list[Bound], opts: Options, emit: Emit, *, mode: Mode) -> list[Outcome]:
    """Every host's plan, --forks at a time; then, for several hosts, the plans grouped by what they would do."""
    if len(bound) > 1:
        emit(events.RolloutStarted(mode, [b.host.name for b in bound], opts.rollout.forks, opts.serial_text,
                                   opts.rollout.max_fail_percent))
    fixed: dict[str, dict[str, Any]] | None = None
    guard = threading.Lock()

    def check(b: Bound) -> Outcome:
        nonlocal fixed
        outcome = runner.run(b, mode=mode)
        if outcome.status != Status.OK:
            return outcome
        with guard:  # one read of the run records for all hosts, and only when some host has nothing to do
            if fixed is None:
                fixed = last_applied(runner.playbook.name if runner.playbook else None, [x.host.name for x in bound])
        return _nothing_to_do(b, outcome, fixed.get(b.host.name))

    outcomes = fleet.each(bound, lambda b: _guard(b.host.name, lambda: check(b)), forks=opts.rollout.forks)
    if len(bound) > 1:
        for group in groups(bound, outcomes):
            emit(group)
    return outcomes


def _nothing_to_do(b: Bound, outcome: Outcome, record: dict[str, Any] | None) -> Outcome:
    """The truth about a host with nothing to do: while another run holds its lock, that run is the answer (it may
    still fail and roll back); it was "already fixed by" a run only while every file that run wrote is still as it
    left it."""
    path = lock_path(b.host)
    holder = lock.holder(b.ctx.transport(HOST), path)
    if holder is not None:  # in the words of a lock taken (lock.take): one message whichever way the run met it
        return Outcome(b.host.name, Status.LOCKED, EXIT_ERROR,
                       f"{b.host.name}: another remediate run holds {path}: {holder}; nothing to do as the host is now, "
                       "but that run may still change it or roll back: wait for it, then run again", b.ctx.run_id,
                       b.plans)
    if record is not None and still_as_left(b, record):
        return replace(outcome, message=f"nothing to do: already fixed by run {record['run_id']} ({record.get('started')})")
    return outcome


def apply(target: PlanSet | Options, emit: Emit, factory: Factory, confirm: Confirm, *,
          attribution: Mapping[str, Any] | None = None) -> list[Outcome]:
    """Plan every host, ask once, then roll out: --forks hosts at a time, in --serial batches, until failures exceed
    --max-fail-percent (default 0: the first failure). Hosts never started are skipped; with
    --rollback-fleet-on-abort, the hosts this rollout fixed are rolled back, newest first.

    A PlanSet (from plan(), or a saved plan): every host must get exactly that plan again (its identity), or
    nothing is applied anywhere. Options: whatever the hosts need today. attribution: whom the runs are for (serve:
    its incident, the verified approvers, who asked for it), recorded as `for` in each run's journal."""
    opts, expected = (target.options, target.hosts) if isinstance(target, PlanSet) else (target, None)
    runner, bound = prepare(opts, emit, factory)
    try:
        checked = _check_all(runner, bound, opts, emit, mode=Mode.APPLY)
        if any(o.exit_code == EXIT_ERROR for o in checked):
            return checked
        if expected is not None:
            refused = _stale(bound, expected)
            if refused:
                return refused
        for b in bound:  # a host with nothing to do ends here, and says so, as plan does
            if not b.changed:
                emit(events.RunFinished(b.host.name, b.ctx.run_id, RunEnd.NO_OP, EXIT_OK))
        pending = {b.host.name: b for b in bound if b.changed}
        if not pending:
            return checked
        if not confirm(list(pending.values())):
            raise RemediateError("apply cancelled; nothing was changed")
        unchanged = [o for o, b in zip(checked, bound) if not b.changed]
        with journal_mod.attributed([b.ctx.run_id for b in pending.values()], attribution):
            return unchanged + _roll_out(runner, pending, opts, emit, several=len(bound) > 1)
    finally:
        runner.pool.close()


def _stale(bound: list[Bound], expected: Mapping[str, HostPlan]) -> list[Outcome]:
    """Empty when every host would get exactly the plan expected; else each host's refusal (nothing changes)."""
    refusals = [planfile.stale(b.host.name, expected[b.host.name].saved() if b.host.name in expected else None,
                               b.identity, b.events) for b in bound]
    # A host the saved plan covers that the inventory no longer selects: applying the rest would be a part of the plan
    missing = sorted(set(expected) - {b.host.name for b in bound})
    if not any(refusals) and not missing:
        return []
    gone = [Outcome(name, Status.STALE, EXIT_ERROR, "the saved plan covers this host and the inventory no longer "
                    "selects it (removed, or moved out of the group); a saved plan runs whole or not at all: nothing "
                    "was changed") for name in missing]
    return [Outcome(b.host.name, Status.STALE, r.exit_code, str(r)) if r else
            Outcome(b.host.name, Status.SKIPPED, EXIT_ERROR, "not applied: another host is not as the saved plan saw it")
            for b, r in zip(bound, refusals)] + gone


def _roll_out(runner: Runner, pending: dict[str, Bound], opts: Options, emit: Emit, *, several: bool) -> list[Outcome]:
    """Apply to the hosts with changes (fleet.roll_out); when the rollout stops, the hosts never started are skipped
    and, with --rollback-fleet-on-abort, those it fixed are rolled back, newest first."""
    progress = fleet.roll_out(list(pending), lambda name: _guard(name, lambda: runner.apply(pending[name])),
                              opts.rollout, runner.stop)
    outcomes = list(progress.outcomes.values())
    never = [name for name in pending if name not in progress.outcomes]
    if not progress.aborted:
        return outcomes
    outcomes += [Outcome(name, Status.SKIPPED, EXIT_ABORTED, f"not started: the rollout stopped ({progress.aborted})")
                 for name in never]
    if opts.rollout.rollback_fleet_on_abort:
        fixed = [o for o in progress.outcomes.values() if o.exit_code == EXIT_OK and o.run_id]
        for o in reversed(fixed):  # newest first
            undone = _guard(o.host, functools.partial(_rollback_fixed, runner, pending[o.host].host, o))
            outcomes[outcomes.index(o)] = (
                Outcome(o.host, Status.ROLLED_BACK, EXIT_FLEET_ROLLED_BACK, f"fixed, then rolled back because the "
                        f"rollout stopped ({progress.aborted})", o.run_id) if undone.exit_code == EXIT_OK else undone)
    if several:  # one host's failure is its own summary: no rollout stopped, no host left unstarted
        emit(events.RolloutAborted(",".join(never) or "-", progress.aborted, never, progress.failed,
                                   opts.rollout.rollback_fleet_on_abort))
    return outcomes


def _rollback_fixed(runner: Runner, host: Host, fixed: Outcome) -> Outcome:
    """Roll back the run that fixed a host in this rollout (--rollback-fleet-on-abort)."""
    return runner.rollback(host, journal_mod.named(fixed.host, str(fixed.run_id)))


def rollback(opts: Options, run_id: str | None, emit: Emit, factory: Factory,
             confirm: Callable[[journal_mod.Journal], bool], *, force: bool = False,
             skip: frozenset[str] = frozenset(), attribution: Mapping[str, Any] | None = None) -> list[Outcome]:
    """Undo a recorded run on each host (the newest that can be rolled back, or run_id), newest step first.
    attribution: whom the rollback is for (serve's incident...), recorded as `rollback_for` in the run's journal."""
    inventory = inventory_mod.load(opts.inventory)
    hosts = inventory.select(opts.hosts)
    runner = Runner(playbook=None, pool=TransportPool(inventory, factory), emit=emit, break_lock=opts.break_lock)
    outcomes = []
    try:
        for host in hosts:
            done = None if run_id is not None else already_rolled_back(host.name)
            if done is not None:
                message = (f"nothing to roll back: the last run that changed something, {done['run_id']}, is already "
                           f"rolled back ({done.get('finished') or done.get('started')})")
                emit(events.RunFinished(host.name, str(done["run_id"]), RunEnd.NO_OP, EXIT_OK))
                outcomes.append(Outcome(host.name, Status.OK, EXIT_OK, message, str(done["run_id"])))
                continue
            record = _recorded(runner, host, run_id)
            if not confirm(record):
                raise RemediateError("rollback cancelled; nothing was changed")
            if attribution is not None:
                record.record["rollback_for"] = dict(attribution)  # saved with the rollback's first record
            outcomes.append(_guard(host.name, functools.partial(runner.rollback, host, record, force=force, skip=skip)))
    finally:
        runner.pool.close()
    return outcomes


def _recorded(runner: Runner, host: Host, run_id: str | None) -> journal_mod.Journal:
    """The run to roll back: this machine's record of it; a run named by its id that this machine never saw (serve
    made it, or another laptop) is read from the host's copy of its journal, and kept here from then on."""
    try:
        return journal_mod.find(host.name, run_id)
    except InputError:
        if run_id is None or journal_mod.run_ids(host.name, run_id):
            raise
    found = hostcopy.fetch(runner.pool.get(HOST, host), host, run_id)
    if found is None:
        raise InputError(f"{host.name}: no run {run_id} in {journal_mod.runs_dir()}, nor on the host at "
                         f"{hostcopy.host_path(host, run_id)}", hint="`remediate runs` lists the runs recorded here; a "
                         "run made elsewhere is found on the host by its whole id")
    return found


def host_run(opts: Options, run_id: str, factory: Factory) -> hostcopy.OnHost:
    """What the one host of opts says of run_id, on one connection: its copy of the run's journal (kept as this
    machine's record) and its lock as it stands. For a retried attempt that must continue or undo that run."""
    inventory = inventory_mod.load(opts.inventory)
    (host,) = inventory.select(opts.hosts)
    pool = TransportPool(inventory, factory)
    try:
        return hostcopy.look(pool.get(HOST, host), host, run_id)
    finally:
        pool.close()


def _guard(host: str, work: Callable[[], Outcome]) -> Outcome:
    try:
        return work()
    except RemediateError as e:
        return error_outcome(host, e)


def exit_code(outcomes: list[Outcome]) -> int:
    """The command's exit code from its hosts' outcomes: the gravest wins."""
    codes = {o.exit_code for o in outcomes}
    for code in (EXIT_ROLLBACK_INCOMPLETE, EXIT_FLEET_ROLLED_BACK, EXIT_ABORTED, EXIT_ERROR, EXIT_CHANGES):
        if code in codes:
            return code
    return EXIT_OK
