"""The commands that work on hosts: plan, apply (and show, a saved plan), rollback, diagnose. Each is one call into
the library (remediate.api) and the rendering of what it returns."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from remediate.cli.app import (
    become_password,
    break_lock_option,
    cli,
    common,
    complete_runs,
    finish,
    fleet_options,
    interactive,
    library,
    options,
    playbook_options,
    renderer,
    reports_errors,
    rollout,
    rollout_given,
    step_options,
)
from remediate.cli.backend import backend_options, chosen, exits_at_once
from remediate.cli.output import visible
from remediate.contract.plan import ShownPlan
from remediate.engine import events
from remediate.errors import RemediateError

if TYPE_CHECKING:
    from remediate.engine.journal import Journal
    from remediate.engine.runner import Bound


@cli.command()
@common
@playbook_options
@step_options
@fleet_options
@click.option("--out", type=click.Path(path_type=Path), default=None, metavar="PLANFILE",
              help="Save the plan for `remediate apply PLANFILE` (as Terraform's plan -out).")
@reports_errors
def plan(hosts: tuple[str, ...], inventory: Path | None, playbook: str | None, extra: tuple[str, ...],
         as_json: bool, accept_new_host_keys: bool, verbose: int, out: Path | None, **selection: Any) -> None:
    """Show what apply would change, changing nothing (exit 0: nothing to do, 2: changes pending)."""
    from remediate import api
    given = rollout_given(selection)
    if given and out is None:
        raise click.UsageError(f"{given} is a rollout setting for apply; a plan keeps it only when saved: give --out "
                               "PLANFILE too, or give it to `remediate apply`")
    library()
    render = renderer(as_json)
    opts = options(hosts, inventory, playbook, extra, accept_new_host_keys, verbose=verbose, **selection)
    finish(render, api.plan(opts, render, api.ssh_factory(opts, render, become_password), out).outcomes)


@cli.command()
@common
@playbook_options
@step_options
@click.argument("planfile", required=False, type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Apply without asking.")
@click.option("--dry-run", is_flag=True, help="Only plan; the same as `remediate plan`.")
@break_lock_option
@fleet_options
@backend_options
@exits_at_once
@reports_errors
def apply(hosts: tuple[str, ...], inventory: Path | None, playbook: str | None, extra: tuple[str, ...],
          as_json: bool, accept_new_host_keys: bool, verbose: int, yes: bool, dry_run: bool, break_lock: bool,
          planfile: Path | None, backend: str, **selection: Any) -> None:
    """Plan, confirm, then apply and verify each step; roll back on failure.

    With PLANFILE (from `plan --out`): apply exactly that reviewed plan, without asking, and only if every host
    would get that very plan today. With --backend temporal: plan here, then a rollout workflow on Temporal applies
    exactly that plan through serve's workers, and goes on if this process ends (`remediate rollouts`)."""
    from remediate import api
    from remediate.engine import planfile as planfile_mod
    temporal = {k: selection.pop(k) for k in list(selection) if k.startswith("temporal_")}
    if chosen(backend) and not dry_run:
        if planfile is not None or break_lock:
            raise click.UsageError(f"{'PLANFILE' if planfile is not None else '--break-lock'} is not taken with "
                                   "--backend temporal yet: give --host (and -p, -e) and the plan is made here")
        opts = options(hosts, inventory, playbook, extra, accept_new_host_keys, verbose=verbose, **selection)
        render = renderer(as_json)
        from remediate.cli import rollouts
        rollouts.apply(api.plan(opts, render, api.ssh_factory(opts, render, become_password)), render, temporal, yes)
        return
    library()
    render = renderer(as_json)
    target: api.PlanSet | api.Options
    if planfile is not None:
        selection.pop("allow_unused_vars", None)  # a saved plan's variables were checked when it was made
        given = rollout_given(selection)
        fleet_settings = rollout(selection)
        if hosts or playbook or any(selection.values()):
            raise click.UsageError("a saved plan names its hosts, playbook and steps; give only PLANFILE (and -e for "
                                   "masked secrets, -i if the inventory moved)")
        doc = planfile_mod.load(planfile)
        if given and "rollout" in doc:
            raise click.UsageError(f"{given}: a saved plan keeps the rollout it was reviewed with (`remediate show "
                                   f"{planfile}` says it); to roll out otherwise, make and review a new plan with "
                                   f"`remediate plan --out FILE {given} ...`")
        saved = api.PlanSet.saved(doc, inventory, extra)
        # A plan saved before plans kept their rollout takes it from the command line, as it did then; --forks is
        # always the applier's, as Terraform's -parallelism
        kept = (saved.options.rollout, saved.options.serial_text) if "rollout" in doc else (
            fleet_settings["rollout"], fleet_settings["serial_text"])
        target = saved.with_options(accept_new_host_keys=accept_new_host_keys, break_lock=break_lock, verbose=verbose,
                                    rollout=replace(kept[0], forks=fleet_settings["rollout"].forks), serial_text=kept[1])
        opts = target.options
        yes = True  # the plan was reviewed when it was saved, as with Terraform's saved plans
    else:
        target = opts = options(hosts, inventory, playbook, extra, accept_new_host_keys, break_lock, verbose, **selection)
    factory = api.ssh_factory(opts, render, become_password)
    if dry_run:
        finish(render, api.plan(opts, render, factory).outcomes)
    from remediate.engine.undo import terminate_as_interrupt
    terminate_as_interrupt()
    finish(render, api.apply(target, render, factory, lambda pending: confirm(pending, yes)))


@cli.command()
@click.argument("planfile", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The plan file's content, checked, as JSON.")
@reports_errors
def show(planfile: Path, as_json: bool) -> None:
    """Print a saved plan (checking that it was not altered): its playbook, hosts, variables and every step."""
    from remediate import redact
    from remediate.engine import planfile as planfile_mod
    library()
    doc = planfile_mod.load(planfile)
    render = renderer(as_json)
    if as_json:
        render(events.SavedPlan(doc))
        return

    def say(text: str) -> None:
        click.echo(visible(redact.text(text)))

    say(f"saved plan {doc['seal'][:12]}, made {doc['created']} from {doc['playbook']['path']} for "
        f"{', '.join(doc['hosts'])} (inventory {doc['inventory']}); variables {json.dumps(doc['extra'])}")
    say(rollout_said(doc))
    for host, saved in doc["plans"].items():  # not a run: a run id is given when the plan is applied
        say(f"saved plan for {host}: {doc['playbook']['path']}")
        for step in saved["steps"]:
            render(events.StepPlanned(host, ShownPlan.parse(step)))
    click.echo(f"apply exactly this plan with `remediate apply {shlex.quote(str(planfile))}`")


def rollout_said(doc: dict[str, Any]) -> str:
    """A saved plan's rollout, in words."""
    from remediate.engine.options import saved_rollout
    if "rollout" not in doc:
        return ("rollout: not saved with this plan (made before plans kept it): apply takes --serial, "
                "--max-fail-percent and --rollback-fleet-on-abort")
    kept, serial = saved_rollout(doc)
    batches = f"batches {serial}, each once the one before has verified" if serial else "one batch"
    budget = kept.max_fail_percent
    stop = f"stopping once failures reach {budget:g}% of the hosts" if budget else "stopping at the first failure"
    fleet = "; then the hosts already fixed are rolled back too" if kept.rollback_fleet_on_abort else ""
    return f"rollout: {batches}, {stop}{fleet}"


def confirm(pending: list[Bound], yes: bool) -> bool:
    if yes:
        return True
    if not interactive():
        raise RemediateError("refusing to apply without confirmation: no terminal to ask on",
                             hint="review `remediate plan`, then run again with --yes")
    names = ", ".join(b.host.name for b in pending)
    return click.confirm(f"Apply these changes to {names}?", default=False, err=True)


@cli.command()
@common
@click.option("--run", "run_id", default=None, help="Run id (default: the newest run that can be rolled back).",
              shell_complete=complete_runs)
@click.option("--yes", is_flag=True, help="Roll back without asking.")
@click.option("--force", is_flag=True, help="Overwrite files changed after the run with their before-image "
                                            "(a refusal shows the diff first).")
@click.option("--skip", "skip", multiple=True, metavar="STEP",
              help="Mark a step you resolved by hand as done and leave it alone; repeatable.")
@break_lock_option
@reports_errors
def rollback(hosts: tuple[str, ...], inventory: Path | None, as_json: bool, accept_new_host_keys: bool, verbose: int,
             run_id: str | None, yes: bool, force: bool, skip: tuple[str, ...], break_lock: bool) -> None:
    """Undo a recorded run on a host from its journal, newest step first."""
    from remediate import api
    library()
    render = renderer(as_json)
    opts = options(hosts, inventory, accept_new_host_keys=accept_new_host_keys, break_lock=break_lock, verbose=verbose)

    def ask(record: Journal) -> bool:
        if yes:
            return True
        if not interactive():
            raise RemediateError("refusing to roll back without confirmation: no terminal to ask on",
                                 hint="run again with --yes")
        return click.confirm(f"Roll back run {record.run_id} ({record.record.get('playbook')}) on "
                             f"{record.record.get('host')}?", default=False, err=True)

    finish(render, api.rollback(opts, run_id, render, api.ssh_factory(opts, render, become_password), ask,
                                force=force, skip=frozenset(skip)))


@cli.command()
@common
@playbook_options
@reports_errors
def diagnose(hosts: tuple[str, ...], inventory: Path | None, playbook: str | None, extra: tuple[str, ...],
             as_json: bool, accept_new_host_keys: bool, verbose: int, allow_unused_vars: bool) -> None:
    """Read-only: run a playbook's diagnose: checks (-p), or those of every playbook on the search path, and name the
    playbook that fixes each finding (exit 0 healthy, 3 findings, 1 error)."""
    from remediate import api
    library()
    render = renderer(as_json)
    opts = options(hosts, inventory, playbook, extra, accept_new_host_keys, verbose=verbose,
                   allow_unused_vars=allow_unused_vars)
    results = api.diagnose(opts, api.ssh_factory(opts, render, become_password))
    for result in results:
        render.diagnosis(result, api.next_options(result, inventory, extra, allow_unused_vars))
    sys.exit(max((r.exit_code for r in results), key=lambda c: {1: 3, 3: 2, 0: 0}.get(c, 1)))
