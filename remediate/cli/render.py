"""Everything remediate shows: JSON Lines events for automation, rich text for people."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from remediate import redact
from remediate.cli import plainconsole, render_table
from remediate.cli.output import JsonRenderer, graph_lines, plain, table_lines, verdict, visible  # noqa: F401 - JsonRenderer: re-exported
from remediate.contract.plan import PlanStatus, ShownPlan
from remediate.engine import events
from remediate.engine.events import Event
from remediate.engine.outcome import Action, RunEnd
from remediate.engine.outcome import Status as HostStatus

if TYPE_CHECKING:  # rich (a terminal's, or what is not a line of text), and diagnose's helpers: imported when used
    from rich.console import Console
    from rich.live import Live
    from rich.status import Status
    from rich.table import Table

    from remediate.api.catalog import Described


def escape(text: str) -> str:
    """text shown literally by rich: every '[' escaped, backslashes kept (rich's own escape eats the one in '\\['),
    and a trailing backslash doubled so that it cannot escape the markup that follows."""
    text = text.replace("[", "\\[")
    return text + "\\" if text.endswith("\\") else text


SYMBOL: Final = {PlanStatus.OK: "[green]✓[/]", PlanStatus.CHANGE: "[yellow]~[/]", PlanStatus.CHECK: "[cyan]?[/]"}
#: The group every inventory has, at the top of `inventory --graph`'s tree.
ROOT_GROUP: Final = "all"
#: A unified diff's lines by their first characters, in the colours of rich's diff lexer under ansi_dark.
DIFF_STYLES: Final = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))
_INIT_FIELDS: dict[type, list[str]] = {}  # shown's field names per record type
_AS_IS: Final = frozenset({int, float, bool, type(None)})  # shown as they are (unless a secret's)


def shown(value: Any, secret: bool = False) -> Any:
    """An event (or a field of one) as it may be shown: every secret masked (all of what a secret-named key holds:
    secret) and every control character made visible, its types kept (typed records field by field, Enums as
    they are). What needs neither is returned as it is, not copied (most of a run's events)."""
    kind = type(value)
    if kind is str:  # most of what is shown: first
        return visible(redact.MASK if secret and value else redact.text(value))
    if (kind in _AS_IS and not (secret and value)) or isinstance(value, Enum):
        return value
    if is_dataclass(value) and not isinstance(value, type):
        names = _INIT_FIELDS.get(type(value)) or _INIT_FIELDS.setdefault(type(value), [f.name for f in fields(value) if f.init])
        changed = {n: new for n in names if (new := shown(old := getattr(value, n), secret)) is not old}
        return replace(value, **changed) if changed else value
    if isinstance(value, (list, tuple)):
        items = [shown(v, secret) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
    if isinstance(value, Mapping):
        masked = {k: shown(v, secret or redact.is_secret_key(str(k))) for k, v in value.items()}
        return value if type(value) is dict and all(masked[k] is v for k, v in value.items()) else masked
    return visible(redact.MASK if secret and value else redact.data(value))


class HumanRenderer:
    """Coloured diffs, a line per step, a summary per host."""

    def __init__(self, console: Console | None = None, errors: Console | None = None) -> None:  # rich's, or plain ones
        self.out: Console | plainconsole.PlainConsole = console or plainconsole.console()
        self.err: Console | plainconsole.PlainConsole = errors or plainconsole.console(stderr=True)
        self.live: Status | None = None
        self.fleet: FleetView | None = None
        self._lock = threading.RLock()
        self._said: list[str] = []  # errors already on screen: a later line refers to them instead of repeating
        self._groups: dict[str, Mapping[str, Any]] = {}  # inventory groups come one by one; the tree is drawn whole

    def __call__(self, given: Event | Mapping[str, Any]) -> None:
        """Show one event (a mapping: its JSON form, as read back, is taken as that event)."""
        with self._lock:  # hosts run in threads: one event on screen at a time
            event = given if isinstance(given, Event) else Event.parse(given)
            if self.fleet is not None and self.fleet.take(event):
                return  # masked there, only what the fleet's view shows of it
            event = shown(event)
            if self.live is not None and not isinstance(event, events.StepStarted):
                self.live.stop()  # the step's live line gives way to its result
                self.live = None
            handler = HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)

    def _rollout_started(self, e: events.RolloutStarted) -> None:
        self.fleet = FleetView(self, e.hosts, e.mode)
        serial = f", batches {e.serial}" if e.serial else ""
        budget = f", at most {e.max_fail_percent:g}% failing" if e.max_fail_percent else ""
        self.out.print(f"[bold]{e.mode}[/] on {len(e.hosts)} hosts, {e.forks} at a time{serial}{budget}")

    def _plan_group(self, e: events.PlanGroup) -> None:
        hosts = e.hosts
        named = ", ".join(hosts[:8]) + (f" and {len(hosts) - 8} more" if len(hosts) > 8 else "")
        what = ("error: " + str(e.error)) if e.error else (
            f"{e.changed} step(s) to change" if e.changed else "nothing to do")
        self.out.print(f"[bold]{len(hosts)} host{'s' if len(hosts) > 1 else ''}[/] ({escape(named)}): {escape(what)}")
        for step in e.steps:
            self._plan(step, brief=False)

    def _rollout_aborted(self, e: events.RolloutAborted) -> None:
        rolled = "; the hosts it fixed are rolled back" if e.fleet_rolled_back else ""
        self.err.print(f"[red]rollout stopped:[/] {escape(e.reason)}; not started: "
                       f"{escape(', '.join(e.skipped) or 'none')}{rolled}")

    def _working(self, host: str, step: str, action: Action) -> None:
        """On a terminal, a live line while a step is applied, verified or checked."""
        if not isinstance(self.out, plainconsole.PlainConsole) and self.out.is_terminal:
            verb = {Action.APPLY: "applying", Action.VERIFY: "verifying"}.get(action, "checking")
            self.live = self.out.status(f"{verb} [bold]{escape(step)}[/] on {escape(host)}")
            self.live.start()

    def _run_started(self, e: events.RunStarted) -> None:
        self.out.print(f"[bold]{e.mode}[/] {escape(str(e.playbook))} on [bold]{escape(e.host)}[/]  [dim](run {e.run_id})[/]")

    def _step_planned(self, e: events.StepPlanned) -> None:
        self._plan(e.plan, brief=bool(e.brief))

    def _plan(self, plan: ShownPlan, *, brief: bool) -> None:
        """One step's plan: what it will do and why; unless brief, its diffs, commands and checks under it."""
        label = {PlanStatus.OK: "nothing to do", PlanStatus.CHANGE: "will change", PlanStatus.CHECK: "will check"}[plan.status]
        self.out.print(f"  {SYMBOL[plan.status]} [bold]{escape(plan.step)}[/] [dim]({plan.kind} on {escape(plan.target)})[/] "
                       f"{label}: {escape(plan.reason)}")
        if brief:
            return
        for d in plan.diffs:  # indented under its step
            self.diff(d.diff, indent=6)
        for c in plan.commands:
            self.out.print(f"      [dim]$[/] {escape(c)}")
        for c in plan.checks:
            self.out.print(f"      [dim]check:[/] {escape(c)}")

    def diff(self, text: str, *, indent: int = 0) -> None:
        """A unified diff, one line at a time and coloured: never cropped or wrapped to the console's width, and never
        padded with spaces (a pipe gets the lines exactly, however long; a terminal folds them itself)."""
        for line in text.rstrip("\n").split("\n"):
            style = next((s for prefix, s in DIFF_STYLES if line.startswith(prefix)), "")
            plainconsole.styled(self.out, " " * indent + line, style)

    def _step_applied(self, e: events.StepApplied) -> None:
        self.out.print(f"  [green]✔[/] [bold]{escape(e.step)}[/] applied [dim]({e.duration:.2f} s)[/]")
        self._working(e.host, e.step, Action.VERIFY)

    def _step_verified(self, e: events.StepVerified) -> None:
        self.out.print(f"  [green]✔[/] [bold]{escape(e.step)}[/] verified: {escape(e.message)} [dim]({e.duration:.2f} s)[/]")

    def _step_failed(self, e: events.StepFailed) -> None:
        self._said.append(e.error)
        self.err.print(f"  [red]✘ {escape(e.step)} failed:[/] {escape(e.error)}")

    def _step_rolled_back(self, e: events.StepRolledBack) -> None:
        self.out.print(f"  [yellow]↺[/] [bold]{escape(e.step)}[/] rolled back: {escape(e.message)}")

    def _step_rollback_failed(self, e: events.StepRollbackFailed) -> None:
        self._said.append(e.error)
        self.err.print(f"  [red]✘ rollback of {escape(e.step)} FAILED:[/] {escape(e.error)}")

    def _command(self, e: events.Command) -> None:
        mark = "[green]0[/]" if e.exit_code == 0 else f"[red]{e.exit_code}[/]"
        self.err.print(f"    [dim]{escape(e.host)} $ {escape(e.command[:300])}[/] -> {mark} [dim]({e.duration:.3f} s)[/]")
        for stream, printed in (("out", e.stdout), ("err", e.stderr)):
            for line in (printed or "").splitlines()[-20:]:
                self.err.print(f"      [dim]{stream}:[/] {escape(line)}")

    def _inventory_group(self, e: events.InventoryGroup) -> None:
        """One group of `inventory --graph`. Groups that name their child groups are drawn as one tree, as
        `ansible-inventory --graph` does, once every group it reaches has come; others each with all their hosts."""
        if e.children is None:
            self.out.print(f"@{escape(e.group)}:")
            for host in e.hosts:
                self.out.print(f"  |--{escape(host)}")
            return
        self._groups[e.group] = {"children": e.children, "direct_hosts": e.direct_hosts}
        named = {child for g in self._groups.values() for child in g["children"]}
        if ROOT_GROUP in self._groups and named <= self._groups.keys():
            for line in graph_lines(self._groups, ROOT_GROUP):
                self.out.print(escape(line))
            self._groups = {}

    def _inventory_host(self, e: events.InventoryHost) -> None:
        self.out.print(f"[bold]{escape(e.host)}[/] {escape(e.user or '')}@{escape(e.address)}:"
                       f"{e.port or 22}{'  (sudo)' if e.become else ''}")
        width = max((len(k) for k in e.vars), default=0)
        for key, item in e.vars.items():
            self.out.print(f"  {escape(key.ljust(width))} = {escape(json.dumps(item.value))}  [dim]{escape(item.origin)}[/]")

    def _validated(self, e: events.Validated) -> None:
        self.out.print(f"[green]✓[/] {escape(e.message)}")

    def _playbook(self, e: events.PlaybookListed) -> None:
        self.out.print(f"[bold]{escape(e.playbook)}[/]: {escape(str(e.description))}")
        self.out.print(f"  steps: {escape(', '.join(e.steps))}")
        for key, value in e.vars.items():
            self.out.print(f"  [dim]{escape(key)}[/] = {escape(json.dumps(value) if not isinstance(value, str) else value)}")
        self.out.print(f"  source: {escape(e.source or ('the shipped playbooks' if e.shipped else 'a folder of yours'))}")
        if not e.shipped:
            self.out.print(f"  file: {escape(e.path)}")
        if e.shadows:
            self.out.print(f"  hides: {escape(', '.join(e.shadows))}")

    def _notice(self, e: events.Notice) -> None:
        self.err.print(f"[yellow]![/] {escape(e.message)}")

    def _run_finished(self, e: events.RunFinished) -> None:
        colour = {RunEnd.APPLIED: "green", RunEnd.NO_OP: "green", RunEnd.ROLLED_BACK: "yellow"}.get(e.outcome, "red")
        # The why comes once, in the summary line that follows (JSON keeps it in this event too).
        self.out.print(f"[{colour}]{escape(e.host)}: {e.outcome}[/]  [dim](run {e.run_id}, exit {e.exit_code})[/]")

    def _summary(self, e: events.Summary) -> None:
        colour = "green" if e.exit_code == 0 else ("yellow" if e.status == HostStatus.PENDING else "red")
        self.out.print(f"[{colour}]{escape(e.host)}: {escape(self._once(e.message))}[/]")

    def _once(self, message: str) -> str:
        """message with every error already on screen replaced by a reference to it."""
        for said in self._said:
            message = message.replace(f": {said}", " (see above)").replace(said, "(see above)")
        return message

    def error(self, message: str, exit_code: int) -> None:
        self.err.print(f"[red]error:[/] {escape(visible(redact.text(message)))}")

    def diagnosis(self, d: Any, again: str = "") -> None:
        """again: the options to repeat in the suggested next command (the -i that was used)."""
        from remediate.diagnostics.diagnose import counted
        found = verdict(d)
        self.out.print(f"[bold]diagnose[/] [bold]{escape(d.host)}[/]")
        if d.error:
            self.error(d.error, found.exit_code)
            return
        several, rows = len({c.playbook for c in d.checks}) > 1, []
        for c in d.checks:
            mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]–[/]"}[c.ok]
            name = f"{c.name} [dim]({escape(c.playbook)})[/]" if several else c.name
            rows.append((name, mark, escape(visible(redact.text(c.evidence)))))
        render_table.show(self.out, ("check", "", "evidence"), rows)
        for s in d.signatures:
            self.out.print(f"  log: {s.count} x {s.name} ({s.meaning}), {s.first} .. {s.last}, "
                           f"{len(s.bounced)} bounced, domains {counted(s.domains)}"
                           + (f", clients {counted(s.clients)}" if s.clients else ""))
        if found.healthy:
            self.out.print(f"[green]{escape(d.host)}: healthy[/]")
        else:
            def command(fix: str) -> str:
                given = " ".join(f"-e {k}={v}" for k, v in found.suggest.get(fix, {}).items())
                return " ".join(x for x in (f"remediate plan --host {d.host} -p {fix}", again, given) if x)
            fixes = ", ".join(command(f) for f in found.fixes) or "no playbook fixes this"
            self.out.print(f"[red]{escape(d.host)}: {found.findings} finding(s)[/]; next: {escape(fixes)}")

    def run_record(self, record: dict[str, Any]) -> None:
        r = visible(redact.data(record))
        self.out.print(f"[bold]run {escape(str(r['run_id']))}[/] {escape(str(r.get('playbook')))} on "
                       f"[bold]{escape(str(r.get('host')))}[/] by {escape(str(r.get('operator')))}: "
                       f"{escape(str(r.get('outcome')))}  [dim]({r.get('started')} .. {r.get('finished')})[/]")
        for step in r.get("steps") or []:
            self.out.print(f"  [bold]{escape(step['id'])}[/] ({escape(step.get('kind', '?'))}): {escape(step.get('state', '?'))}"
                           f"{' - ' + escape(str(step['reason'])) if step.get('reason') else ''}")
            for f in step.get("files") or []:
                self.out.print(f"      file {escape(str(f.get('path')))}: sha256 {str(f.get('before_sha256'))[:12]} -> "
                               f"{str(f.get('after_sha256'))[:12]}, before-image {escape(str(f.get('backup')))}")
            for c in step.get("commands") or []:
                self.out.print(f"      [dim]$[/] {escape(str(c.get('command')))} -> {c.get('exit_code')}")
            for key in ("verified", "error", "rolled_back", "rollback_error"):
                if step.get(key):
                    self.out.print(f"      {key.replace('_', ' ')}: {escape(str(step[key]))}")

    def kinds(self, kinds: list[Described], *, detail: bool) -> None:
        if not detail:
            width = max(len(k.name) for k in kinds)
            for k in kinds:
                origin = "" if not k.plugin else f"  [dim]({escape(k.package)})[/]"
                self.out.print(f"{escape(k.name).ljust(width)}  {escape(k.summary)}{origin}")
            return
        k = kinds[0]
        self.out.print(f"[bold]{escape(k.name)}[/]: {escape(k.summary)}  [dim](from {escape(k.package)})[/]")
        for p in k.params:
            need = "required" if p.required else f"default {p.default!r}"
            self.out.print(f"  {escape(p.name)} ({escape(p.type)}, {escape(need)}){': ' + escape(p.help) if p.help else ''}")
        self.out.print("example:")
        from rich.syntax import Syntax
        self.out.print(Syntax(k.example, "yaml", theme="ansi_dark", background_color="default"))

    def table(self, title: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            self.out.print("no runs recorded")
            return
        lines = table_lines(rows, width=self.out.width, terminal=self.out.is_terminal)
        self.out.file.write("".join(line + "\n" for line in lines))  # as is: no markup, tabs kept


class FleetView:
    """Several hosts at once: their plans are shown grouped (plan_group), and while they apply, a table with one
    row per host (step, state, time), live on a terminal, else a line per host and step; a summary at the end."""

    QUIET: Final = (events.RunStarted, events.StepPlanned, events.RunFinished)
    #: A step event's state in its host's row (step_started: applying or checking, by its action).
    STATES: Final[Mapping[type[Event], str]] = {
        events.StepApplied: "applied", events.StepVerified: "verified", events.StepFailed: "FAILED",
        events.StepRolledBack: "rolled back", events.StepRollbackFailed: "ROLLBACK FAILED",
        events.StepRollbackSkipped: "skipped"}

    def __init__(self, renderer: HumanRenderer, hosts: list[str], mode: str) -> None:
        self.r, self.mode, self.terminal = renderer, mode, renderer.out.is_terminal  # asked once: a syscall each time
        self.rows: dict[str, dict[str, Any]] = {h: {"step": "", "state": "planned", "since": None} for h in hosts}
        self.live: Live | None = None
        self.summaries: list[events.Summary] = []

    def take(self, e: Event) -> bool:
        """True when the event is shown here (or deliberately not at all); False: the renderer shows it as usual.
        e as it came: only what a host's row shows of it is masked (shown), 13 events a host. A fleet's plans come
        grouped (plan_group): each host's (RunStarted, StepPlanned) is neither shown nor masked."""
        host = shown(getattr(e, "host", ""))
        if isinstance(e, self.QUIET) and host in self.rows:
            if isinstance(e, events.RunFinished) and self.rows[host]["since"] is not None:  # it applied: its row ends
                self._row(host, state=shown(e.outcome), step="")
            return True
        if isinstance(e, events.Summary) and host in self.rows:
            self.summaries.append(shown(e))
            return True
        if isinstance(e, events.RolloutFinished):
            self._close()
            self.summary_table()
            return True
        if isinstance(e, events.StepStarted) and host in self.rows:
            self._row(host, step=shown(e.step), state="applying" if e.action == Action.APPLY else "checking",
                      detail="")
            return True
        if type(e) in self.STATES and host in self.rows:
            detail = getattr(e, "error", None) or getattr(e, "message", None) or ""
            self._row(host, step=shown(getattr(e, "step", "")), state=self.STATES[type(e)], detail=shown(detail))
            return True
        if isinstance(e, (events.RolloutAborted, events.Error)):
            self._close()
        return False

    def _close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def summary_table(self) -> None:
        """One row per host: how it ended, its run, and why."""
        rows = []
        for e in self.summaries:
            colour = "green" if e.exit_code == 0 else (
                "yellow" if e.status in (HostStatus.PENDING, HostStatus.SKIPPED) else "red")
            rows.append((escape(e.host), f"[{colour}]{escape(e.status)}[/]", escape(str(e.run_id or "")),
                         escape(self.r._once(e.message))))
        render_table.show(self.r.out, ("host", "status", "run", "message"), rows)

    def _row(self, host: str, **values: Any) -> None:
        row = self.rows[host]
        row.update(values)
        row["since"] = row["since"] or time.monotonic()
        out = self.r.out
        if self.terminal and not isinstance(out, plainconsole.PlainConsole):
            if self.live is None:
                from rich.live import Live
                self.live = Live(self.table(), console=out, refresh_per_second=8)
                self.live.start()
            self.live.update(self.table())
            return
        detail = f": {values['detail']}" if values.get("detail") else ""
        what = " ".join(x for x in (str(row["step"]), str(row["state"])) if x)
        plain(out, f"{host}  {what}{detail}")

    def table(self) -> Table:
        from rich.table import Table
        table = Table(show_header=True, header_style="bold", expand=False)
        for column in ("host", "step", "state", "time"):
            table.add_column(column)
        for host, row in self.rows.items():
            spent = f"{time.monotonic() - row['since']:.1f} s" if row["since"] else ""
            colour = "red" if "FAIL" in row["state"] else "green" if row["state"] in ("verified", "applied") else ""
            state = f"[{colour}]{escape(row['state'])}[/]" if colour else escape(row["state"])
            table.add_row(escape(host), escape(row["step"]), state, spent)
        return table


#: Which of HumanRenderer's methods shows each event (one it does not name is not shown to people).
HANDLERS: Final[Mapping[type[Event], Callable[[HumanRenderer, Any], None]]] = {
    events.RolloutStarted: HumanRenderer._rollout_started, events.PlanGroup: HumanRenderer._plan_group,
    events.RolloutAborted: HumanRenderer._rollout_aborted,
    events.RunStarted: HumanRenderer._run_started, events.StepPlanned: HumanRenderer._step_planned,
    events.StepApplied: HumanRenderer._step_applied, events.StepVerified: HumanRenderer._step_verified,
    events.StepFailed: HumanRenderer._step_failed, events.StepRolledBack: HumanRenderer._step_rolled_back,
    events.StepRollbackFailed: HumanRenderer._step_rollback_failed, events.Command: HumanRenderer._command,
    events.InventoryGroup: HumanRenderer._inventory_group, events.InventoryHost: HumanRenderer._inventory_host,
    events.Validated: HumanRenderer._validated, events.PlaybookListed: HumanRenderer._playbook,
    events.Notice: HumanRenderer._notice, events.RunFinished: HumanRenderer._run_finished,
    events.Summary: HumanRenderer._summary, events.StepStarted: lambda r, e: r._working(e.host, e.step, e.action),
}
