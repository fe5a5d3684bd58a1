"""The commands that read without connecting: runs (and runs show), validate, inventory, playbooks, kinds, checks."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from remediate.cli.app import (
    PLAYBOOK_HELP,
    allow_unused_option,
    cli,
    complete_hosts,
    complete_playbooks,
    complete_runs,
    default_path,
    library,
    renderer,
    reports_errors,
)
from remediate.cli.output import JsonRenderer
from remediate.engine import events
from remediate.errors import EXIT_ERROR, RemediateError

if TYPE_CHECKING:  # the journal (and its run index) is imported by the commands that read runs, not for --help
    from remediate.api.catalog import Described
    from remediate.engine.journal import Journal


#: How many runs `remediate runs` shows unless told (--limit N, --all): the newest.
SHOWN_RUNS: Final = 50


@cli.group(invoke_without_command=True)
@click.option("--host", default=None, help="Only runs on this host.")
@click.option("--limit", type=click.IntRange(min=1), default=SHOWN_RUNS, show_default=True,
              help="Show the newest N runs.")
@click.option("--all", "show_all", is_flag=True, help="Show every recorded run.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@click.pass_context
@reports_errors
def runs(ctx: click.Context, host: str | None, limit: int, show_all: bool, as_json: bool) -> None:
    """Recorded runs, newest first (the newest 50 unless --limit N or --all): id, time, operator, host, playbook,
    steps, outcome, and whom serve ran it for (its incident and approvers). `runs show ID`: one run."""
    if ctx.invoked_subcommand is not None:
        return
    from remediate.engine.journal import count, summaries
    rows = summaries(host, None if show_all else limit)
    if as_json:
        JsonRenderer().table("run", rows)
    elif not rows:
        click.echo("no runs recorded")
    else:
        from remediate.cli.output import table_lines
        served = any(isinstance(row.get("for"), dict) for row in rows)
        shown = [_for_column(row, served) for row in rows]
        width = shutil.get_terminal_size().columns
        click.echo("\n".join(table_lines(shown, width=width, terminal=sys.stdout.isatty())))
    total = len(rows) if show_all or len(rows) < limit else count(host)
    if total > len(rows):
        click.echo(f"the newest {len(rows)} of {total} runs{' on ' + host if host else ''}; "
                   "--limit N or --all shows more", err=True)


def _for_column(row: dict[str, object], served: bool) -> dict[str, object]:
    """A run's row for people: `for` in words ("" for a person's run), and no `for` column when no run shown was
    serve's (served: some was)."""
    given = row.get("for")
    shown = {k: v for k, v in row.items() if k != "for"}
    return {**shown, "for": for_words(given) if isinstance(given, dict) else ""} if served else shown


def for_words(given: dict[str, Any], *, full: bool = False) -> str:
    """Whom a run was for, in words: "incident 12, approved by alice (token), bob (slack)"; full: with when each
    approved, who asked for the run, and the incident's page."""
    words = [f"incident {given.get('incident')}"]
    approvers = [a for a in given.get("approvers") or [] if isinstance(a, dict)]
    if approvers:
        words.append("approved by " + ", ".join(
            f"{a.get('by')}" + (f" ({a.get('via')}{', ' + str(a.get('at')) if full and a.get('at') else ''})"
                                if a.get("via") else "") for a in approvers))
    elif given.get("approved_by"):
        words.append(f"approved by {given['approved_by']} (a typed name, not verified)")
    else:
        words.append("approval: auto")
    if full and given.get("requested_by"):
        words.append(f"requested by {given['requested_by']}")
    if full and given.get("url"):
        words.append(str(given["url"]))
    return ", ".join(words)


@runs.command("show")
@click.argument("run_id", shell_complete=complete_runs)
@click.option("--json", "as_json", is_flag=True, help="The run's journal as one JSON object.")
@reports_errors
def runs_show(run_id: str, as_json: bool) -> None:
    """One run: its steps, their states, files with before/after sha256 and backups, commands and the outcome, and
    whom serve ran it (and rolled it back) for."""
    record = journal_named(run_id).record
    renderer(as_json).run_record(record)
    if not as_json:
        from remediate.cli.output import visible
        for key, what in (("for", "for"), ("rollback_for", "rolled back for")):
            if isinstance(record.get(key), dict):
                click.echo(visible(f"{what}: {for_words(record[key], full=True)}"))


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
    from remediate import api
    library()
    render = renderer(as_json)
    for line in api.validate(playbook, inventory, extra, refuse_unused_vars=not allow_unused_vars):
        render(events.Validated(line))
    render(events.Validated("valid", 0))


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
    from remediate import api
    library()
    render = renderer(as_json)
    where = path or default_path()
    if host is not None:
        render(api.inventory_host(where, host))
        return
    if not graph:
        raise RemediateError("say what to show: --graph, or --host HOST")
    for group in api.inventory_graph(where):
        render(group)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout.")
@reports_errors
def playbooks(as_json: bool) -> None:
    """The playbooks on the search path ($REMEDIATE_PLAYBOOK_PATH's folders, then those installed packages declare,
    then the shipped ones), with their descriptions, steps, variables and where each comes from. A name found twice:
    the first wins, and says what it hides; a package's playbook that cannot be used is named, with why."""
    from remediate import api
    library()
    render = renderer(as_json)
    books, problems = api.playbooks()
    for book in books:
        render(book)
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
    from remediate import api
    library()
    found = api.kinds(name)
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
    from remediate import api
    library()
    found = api.checks(name)
    if as_json:
        for entry in found:
            JsonRenderer()(entry.event())
        return
    click.echo("\n".join(catalog_lines(found, "check", detail=name is not None)))


def catalog_lines(entries: list[Described], key: str, *, detail: bool) -> list[str]:
    """Kinds or check types for people: one line each with the package it comes from, or one in detail: each
    parameter (required, optional, or its default) and an example. key: "kind" or "check" (each entry says too)."""
    from remediate.cli.output import visible
    if not detail:
        width = max(len(e.name) for e in entries)
        return [visible(f"{e.name.ljust(width)}  {e.summary}  ({e.package}{', a plug-in' if e.plugin else ''})")
                for e in entries]
    e = entries[0]
    lines = [f"{e.name}: {e.summary}  (from {e.package}{', a plug-in' if e.plugin else ''})"]
    for p in e.params:
        need = "required" if p.required else ("optional" if p.default in (None, "", [], {}) else
                                              f"default {json.dumps(p.default)}")
        lines.append(f"  {p.name} ({p.type}, {need})" + (f": {p.help}" if p.help else ""))
    if e.outputs:
        lines.append(f"  gives later steps: {', '.join('{{ steps.ID.' + o + ' }}' for o in e.outputs)}")
    lines += ["example:", e.example]
    return [visible(line) for line in lines]


def journal_named(run_id: str) -> Journal:
    """A run by its whole id or a unique prefix of at least 11 characters, on any host."""
    from remediate.engine.journal import named
    return named(None, run_id)


