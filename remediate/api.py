"""The commands as library calls: load inputs, connect once per host, run, and return per-host outcomes."""

from __future__ import annotations

import functools
import json
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remediate import __version__
from remediate.engine import events, fleet, lock, planfile
from remediate.engine import journal as journal_mod
from remediate.engine.context import TransportPool
from remediate.engine.runner import Bound, Emit, Outcome, Runner, error_outcome
from remediate.engine.undo import lock_path
from remediate.errors import (
    EXIT_ABORTED,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_FLEET_ROLLED_BACK,
    EXIT_OK,
    EXIT_ROLLBACK_INCOMPLETE,
    InputError,
    RemediateError,
)
from remediate.inputs import inventory as inventory_mod
from remediate.inputs import playbook as playbook_mod
from remediate.inputs import templates
from remediate.inputs.inventory import Host
from remediate.kinds import HOST, LOCAL, ORIGIN, REGISTRY, did_you_mean, load_kinds
from remediate.transport import Transport
from remediate.transport.ssh import ClientFiles, PasswordSource, connect

if TYPE_CHECKING:  # diagnose (its checks and probes) is imported by `diagnose` alone: apply should not pay for it
    from remediate.diagnostics import diagnose as diagnose_mod

Confirm = Callable[[list[Bound]], bool]


@dataclass(frozen=True)
class Options:
    """What every command is told: where the inventory is, which hosts, which playbook."""

    inventory: Path
    hosts: tuple[str, ...]
    playbook: str | None = None
    extra: tuple[str, ...] = ()
    accept_new_host_keys: bool = False
    break_lock: bool = False
    verbose: int = 0  # 1: every remote command with its exit code and time; 2: and what it printed
    steps: tuple[str, ...] = ()  # only these steps (--steps)
    skip_steps: tuple[str, ...] = ()  # not these (--skip-steps)
    start_at: str | None = None  # from this one on (--start-at-step)
    rollout: fleet.Rollout = fleet.Rollout()  # --forks, --serial, --max-fail-percent, --rollback-fleet-on-abort
    serial_text: str | None = None  # --serial as given, for the events
    #: Refuse an -e variable that nothing reads (the command line does, unless --allow-unused-vars).
    refuse_unused_vars: bool = False


def ssh_factory(opts: Options, emit: Emit, password_source: PasswordSource) -> Callable[[Host], Transport]:
    files = ClientFiles()  # ssh_config and known_hosts, read once for every host of the run

    def factory(host: Host) -> Transport:
        transport = connect(host, accept_new_host_keys=opts.accept_new_host_keys, password_source=password_source,
                            notify=lambda message: emit(events.Notice(host.name, message).as_dict()), files=files)
        if opts.verbose:
            transport.observe = lambda result: emit(command_event(host.name, result, opts.verbose))
        return transport
    return factory


def command_event(host: str, result: Any, verbose: int) -> dict[str, Any]:
    """-v: a remote command, its exit code and time; -vv: what it printed too (masked like everything shown)."""
    event = {"event": "command", "host": host, "command": result.command, "exit_code": result.exit_code,
             "duration": result.duration}
    if verbose > 1:
        event.update(stdout=result.stdout[-2000:], stderr=result.stderr[-2000:])
    return event


def load(opts: Options) -> tuple[inventory_mod.Inventory, list[Host], playbook_mod.Playbook, dict[str, Any]]:
    """Parse the inventory, the hosts, the playbook and -e: every input error surfaces here, before any connection."""
    inventory = inventory_mod.load(opts.inventory)
    hosts = inventory.select(opts.hosts)
    book = playbook_mod.load(playbook_mod.locate(opts.playbook))
    extra = playbook_mod.parse_extra(opts.extra)
    if opts.refuse_unused_vars:
        refuse_unused(extra, [book], hosts)
    return inventory, hosts, book, extra


def refuse_unused(extra: dict[str, Any], books: list[playbook_mod.Playbook], hosts: list[Host]) -> None:
    """An -e variable must be one a playbook (its vars:, steps or checks), the hosts' inventory or remediate itself
    reads: `-e lmtp_prot=2526` is a typo, and planning with the default port would hide it."""
    used = {*playbook_mod.READ_BY_REMEDIATE, *playbook_mod.referenced(extra)}  # -e a='{{ b }}' reads b
    for book in books:
        used |= book.names_used()
    for host in hosts:
        used |= {*host.vars, *playbook_mod.referenced(host.vars)}
    unused = [name for name in extra if name not in used]
    if unused:
        named = " or ".join(b.path for b in books) if len(books) < 4 else f"the {len(books)} playbooks"
        raise InputError(f"-e {unused[0]}: nothing reads this variable: no step, check or variable of {named}, nor "
                         "the inventory", hint=f"{did_you_mean(unused[0], used)}if it is meant (a variable that "
                                               "only some hosts or another playbook use), pass --allow-unused-vars")


def prepare(opts: Options, emit: Emit, factory: Callable[[Host], Transport]) -> tuple[Runner, list[Bound]]:
    """Load every input and bind the playbook to each host, still without connecting."""
    inventory, hosts, book, extra = load(opts)
    shadowed = playbook_mod.shadowed(Path(book.path))
    if shadowed is not None and hosts:
        emit(events.Notice(",".join(h.name for h in hosts), f"playbook {Path(book.path).stem}: using {book.path} "
                           f"(${playbook_mod.PATH_ENV}), not the shipped {shadowed}").as_dict())
    runner = Runner(playbook=book, pool=TransportPool(inventory, factory), emit=emit, break_lock=opts.break_lock,
                    skipped=skipped_steps(opts, [s.id for s in book.steps]), verbose=opts.verbose)
    return runner, [runner.bind(host, extra) for host in hosts]


def skipped_steps(opts: Options, ids: list[str]) -> frozenset[str]:
    """The steps --steps, --skip-steps and --start-at-step leave out; unknown names are refused."""
    named = [*opts.steps, *opts.skip_steps, *([opts.start_at] if opts.start_at else [])]
    unknown = [n for n in named if n not in ids]
    if unknown:
        raise InputError(f"this playbook has no step {unknown[0]!r}", hint=f"its steps: {', '.join(ids)}")
    skipped = set(opts.skip_steps)
    if opts.steps:
        skipped |= set(ids) - set(opts.steps)
    if opts.start_at:
        skipped |= set(ids[:ids.index(opts.start_at)])
    return frozenset(skipped)


def plan(opts: Options, emit: Emit, factory: Callable[[Host], Transport], out: Path | None = None) -> list[Outcome]:
    """Check every host (--forks at a time); with out, save the plan there for a later `apply PLANFILE` (only when
    no host failed). Several hosts: hosts whose plans are the same are shown once, as a group."""
    runner, bound = prepare(opts, emit, factory)
    try:
        outcomes = _check_all(runner, bound, opts, emit, mode="plan")
    finally:
        runner.pool.close()
    if out is not None and not any(o.exit_code == EXIT_ERROR for o in outcomes):
        assert runner.playbook is not None
        planfile.save(out, playbook_path=runner.playbook.path, playbook_text=runner.playbook_text,
                      inventory=opts.inventory, hosts=opts.hosts,
                      extra=playbook_mod.parse_extra(opts.extra),
                      selection={"steps": list(opts.steps), "skip_steps": list(opts.skip_steps), "start_at": opts.start_at},
                      plans={b.host.name: {"identity": b.identity, "steps": b.events} for b in bound})
        emit(events.Notice(",".join(b.host.name for b in bound),
                           f"plan saved to {out}; apply exactly this plan with `remediate apply {out}`").as_dict())
    return outcomes


def _check_all(runner: Runner, bound: list[Bound], opts: Options, emit: Emit, *, mode: str) -> list[Outcome]:
    """Every host's plan, --forks at a time; then, for several hosts, the plans grouped by what they would do."""
    if len(bound) > 1:
        emit(events.RolloutStarted(mode, [b.host.name for b in bound], opts.rollout.forks, opts.serial_text,
                                   opts.rollout.max_fail_percent).as_dict())
    fixed: dict[str, dict[str, Any]] | None = None
    guard = threading.Lock()

    def check(b: Bound) -> Outcome:
        nonlocal fixed
        outcome = runner.run(b, mode=mode)
        if outcome.status != "ok":
            return outcome
        with guard:  # one read of the run records for all hosts, and only when some host has nothing to do
            if fixed is None:
                fixed = last_applied(runner.playbook.name if runner.playbook else None)
        return _nothing_to_do(runner, b, outcome, fixed.get(b.host.name))

    outcomes = fleet.each(bound, lambda b: _guard(b.host.name, lambda: check(b)), forks=opts.rollout.forks)
    if len(bound) > 1:
        for group in groups(bound, outcomes):
            emit(events.PlanGroup(**group).as_dict())
    return outcomes


def _nothing_to_do(runner: Runner, b: Bound, outcome: Outcome, record: dict[str, Any] | None) -> Outcome:
    """The truth about a host with nothing to do: while another run holds its lock, that run is the answer (it may
    still fail and roll back); it was "already fixed by" a run only while every file that run wrote is still as it
    left it."""
    holder = lock.holder(b.ctx.transport(HOST), lock_path(b.host))
    if holder is not None:
        return Outcome(b.host.name, "locked", EXIT_ERROR,
                       f"another remediate run is in flight: {holder}; nothing to do as the host is now, but that run "
                       "may still change it or roll back: wait for it, then run again", b.ctx.run_id, b.plans)
    if record is not None and _still_as_left(b, record):
        outcome.message = f"nothing to do: already fixed by run {record['run_id']} ({record.get('started')})"
    return outcome


def _still_as_left(b: Bound, record: dict[str, Any]) -> bool:
    """Whether every file the run wrote still has the content it left (as this plan read it, else read now)."""
    left: dict[tuple[str, str], str] = {}
    for step in record.get("steps") or []:
        for f in step.get("files") or []:
            if isinstance(f, dict) and f.get("after_sha256"):
                left[(str(f.get("target")), str(f.get("path")))] = str(f["after_sha256"])
    for (target, path), digest in left.items():
        if (target, path) in b.ctx.reads:
            found = b.ctx.reads[(target, path)]
            now = found.split()[0] if found else None
        else:
            now = b.ctx.transport(HOST if target == b.host.name else target).sha256(path)
        if now != digest:
            return False
    return True


def groups(bound: list[Bound], outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Hosts whose plans are identical (host names aside), largest group first: one diff to read, not twenty."""
    found: dict[str, dict[str, Any]] = {}
    for b, outcome in zip(bound, outcomes):
        if outcome.exit_code == EXIT_ERROR:
            key, steps = f"error: {outcome.message}", []
        else:
            steps = [{k: v for k, v in e.items() if k not in ("duration", "brief")} for e in b.events]
            # Host names aside, where they are whole path segments ("--- a/HOST:/srv/HOST/app.conf"), never
            # inside a longer name.
            text = json.dumps(steps, sort_keys=True, default=str)
            key = text.replace(f"/{b.host.name}:", "/\x00HOST:").replace(f"/{b.host.name}/", "/\x00HOST/")
        group = found.setdefault(key, {"hosts": [], "changed": sum(1 for p in b.plans if p.changed),
                                       "status": outcome.status, "steps": steps,
                                       "error": outcome.message if outcome.exit_code == EXIT_ERROR else None})
        group["hosts"].append(b.host.name)
    return sorted(found.values(), key=lambda g: (-len(g["hosts"]), g["hosts"][0]))


def last_applied(playbook: str | None) -> dict[str, dict[str, Any]]:
    """For each host, the record of the newest run of this playbook that applied (a resumed rollout names it); one
    read of the run records for all hosts."""
    found: dict[str, dict[str, Any]] = {}
    for record in journal_mod.history():  # newest first
        host = str(record.get("host"))
        if host not in found and record.get("outcome") == "applied" and playbook in (None, record.get("playbook")):
            found[host] = record
    return found


def fixed_by(playbook: str | None) -> dict[str, str]:
    """For each host, "RUN_ID (started)" of the newest run of this playbook that applied."""
    return {host: f"{r['run_id']} ({r.get('started')})" for host, r in last_applied(playbook).items()}


def saved_options(doc: dict[str, Any], inventory: Path | None, extra: tuple[str, ...]) -> Options:
    """The options a saved plan was made with; -e may give masked secrets again, -i may name the inventory anew."""
    given = playbook_mod.parse_extra(extra)
    values = planfile.extra(doc, given)
    selection = doc.get("selection") or {}
    return Options(inventory=inventory or Path(doc["inventory"]), hosts=tuple(doc["hosts"]),
                   playbook=planfile.playbook_path(doc), extra=(json.dumps(values),) if values else (),
                   steps=tuple(selection.get("steps") or ()), skip_steps=tuple(selection.get("skip_steps") or ()),
                   start_at=selection.get("start_at"))


def apply(opts: Options, emit: Emit, factory: Callable[[Host], Transport], confirm: Confirm,
          saved: dict[str, Any] | None = None) -> list[Outcome]:
    """Plan every host, ask once, then roll out: --forks hosts at a time, in --serial batches, until failures exceed
    --max-fail-percent (default 0: the first failure). Hosts never started are skipped; with
    --rollback-fleet-on-abort, the hosts this rollout fixed are rolled back, newest first.

    saved: a plan file's content; every host must then get exactly the saved plan, or nothing is applied anywhere."""
    runner, bound = prepare(opts, emit, factory)
    try:
        checked = _check_all(runner, bound, opts, emit, mode="apply")
        if any(o.exit_code == EXIT_ERROR for o in checked):
            return checked
        if saved is not None:
            refusals = [planfile.stale(b.host.name, saved["plans"].get(b.host.name), b.identity, b.events) for b in bound]
            if any(refusals):
                return [Outcome(b.host.name, "stale", r.exit_code, str(r)) if r else Outcome(b.host.name, "skipped", EXIT_ERROR,
                        "not applied: another host is not as the saved plan saw it") for b, r in zip(bound, refusals)]
        for b in bound:  # a host with nothing to do ends here, and says so, as plan does
            if not b.changed:
                emit(events.RunFinished(b.host.name, b.ctx.run_id, "no-op", EXIT_OK).as_dict())
        pending = {b.host.name: b for b in bound if b.changed}
        if not pending:
            return checked
        if not confirm(list(pending.values())):
            raise RemediateError("apply cancelled; nothing was changed")
        progress = fleet.roll_out(list(pending), lambda name: _guard(name, lambda: runner.apply(pending[name])),
                                  opts.rollout, runner.stop)
        outcomes = [o for o, b in zip(checked, bound) if not b.changed]
        outcomes += [progress.outcomes[name] for name in progress.outcomes]
        never = [name for name in pending if name not in progress.outcomes]
        if progress.aborted:
            outcomes += [Outcome(name, "skipped", EXIT_ABORTED, f"not started: the rollout stopped ({progress.aborted})")
                         for name in never]
            if opts.rollout.rollback_fleet_on_abort:
                fixed = [o for o in progress.outcomes.values() if o.exit_code == EXIT_OK and o.run_id]
                for o in reversed(fixed):  # newest first
                    undone = _guard(o.host, functools.partial(_rollback_fixed, runner, pending[o.host].host, o))
                    outcomes[outcomes.index(o)] = (
                        Outcome(o.host, "rolled-back", EXIT_FLEET_ROLLED_BACK, f"fixed, then rolled back because the "
                                f"rollout stopped ({progress.aborted})", o.run_id) if undone.exit_code == EXIT_OK else undone)
            if len(bound) > 1:  # one host's failure is its own summary: no rollout stopped, no host left unstarted
                emit(events.RolloutAborted(",".join(never) or "-", progress.aborted, never, progress.failed,
                                           opts.rollout.rollback_fleet_on_abort).as_dict())
        return outcomes
    finally:
        runner.pool.close()


def _rollback_fixed(runner: Runner, host: Host, fixed: Outcome) -> Outcome:
    """Roll back the run that fixed a host in this rollout (--rollback-fleet-on-abort)."""
    return runner.rollback(host, journal_mod.named(fixed.host, str(fixed.run_id)))


def rollback(opts: Options, run_id: str | None, emit: Emit, factory: Callable[[Host], Transport],
             confirm: Callable[[journal_mod.Journal], bool], *, force: bool = False,
             skip: frozenset[str] = frozenset()) -> list[Outcome]:
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
                emit(events.RunFinished(host.name, str(done["run_id"]), "no-op", EXIT_OK).as_dict())
                outcomes.append(Outcome(host.name, "ok", EXIT_OK, message, str(done["run_id"])))
                continue
            record = journal_mod.find(host.name, run_id)
            if not confirm(record):
                raise RemediateError("rollback cancelled; nothing was changed")
            outcomes.append(_guard(host.name, functools.partial(runner.rollback, host, record, force=force, skip=skip)))
    finally:
        runner.pool.close()
    return outcomes


def already_rolled_back(host: str) -> dict[str, Any] | None:
    """The host's last run that changed something, when it is rolled back whole: a second `rollback` has nothing
    left to do, which is exit 0 like every "nothing to do" (an older run is never reached for on its own)."""
    for record in journal_mod.history(host):  # newest first
        if record.get("outcome") in journal_mod.NOTHING_CHANGED:
            continue
        return record if journal_mod.live_outcome(record) == "rolled-back" else None
    return None


@dataclass
class Diagnosis:
    """What diagnose found on one host, over the checks of one or more playbooks."""

    host: str
    checks: list[diagnose_mod.Check]
    signatures: list[diagnose_mod.Signature]
    probes: list[diagnose_mod.Probe]
    error: str | None = None
    playbooks: tuple[str, ...] = ()
    #: For each fix a check names (as `-p` takes it), the variables that playbook reads: the next command repeats
    #: only what it may take.
    fix_vars: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_ERROR
        return EXIT_FINDINGS if any(c.ok is False for c in self.checks) else EXIT_OK


def diagnosed_playbooks(name: str | None) -> list[playbook_mod.Playbook]:
    """The playbook -p names (it must declare diagnose: checks), or every playbook on the search path that does."""
    if name:
        book = playbook_mod.load(playbook_mod.locate(name))
        if not book.diagnose:
            raise InputError(f"{book.path} declares no diagnose: checks",
                             hint="run remediate diagnose without -p to use the checks of every playbook on the search "
                                  f"path ({playbook_mod.describe_search_path()})")
        return [book]
    return [b for b in (playbook_mod.load(listed.path) for listed in playbook_mod.catalog()) if b.diagnose]


def diagnose(opts: Options, factory: Callable[[Host], Transport]) -> list[Diagnosis]:
    """Read-only checks on each host; never writes anywhere. With -p, that playbook's diagnose: checks; without,
    those of every playbook on the search path that declares some (each finding names the playbook that fixes it,
    as `-p` finds it from here)."""
    from remediate.diagnostics import diagnose as diagnose_mod
    inventory = inventory_mod.load(opts.inventory)
    hosts = inventory.select(opts.hosts)
    extra = playbook_mod.parse_extra(opts.extra)
    books = diagnosed_playbooks(opts.playbook)
    fixes = {book.path: book.fix_arguments() for book in books}  # every fix: found before any connection
    fix_vars = _fix_vars(books)
    if opts.refuse_unused_vars:
        refuse_unused(extra, books, hosts)
    bound = {host.name: [(book, book.checks(host, extra, fixes[book.path])) for book in books] for host in hosts}
    pool = TransportPool(inventory, factory)
    results = []
    try:
        for host in hosts:
            found = Diagnosis(host.name, [], [], [], playbooks=tuple(b.name for b in books), fix_vars=fix_vars)
            try:
                for _, checks in bound[host.name]:
                    part = diagnose_mod.run(checks, pool.get(HOST, host), pool.get(LOCAL, host))
                    found.checks += part.checks
                    found.signatures += part.signatures
                    found.probes += part.probes
            except RemediateError as e:
                found.error = str(e)
            results.append(found)
    finally:
        pool.close()
    return results


def _fix_vars(books: list[playbook_mod.Playbook]) -> dict[str, frozenset[str]]:
    """For each playbook a check's fix: names (by its -p argument), the variables it reads; each loaded once."""
    by_path: dict[str, frozenset[str]] = {}
    out = {}
    for book in books:
        for path in book.fixes().values():
            key = str(path.resolve())
            if key not in by_path:
                by_path[key] = playbook_mod.load(path).names_used() | playbook_mod.READ_BY_REMEDIATE
            out[playbook_mod.argument(path)] = by_path[key]
    return out


def next_options(result: Diagnosis, inventory: Path | None, extra: tuple[str, ...], allow_unused: bool) -> str:
    """The options diagnose's suggested `remediate plan` repeats: -i, and the -e given, quoted for a shell; with
    --allow-unused-vars when a fix playbook does not read one of them (it would refuse it otherwise)."""
    given = playbook_mod.parse_extra(extra)
    fixes = {c.fix for c in result.checks if c.fix and c.ok is False}
    unused = any(name not in result.fix_vars.get(fix, frozenset(given)) for fix in fixes for name in given)
    parts = [f"-i {shlex.quote(str(inventory))}"] if inventory else []
    parts += [f"-e {shlex.quote(e)}" for e in extra]
    if unused or (allow_unused and extra):
        parts.append("--allow-unused-vars")
    return " ".join(parts)


def validate(playbook: str | None, inventory: Path | None, extra: tuple[str, ...],
             refuse_unused_vars: bool = False) -> list[str]:
    """Check a playbook without connecting: syntax, kinds, parameters, its diagnose: checks (parameters,
    expectations and the playbooks their fix: names) and, with an inventory, every host's variables.
    Returns what was checked; raises InputError at the first problem."""
    book = playbook_mod.load(playbook_mod.locate(playbook))
    variables = playbook_mod.parse_extra(extra)
    for raw in book.steps:  # where a variable would become code, whatever its value (templates.py)
        for name, value in (raw.params or {}).items():
            param = REGISTRY[raw.kind].params.get(name)
            if param is not None and param.command:
                templates.render_command(value, lambda _: "", f"{raw.where}: step {raw.id!r}")
    checked = [f"{book.path}: {len(book.steps)} step(s), kinds {', '.join(sorted({s.kind for s in book.steps}))}"]
    fixes = book.fixes()
    hosts = list(inventory_mod.load(inventory).hosts.values()) if inventory is not None else []
    if refuse_unused_vars:
        refuse_unused(variables, [book], hosts)
    for host in hosts:
        book.bind(host, variables)
    for host in hosts or [Host(name="(any host)", address="")]:  # diagnose reads a variable without value as empty
        book.checks(host, variables)
    if book.diagnose:
        named = sorted({playbook_mod.argument(p) for p in fixes.values()})
        checked.append(f"{book.path}: {len(book.diagnose)} diagnose check(s), types "
                       f"{', '.join(sorted({c.check for c in book.diagnose}))}"
                       + (f"; fixed by {', '.join(named)}" if named else ""))
    if inventory is not None:
        checked.append(f"{inventory}: bound to {len(hosts)} host(s): {', '.join(h.name for h in hosts)}")
    return checked


def inventory_graph(path: Path) -> list[dict[str, Any]]:
    """Every group with its direct hosts and child groups, as `ansible-inventory --graph` shows them."""
    return inventory_mod.graph(inventory_mod.load(path))


def inventory_host(path: Path, name: str) -> dict[str, Any]:
    """One host's merged variables, each with where its value came from."""
    host = inventory_mod.load(path).get(name, needed_by="remediate inventory --host")
    return {"host": host.name, "address": host.address, "port": host.port, "user": host.user, "become": host.become,
            "vars": {k: {"value": v, "from": host.origins.get(k, "")} for k, v in host.vars.items()}}


def playbooks() -> tuple[list[dict[str, Any]], list[str]]:
    """Every playbook on the search path (name, file, description, steps, variables with their defaults, and the
    files of the same name it hides), and the problems of those that do not load."""
    books, problems = [], []
    for listed in playbook_mod.catalog():
        try:
            b = playbook_mod.load(listed.path)
        except InputError as e:
            problems.append(str(e))
            continue
        books.append({"playbook": listed.name, "description": b.description, "steps": [s.id for s in b.steps],
                      "vars": dict(b.defaults), "path": str(listed.path), "shipped": listed.shipped,
                      "shadows": [str(p) for p in listed.shadows]})
    return books, problems


def kinds(name: str | None) -> list[dict[str, Any]]:
    """Every step kind installed (or the one named), with its parameters and an example step."""
    load_kinds()
    if name is not None and name not in REGISTRY:
        raise InputError(f"no step kind named {name!r}",
                         hint=f"{did_you_mean(name, REGISTRY)}installed kinds: {', '.join(sorted(REGISTRY))}")
    return [describe_kind(k) for k in sorted(REGISTRY) if name in (None, k)]


def describe_kind(name: str) -> dict[str, Any]:
    cls = REGISTRY[name]
    origin = ORIGIN.get(name, "remediate")
    shipped = origin.split()[0] == "remediate"
    return {"kind": name, "package": f"remediate {__version__}" if shipped else origin, "plugin": not shipped,
            "summary": _summary(cls), "reconciler": cls.reconciler, "params": _params(cls.params),
            "outputs": list(cls.outputs), "example": _example(name, "kind", cls.params)}


def checks(name: str | None) -> list[dict[str, Any]]:
    """Every diagnose check type (or the one named), with its parameters and an example check."""
    from remediate.diagnostics import REGISTRY as CHECKS
    from remediate.diagnostics import load_checks
    load_checks()
    if name is not None and name not in CHECKS:
        raise InputError(f"no check type named {name!r}",
                         hint=f"{did_you_mean(name, CHECKS)}check types: {', '.join(sorted(CHECKS))}")
    return [{"check": n, "package": f"remediate {__version__}", "summary": _summary(CHECKS[n]),
             "params": _params(CHECKS[n].params), "example": _example(n, "check", CHECKS[n].params)}
            for n in sorted(CHECKS) if name in (None, n)]


def _summary(cls: type) -> str:
    return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""


def _params(params: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": p, "type": _type_label(spec.type), "required": spec.required, "default": spec.default,
             "help": spec.help} for p, spec in params.items()]


def _example(name: str, key: str, params: dict[str, Any]) -> str:
    """A playbook entry using name: every parameter, the optional ones commented out with their default."""
    example = [f"- id: my-{name}", f"  {key}: {name}"]
    if key == "check":
        example.append("  fix: PLAYBOOK   # the playbook that fixes a finding (optional)")
    example.append("  params:")
    for p in _params(params):
        value = f"<{p['type']}>" if p["default"] is None else json.dumps(p["default"])
        example.append(f"    {'' if p['required'] else '# '}{p['name']}: {value}" + (f"   # {p['help']}" if p["help"] else ""))
    return "\n".join(example)


def _type_label(t: Any) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join({"str": "string", "int": "number", "list": "list", "dict": "mapping", "bool": "true/false",
                        "NoneType": "empty"}.get(x.__name__, x.__name__) for x in types)


def _guard(host: str, work: Callable[[], Outcome]) -> Outcome:
    try:
        return work()
    except RemediateError as e:
        return error_outcome(host, e)


def exit_code(outcomes: list[Outcome]) -> int:
    codes = {o.exit_code for o in outcomes}
    for code in (EXIT_ROLLBACK_INCOMPLETE, EXIT_FLEET_ROLLED_BACK, EXIT_ABORTED, EXIT_ERROR, EXIT_CHANGES):
        if code in codes:
            return code
    return EXIT_OK
