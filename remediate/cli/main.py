"""The remediate command line: parse, call the library, render. Nothing else lives here."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from remediate import __version__
from remediate.cli.output import JsonRenderer
from remediate.engine.journal import Journal, summaries
from remediate.engine.journal import named as _named_run
from remediate.errors import EXIT_ERROR, RemediateError
from remediate.redact import BECOME_PASSWORD_ENV

if TYPE_CHECKING:  # the heavy modules (SSH, rich, YAML) are imported by the commands that use them
    from remediate import api as session_mod
    from remediate.cli.render import HumanRenderer
    from remediate.engine.runner import Bound, Outcome
    from remediate.inputs.inventory import Host


def _session() -> Any:
    """The library (SSH, YAML, playbooks), imported when a command needs it, not to print help."""
    from remediate import api as session
    from remediate.collector import started
    started()
    return session


def default_path() -> Path:
    from remediate.inputs.inventory import default_path as path
    return path()


PASSWORD_ENV = BECOME_PASSWORD_ENV


def interactive() -> bool:
    return sys.stdin.isatty() and not os.environ.get("CI")


def become_password(host: Host) -> str:
    """REMEDIATE_BECOME_PASSWORD, else a hidden prompt on a terminal; never stored, masked from the moment it is read."""
    from remediate import redact
    secret = os.environ.get(PASSWORD_ENV)
    if not secret:
        if not interactive():
            raise RemediateError(f"{host.name}: sudo needs a password and there is no terminal to ask on",
                                 hint=f"export {PASSWORD_ENV}")
        secret = click.prompt(f"sudo password for {host.user or 'the login user'} on {host.name}", hide_input=True, err=True)
    redact.register(secret)
    return secret


def complete_hosts(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for --host: the hosts and groups of the inventory named so far (or the default one)."""
    try:
        from remediate.inputs.inventory import load
        found = load(Path(ctx.params.get("inventory") or default_path()))
    except RemediateError:
        return []
    return sorted(n for n in {*found.hosts, *found.groups} if n.startswith(incomplete))


def complete_playbooks(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for -p: the names on the playbook search path, and the YAML files here (or in the folder
    being typed) that are playbooks (they have steps:), never an inventory or a vars file."""
    from remediate.inputs.playbook import SUFFIXES, catalog, looks_like_playbook
    folder = Path(incomplete.rpartition("/")[0] or "/") if "/" in incomplete else Path(".")
    files = [p for p in folder.glob("*") if p.suffix in SUFFIXES and p.is_file() and looks_like_playbook(p)]
    names = [listed.name for listed in catalog()] + [str(p) if "/" in incomplete else p.name for p in files]
    return sorted(n for n in set(names) if n.startswith(incomplete))


def complete_runs(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for --run: the recorded run ids, newest first."""
    from remediate.engine.journal import history
    return [str(r["run_id"]) for r in history() if str(r["run_id"]).startswith(incomplete)]


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every host command shares."""
    options = [
        click.option("--host", "hosts", multiple=True, help="Inventory host or group; repeatable (required, except "
                     "for `apply PLANFILE`, whose plan names its hosts).", shell_complete=complete_hosts),
        click.option("-i", "--inventory", type=click.Path(path_type=Path), default=None,
                     help="Inventory file (default: $REMEDIATE_INVENTORY or ./inventory.yml)."),
        click.option("--json", "as_json", is_flag=True, help="JSON Lines events on stdout."),
        click.option("--accept-new-host-keys", is_flag=True,
                     help="Record unknown host keys in known_hosts (a changed key is always refused)."),
        click.option("-v", "--verbose", count=True, help="-v: every remote command with its exit code and time; "
                                                         "-vv: and what it printed (secrets masked)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def step_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--steps, --skip-steps, --start-at-step (plan and apply)."""
    split = lambda ctx, param, value: tuple(s.strip() for v in value for s in v.split(",") if s.strip())  # noqa: E731
    func = click.option("--start-at-step", "start_at", default=None, metavar="STEP",
                        help="Leave out the steps before STEP.")(func)
    func = click.option("--skip-steps", "skip_steps", multiple=True, callback=split, metavar="A,B",
                        help="Leave out these steps (they count as unchanged for the steps that depend on them).")(func)
    return click.option("--steps", "steps", multiple=True, callback=split, metavar="A,B",
                        help="Only these steps; the others are checked for their outputs but never applied.")(func)


PLAYBOOK_HELP = ("Playbook path, or a name on the search path ($REMEDIATE_PLAYBOOK_PATH's folders, then the shipped "
                 "playbooks) (default: smtp-to-lmtp; for diagnose, every playbook on the search path).")
allow_unused_option = click.option("--allow-unused-vars", is_flag=True,
                                   help="Accept an -e variable that nothing reads (by default a typo is refused).")


def playbook_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = allow_unused_option(func)
    func = click.option("-e", "--extra", multiple=True, metavar="KEY=VALUE",
                        help="Override a variable; repeatable. A variable nothing reads is refused.")(func)
    return click.option("-p", "--playbook", default=None, help=PLAYBOOK_HELP, shell_complete=complete_playbooks)(func)


def renderer(as_json: bool) -> JsonRenderer | HumanRenderer:
    if as_json:
        return JsonRenderer()
    from remediate.cli.render import HumanRenderer
    return HumanRenderer()


def finish(render: JsonRenderer | HumanRenderer, outcomes: list[Outcome]) -> None:
    from remediate.engine import events
    for outcome in outcomes:
        render(events.Summary(outcome.host, outcome.status, outcome.exit_code, outcome.run_id, outcome.message).as_dict())
    code = _session().exit_code(outcomes)
    if len(outcomes) > 1:
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        render(events.RolloutFinished(len(outcomes), counts, code).as_dict())
    sys.exit(code)


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a RemediateError into one clear message and its exit code; anything else into an error, not a traceback
    (REMEDIATE_DEBUG=1 shows the traceback)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RemediateError as e:
            renderer(kwargs.get("as_json", False)).error(str(e), e.exit_code)
            sys.exit(e.exit_code)
        except click.ClickException:
            raise  # a usage error: main() reports it
        except Exception as e:
            if os.environ.get("REMEDIATE_DEBUG"):
                raise
            renderer(kwargs.get("as_json", False)).error(
                f"internal error: {type(e).__name__}: {e}\n  hint: this is a bug in remediate; run again with "
                "REMEDIATE_DEBUG=1 for the traceback and report it", EXIT_ERROR)
            sys.exit(EXIT_ERROR)
    return wrapper


def options(hosts: tuple[str, ...], inventory: Path | None, playbook: str | None = None, extra: tuple[str, ...] = (),
            accept_new_host_keys: bool = False, break_lock: bool = False, verbose: int = 0,
            allow_unused_vars: bool = False, **selection: Any) -> session_mod.Options:
    if not hosts:
        raise click.UsageError("Missing option '--host'.")
    return _session().Options(inventory=inventory or default_path(), hosts=hosts, playbook=playbook, extra=extra,
                           accept_new_host_keys=accept_new_host_keys, break_lock=break_lock, verbose=verbose,
                           refuse_unused_vars=not allow_unused_vars, **rollout(selection), **selection)


def fleet_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--forks for plan and apply; apply also takes the rollout's batches and failure budget."""
    func = click.option("--forks", type=int, default=20, show_default=True, metavar="N",
                        help="Hosts worked on at the same time.")(func)
    if func.__name__ != "apply":
        return func
    func = click.option("--rollback-fleet-on-abort", is_flag=True,
                        help="When the rollout stops, roll back the hosts it already fixed, newest first.")(func)
    func = click.option("--max-fail-percent", type=float, default=None, metavar="P",
                        help="The rollout stops once failures reach P% of its hosts, counted over the whole "
                             "rollout (default 0: the first failure); then no new host starts.")(func)
    return click.option("--serial", default=None, metavar="N,M,P%",
                        help="Canary batches, e.g. 1,5,20%: one host, then 5, then 20% at a time; each batch starts "
                             "once the one before has verified.")(func)


def rollout(selection: dict[str, Any]) -> dict[str, Any]:
    """The fleet options out of selection, as Options fields."""
    from remediate.engine import fleet
    serial = selection.pop("serial", None)
    settings = fleet.Rollout(forks=fleet.forks(selection.pop("forks", 20)), serial=fleet.parse_serial(serial),
                             max_fail_percent=fleet.percent(selection.pop("max_fail_percent", None)),
                             rollback_fleet_on_abort=selection.pop("rollback_fleet_on_abort", False))
    return {"rollout": settings, "serial_text": serial}


break_lock_option = click.option("--break-lock", is_flag=True,
                                 help="Remove another run's lock on the host when its holder is gone.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="remediate")
def cli() -> None:
    """Plan, apply, verify and roll back documented incident fixes over SSH.

    Exit codes: 0 done or nothing to do, 1 error (failed runs are rolled back),
    2 changes pending (plan), 3 findings, 4 rollback incomplete, 5 rollout stopped
    (failure budget exceeded; hosts not started were skipped), 6 rollout stopped and
    the hosts it had fixed rolled back.
    """


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
    render = renderer(as_json)
    opts = options(hosts, inventory, playbook, extra, accept_new_host_keys, verbose=verbose, **selection)
    finish(render, _session().plan(opts, render, _session().ssh_factory(opts, render, become_password), out))


@cli.command()
@common
@playbook_options
@step_options
@click.argument("planfile", required=False, type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Apply without asking.")
@click.option("--dry-run", is_flag=True, help="Only plan; the same as `remediate plan`.")
@break_lock_option
@fleet_options
@reports_errors
def apply(hosts: tuple[str, ...], inventory: Path | None, playbook: str | None, extra: tuple[str, ...],
          as_json: bool, accept_new_host_keys: bool, verbose: int, yes: bool, dry_run: bool, break_lock: bool,
          planfile: Path | None, **selection: Any) -> None:
    """Plan, confirm, then apply and verify each step; roll back on failure.

    With PLANFILE (from `plan --out`): apply exactly that reviewed plan, without asking, and only if every host
    would get that very plan today."""
    render = renderer(as_json)
    saved = None
    if planfile is not None:
        selection.pop("allow_unused_vars", None)  # a saved plan's variables were checked when it was made
        fleet_settings = rollout(selection)
        if hosts or playbook or any(selection.values()):
            raise click.UsageError("a saved plan names its hosts, playbook and steps; give only PLANFILE (and -e for "
                                   "masked secrets, -i if the inventory moved)")
        saved = _session().planfile.load(planfile)
        opts = _session().saved_options(saved, inventory, extra)
        opts = dataclasses.replace(opts, accept_new_host_keys=accept_new_host_keys, break_lock=break_lock, verbose=verbose,
                                   **fleet_settings)
        yes = True  # the plan was reviewed when it was saved, as with Terraform's saved plans
    else:
        opts = options(hosts, inventory, playbook, extra, accept_new_host_keys, break_lock, verbose, **selection)
    factory = _session().ssh_factory(opts, render, become_password)
    if dry_run:
        finish(render, _session().plan(opts, render, factory))
    from remediate.engine.runner import terminate_as_interrupt
    terminate_as_interrupt()
    finish(render, _session().apply(opts, render, factory, lambda pending: confirm(pending, yes), saved))


@cli.command()
@click.argument("planfile", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The plan file's content, checked, as JSON.")
@reports_errors
def show(planfile: Path, as_json: bool) -> None:
    """Print a saved plan (checking that it was not altered): its playbook, hosts, variables and every step."""
    doc = _session().planfile.load(planfile)
    render = renderer(as_json)
    if as_json:
        render({"event": "saved_plan", **doc})
        return
    from remediate import redact
    from remediate.cli.output import visible

    def say(text: str) -> None:
        click.echo(visible(redact.text(text)))

    say(f"saved plan {doc['seal'][:12]}, made {doc['created']} from {doc['playbook']['path']} for "
        f"{', '.join(doc['hosts'])} (inventory {doc['inventory']}); variables {json.dumps(doc['extra'])}")
    for host, saved in doc["plans"].items():  # not a run: a run id is given when the plan is applied
        say(f"saved plan for {host}: {doc['playbook']['path']}")
        for step in saved["steps"]:
            render({"event": "step_planned", "host": host, **step})
    click.echo(f"apply exactly this plan with `remediate apply {shlex.quote(str(planfile))}`")


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

    finish(render, _session().rollback(opts, run_id, render, _session().ssh_factory(opts, render, become_password), ask,
                                    force=force, skip=frozenset(skip)))


@cli.command()
@common
@playbook_options
@reports_errors
def diagnose(hosts: tuple[str, ...], inventory: Path | None, playbook: str | None, extra: tuple[str, ...],
             as_json: bool, accept_new_host_keys: bool, verbose: int, allow_unused_vars: bool) -> None:
    """Read-only: run a playbook's diagnose: checks (-p), or those of every playbook on the search path, and name the
    playbook that fixes each finding (exit 0 healthy, 3 findings, 1 error)."""
    render = renderer(as_json)
    opts = options(hosts, inventory, playbook, extra, accept_new_host_keys, verbose=verbose,
                   allow_unused_vars=allow_unused_vars)
    results = _session().diagnose(opts, _session().ssh_factory(opts, render, become_password))
    for result in results:
        render.diagnosis(result, _session().next_options(result, inventory, extra, allow_unused_vars))
    sys.exit(max((r.exit_code for r in results), key=lambda c: {1: 3, 3: 2, 0: 0}.get(c, 1)))


@cli.group(invoke_without_command=True)
@click.option("--host", default=None, help="Only runs on this host.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@click.pass_context
@reports_errors
def runs(ctx: click.Context, host: str | None, as_json: bool) -> None:
    """Recorded runs, newest first: id, time, operator, host, playbook, steps, outcome. `runs show ID`: one run."""
    if ctx.invoked_subcommand is None:
        rows = summaries(host)
        if as_json:
            JsonRenderer().table("run", rows)
        elif not rows:
            click.echo("no runs recorded")
        else:
            from remediate.cli.output import table_lines
            width = shutil.get_terminal_size().columns
            click.echo("\n".join(table_lines(rows, width=width, terminal=sys.stdout.isatty())))


@runs.command("show")
@click.argument("run_id", shell_complete=complete_runs)
@click.option("--json", "as_json", is_flag=True, help="The run's journal as one JSON object.")
@reports_errors
def runs_show(run_id: str, as_json: bool) -> None:
    """One run: its steps, their states, files with before/after sha256 and backups, commands and the outcome."""
    renderer(as_json).run_record(journal_named(run_id).record)


@cli.command()
@click.option("-p", "--playbook", default=None, help=PLAYBOOK_HELP, shell_complete=complete_playbooks)
@click.option("-i", "--inventory", type=click.Path(path_type=Path), default=None,
              help="Also bind the playbook to every host of this inventory (variables, parameter types).")
@click.option("-e", "--extra", multiple=True, metavar="KEY=VALUE",
              help="Override a variable; repeatable. A variable nothing reads is refused.")
@allow_unused_option
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@reports_errors
def validate(playbook: str | None, inventory: Path | None, extra: tuple[str, ...], allow_unused_vars: bool,
             as_json: bool) -> None:
    """Check a playbook without connecting to anything: syntax, kinds, parameters and variables, and its diagnose:
    checks (parameters, expectations, the playbooks their fix: names)."""
    render = renderer(as_json)
    for line in _session().validate(playbook, inventory, extra, refuse_unused_vars=not allow_unused_vars):
        render({"event": "validated", "message": line})
    render({"event": "validated", "message": "valid", "exit_code": 0})


@cli.command("inventory")
@click.option("-i", "--inventory", "path", type=click.Path(path_type=Path), default=None,
              help="Inventory file (default: $REMEDIATE_INVENTORY or ./inventory.yml).")
@click.option("--graph", is_flag=True, help="Groups and their hosts.")
@click.option("--host", "host", default=None, shell_complete=complete_hosts,
              help="One host's merged variables and where each came from.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@reports_errors
def inventory_cmd(path: Path | None, graph: bool, host: str | None, as_json: bool) -> None:
    """Show the inventory as remediate reads it (YAML or INI): --graph, or --host H with each variable's origin."""
    render = renderer(as_json)
    where = path or default_path()
    if host is not None:
        render({"event": "inventory_host", **_session().inventory_host(where, host)})
        return
    if not graph:
        raise RemediateError("say what to show: --graph, or --host HOST")
    for group in _session().inventory_graph(where):
        render({"event": "inventory_group", **group})


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@reports_errors
def playbooks(as_json: bool) -> None:
    """The playbooks on the search path ($REMEDIATE_PLAYBOOK_PATH's folders, then the shipped ones), with their
    descriptions, steps and variables. A name found twice: the first wins, and says what it hides."""
    render = renderer(as_json)
    books, problems = _session().playbooks()
    for book in books:
        render({"event": "playbook", **book})
        if not as_json:
            hides = f"; it hides {', '.join(book['shadows'])}" if book["shadows"] else ""
            click.echo(f"  from {'the shipped playbooks' if book['shipped'] else book['path']}{hides}")
    for problem in problems:
        render.error(problem, EXIT_ERROR)
    if problems:
        sys.exit(EXIT_ERROR)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@reports_errors
def kinds(name: str | None, as_json: bool) -> None:
    """Step kinds playbooks can use, from remediate and every installed plug-in; NAME: one, with an example."""
    found = _session().kinds(name)
    if as_json:
        JsonRenderer().kinds(found, detail=name is not None)
        return
    click.echo("\n".join(catalog_lines(found, "kind", detail=name is not None)))


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@reports_errors
def checks(name: str | None, as_json: bool) -> None:
    """Check types a playbook's diagnose: section can use; NAME: one, with its parameters and an example."""
    found = _session().checks(name)
    if as_json:
        for entry in found:
            JsonRenderer()({"event": "check_type", **entry})
        return
    click.echo("\n".join(catalog_lines(found, "check", detail=name is not None)))


def catalog_lines(entries: list[dict[str, Any]], key: str, *, detail: bool) -> list[str]:
    """Kinds or check types for people: one line each with the package it comes from, or one in detail: each
    parameter (required, optional, or its default) and an example."""
    from remediate.cli.output import visible
    if not detail:
        width = max(len(e[key]) for e in entries)
        return [visible(f"{e[key].ljust(width)}  {e['summary']}  ({e['package']}{', a plug-in' if e.get('plugin') else ''})")
                for e in entries]
    e = entries[0]
    lines = [f"{e[key]}: {e['summary']}  (from {e['package']}{', a plug-in' if e.get('plugin') else ''})"]
    for p in e["params"]:
        need = "required" if p["required"] else ("optional" if p["default"] in (None, "", [], {}) else
                                                 f"default {json.dumps(p['default'])}")
        lines.append(f"  {p['name']} ({p['type']}, {need})" + (f": {p['help']}" if p["help"] else ""))
    if e.get("outputs"):
        lines.append(f"  gives later steps: {', '.join('{{ steps.ID.' + o + ' }}' for o in e['outputs'])}")
    lines += ["example:", e["example"]]
    return [visible(line) for line in lines]


def journal_named(run_id: str) -> Journal:
    """A run by its whole id or a unique prefix of at least 11 characters, on any host."""
    return _named_run(None, run_id)


from remediate.serve.commands import register as _register_serve  # noqa: E402 (the commands need `cli` and reports_errors)

_register_serve(cli, reports_errors)


def main() -> None:
    """Entry point: usage errors exit 1, so that 2 always means 'changes pending'."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted; nothing was changed", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException as e:
        if "--json" in sys.argv[1:]:
            JsonRenderer().error(f"usage: {e.format_message()}", EXIT_ERROR)
        else:
            e.show()
        sys.exit(EXIT_ERROR)
    sys.exit(0)
