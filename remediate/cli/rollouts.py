"""Fleet rollouts on Temporal from the command line: `apply --backend temporal` (plan here, confirm, then start a
rollout workflow whose input is the reviewed plan, and follow it; Ctrl-C, SIGTERM or a closed terminal detach, they
never cancel), `remediate rollouts` (list) and `remediate rollouts show ID [--follow]`. The workflows are
serve/temporal/rollout.py's; any `remediate serve --backend temporal` on the task queue runs them."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from remediate import redact
from remediate.cli.app import cli, finish, interactive, renderer, reports_errors
from remediate.cli.backend import backend_options as backend_options
from remediate.cli.backend import chosen as chosen
from remediate.cli.backend import exits_at_once, temporal_options
from remediate.cli.output import JsonRenderer, table_lines, visible
from remediate.engine import events
from remediate.engine.outcome import Action, Mode, Outcome, RunEnd, Status
from remediate.errors import InputError, RemediateError
from remediate.serve.temporal.options import TemporalOptions

if TYPE_CHECKING:
    import asyncio

    from remediate.api import PlanSet
    from remediate.cli.render import HumanRenderer
    from remediate.serve.temporal.backend import Connection

T = TypeVar("T")
#: A host's state, once ended, as the run_finished event words it.
ENDINGS = {"applied": RunEnd.APPLIED, "rolled back": RunEnd.ROLLED_BACK, "rollback incomplete": RunEnd.ROLLBACK_INCOMPLETE}
WAITING = ("pending", "nothing to do", "skipped")


def connection(temporal: dict[str, Any]) -> Connection:
    """The Connection the --temporal-* options name (serve's own reading of them: TLS files, the API key masked)."""
    try:
        from remediate.serve.temporal import launch
    except ImportError as e:
        raise RemediateError(f"--backend temporal needs the Temporal SDK and serve's stack: {e}",
                             hint="pip install 'remediate[serve,temporal]'") from None
    return launch.connection(TemporalOptions(**{k.removeprefix("temporal_"): v for k, v in temporal.items()}))


def _loop() -> asyncio.AbstractEventLoop:
    """The running event loop (asyncio is imported by _run, which runs the coroutine asking)."""
    import asyncio
    return asyncio.get_running_loop()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # only a Temporal rollout needs it: not imported for every command (about 15 ms)
    return asyncio.run(coro)


# --- apply --backend temporal ----------------------------------------------------------------------------------------

def apply(planset: PlanSet, render: JsonRenderer | HumanRenderer, temporal: dict[str, Any], yes: bool) -> None:
    """Plan done (planset, shown); confirm, start the rollout with the reviewed plan, and follow it to its end."""
    from remediate.engine.journal import operator
    from remediate.serve.temporal import rollout_activities, rollout_client
    from remediate.serve.temporal.rollout_shared import RolloutInput, Settings
    where = connection(temporal)
    if planset.failed:  # as a local apply: a host that could not be planned stops everything
        finish(render, planset.outcomes)
    pending = [name for name, h in planset.hosts.items() if h.changed]
    unchanged = {o.host: o.message for o in planset.outcomes if o.host not in pending}  # said so by the plan
    if not pending:
        finish(render, planset.outcomes)
    doc = planset.document()
    masked = sorted(k for k, v in (doc.get("extra") or {}).items() if v == redact.MASK)
    if masked:
        raise InputError(f"variable {masked[0]} is a secret (masked in the plan): given with -e, it cannot travel "
                         "in a rollout's input, which Temporal keeps in the workflow's history",
                         hint="give it to the workers instead: a variable of the hosts in their inventory")
    _confirm(pending, yes)
    r = planset.options.rollout
    settings = Settings(forks=r.forks, serial=planset.options.serial_text, max_fail_percent=r.max_fail_percent,
                        rollback_fleet_on_abort=r.rollback_fleet_on_abort,
                        takeover_after=where.heartbeat)
    given = RolloutInput(rollout_client.new_id(), doc, pending, settings, rollout_activities.key_id(), operator(),
                         planset.playbook_name or Path(planset.playbook_path).stem, unchanged)

    async def started_then_followed() -> tuple[dict[str, Any] | None, int]:
        detached, why = rollout_client.detaching(_loop())
        client = await rollout_client.connect(where)
        await rollout_client.start(client, where, given)
        render(events.Notice(",".join(pending), f"rollout {given.rollout_id} started on Temporal at {where.address} "
                                                f"(task queue {where.task_queue}): serve's workers apply it, and it "
                                                "goes on if this process ends (Ctrl-C detaches; follow it again with "
                                                f"`remediate rollouts show {given.rollout_id} --follow`)"))
        return await rollout_client.follow(client, given.rollout_id, shown, detached), \
            rollout_client.detached_code(why)
    shown = Shown(render)
    record, code = _run(started_then_followed())
    ended(shown, given.rollout_id, record, code)


def _confirm(pending: list[str], yes: bool) -> None:
    if yes:
        return
    if not interactive():
        raise RemediateError("refusing to apply without confirmation: no terminal to ask on",
                             hint="review `remediate plan`, then run again with --yes")
    if not click.confirm(f"Apply these changes to {', '.join(pending)}? (a rollout on Temporal: it goes on if this "
                         "terminal closes)", default=False, err=True):
        raise RemediateError("apply cancelled; nothing was changed")


class Shown:
    """A followed rollout's changes as the library's events: each host starting, and how it ended."""

    def __init__(self, render: JsonRenderer | HumanRenderer, *, announce: bool = False) -> None:
        self.render = render
        self.states: dict[str, str] = {}
        self.announce = announce  # start with rollout_started (apply's plan has said it already)

    def __call__(self, record: dict[str, Any]) -> None:
        hosts, budget = record.get("hosts") or {}, record.get("budget") or {}
        if self.announce and len(hosts) > 1:
            self.render(events.RolloutStarted(Mode.APPLY, list(hosts), int(budget.get("forks") or 1),
                                              budget.get("serial"), float(budget.get("max_fail_percent") or 0)))
        self.announce = False
        for host, now in hosts.items():
            state, before = str(now.get("state")), self.states.get(host)
            if state == before or state in WAITING:
                continue
            self.states[host] = state
            if before in (None, "pending"):
                self.render(events.StepStarted(host, "", Action.APPLY))  # its steps are the worker's to show
            if state == "applying":
                continue
            if state == "rolling back":
                self.render(events.Notice(host, f"rolling back run {now.get('run_id')}: the rollout stopped"))
                continue
            ending = ENDINGS.get(state, RunEnd.FAILED)
            self.render(events.RunFinished(host, now.get("run_id"), ending, int(now.get("exit_code") or 0),
                                           now.get("message") or None))


def ended(shown: Shown, rollout_id: str, record: dict[str, Any] | None, detached: int) -> None:
    """The rollout's end as a local apply's (what `shown` has not shown yet, the summaries, the rollout's counts, its
    exit code); or, detached, how to follow it from elsewhere."""
    if record is None:
        try:
            click.echo(f"detached: rollout {rollout_id} goes on without this process; follow it with `remediate "
                       f"rollouts show {rollout_id} --follow`", err=True)
        except OSError:
            pass  # the terminal is gone
        sys.exit(detached)
    shown(record)
    if record.get("partial"):  # its workflow ended without a result (terminated, failed, timed out in Temporal)
        raise RemediateError(f"rollout {rollout_id} ended without finishing: {record.get('state')}",
                             hint=f"`remediate rollouts show {rollout_id}` has each host's state; `remediate runs` "
                                  "on the workers, or the hosts' journals, what each run did")
    render = shown.render
    hosts = record.get("hosts") or {}
    if record.get("aborted"):
        skipped = [h for h, r in hosts.items() if r.get("state") == "skipped"]
        render(events.RolloutAborted(",".join(skipped) or "-", str(record["aborted"]), skipped,
                                     int(record.get("failed") or 0), bool(record["budget"]["rollback_fleet_on_abort"])))
    finish(render, [Outcome(h, Status(r["status"]), int(r["exit_code"]), str(r.get("message") or ""), r.get("run_id"))
                    for h, r in hosts.items()])


# --- remediate rollouts -------------------------------------------------------------------------------------------

@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per rollout on stdout.")
@temporal_options
@click.pass_context
@exits_at_once
@reports_errors
def rollouts(ctx: click.Context, as_json: bool, **temporal: Any) -> None:
    """Fleet rollouts on Temporal (`apply --backend temporal`), newest first: id, start, playbook, hosts, state."""
    if ctx.invoked_subcommand is not None:
        return
    from remediate.serve.temporal import rollout_client
    where = connection(temporal)

    async def found() -> list[dict[str, Any]]:
        return await rollout_client.listed(await rollout_client.connect(where))
    rows = _run(found())
    if as_json:
        for row in rows:  # each as the memo keeps it (not an event: nothing happened)
            click.echo(json.dumps(visible(redact.data(row))))
        return
    if not rows:
        click.echo("no rollouts")
        return
    table = [{"id": r.get("id"), "started": _when(r.get("started")), "playbook": r.get("playbook"),
              "hosts": r.get("hosts"), "state": r.get("state"), "applied": r.get("applied"), "failed": r.get("failed"),
              "operator": r.get("started_by")} for r in rows]
    click.echo("\n".join(table_lines(table, width=shutil.get_terminal_size().columns, terminal=sys.stdout.isatty())))


@rollouts.command("show")
@click.argument("rollout_id")
@click.option("--json", "as_json", is_flag=True, help="The rollout as one JSON object (with --follow: JSON Lines "
                                                      "events, as apply --json prints them).")
@click.option("--follow", is_flag=True, help="Follow it until it ends; exit as its apply would. Ctrl-C detaches.")
@temporal_options
@exits_at_once
@reports_errors
def rollouts_show(rollout_id: str, as_json: bool, follow: bool, **temporal: Any) -> None:
    """One rollout: each host's state (pending, applying, applied, failed, stale, skipped, rolled back), its run,
    and the failure budget."""
    from remediate.serve.temporal import rollout_client, rollout_shared
    where = connection(temporal)
    if follow:
        shown = Shown(renderer(as_json), announce=True)

        async def followed() -> tuple[dict[str, Any] | None, int]:
            detached, why = rollout_client.detaching(_loop())
            client = await rollout_client.connect(where)
            return await rollout_client.follow(client, rollout_id, shown, detached), \
                rollout_client.detached_code(why)
        record, code = _run(followed())
        ended(shown, rollout_shared.rollout_id_of(rollout_id), record, code)
        return

    async def read() -> dict[str, Any]:
        return await rollout_client.read(await rollout_client.connect(where), rollout_id)
    record = _run(read())
    if as_json:
        click.echo(json.dumps(visible(redact.data(record)), indent=2))
        return
    _show(record)


def _show(record: dict[str, Any]) -> None:
    """A rollout for people: what, when, by whom, how far; the budget; then one line per host."""
    budget = record.get("budget") or {}
    hosts = record.get("hosts") or {}
    say(f"rollout {record.get('id')}: {record.get('playbook')} on {len(hosts)} host(s), started "
        f"{_when(record.get('started'))} by {record.get('started_by')}: {record.get('state')}")
    if budget:
        limit = budget.get("max_fail_percent") or 0
        say(f"  batches {' then '.join(str(len(b)) for b in record.get('batches') or []) or '-'}"
            f"{' (--serial ' + str(budget['serial']) + ')' if budget.get('serial') else ''}; failure budget: "
            f"{record.get('failed', 0)} failed of {sum(1 for h in hosts.values() if h.get('state') != 'nothing to do')}"
            f", stops at {limit:g}%{' (the first failure)' if not limit else ''}"
            f"{'; --rollback-fleet-on-abort' if budget.get('rollback_fleet_on_abort') else ''}")
    if record.get("aborted"):
        say(f"  stopped: {record['aborted']}")
    if record.get("partial"):
        say("  (no worker answered: each host's state from the workflow's memo, without messages)")
    rows = [{"host": h, "state": r.get("state"), "run": r.get("run_id") or "-", "message": r.get("message") or ""}
            for h, r in hosts.items()]
    if rows:
        click.echo("\n".join(table_lines(rows, width=shutil.get_terminal_size().columns, terminal=sys.stdout.isatty())))


def say(text: str) -> None:
    click.echo(visible(redact.text(text)))  # hosts' messages come from hosts: shown inert


def _when(stamp: Any) -> str:
    try:
        return datetime.fromtimestamp(float(stamp), UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return "-"


__all__ = ["apply", "backend_options", "chosen", "rollouts"]
