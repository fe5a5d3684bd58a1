"""The command line's frame: the `remediate` group, the options commands share, rendering, and the one place a
RemediateError becomes a message and an exit code. The commands are in run_commands.py and inspect_commands.py."""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from remediate import __version__
from remediate.cli.output import JsonRenderer
from remediate.engine import events
from remediate.errors import EXIT_ERROR, RemediateError
from remediate.redact import BECOME_PASSWORD_ENV

if TYPE_CHECKING:  # the heavy modules (SSH, rich, YAML) are imported by the commands that use them
    from remediate.cli.render import HumanRenderer
    from remediate.engine.options import Options
    from remediate.engine.outcome import Outcome
    from remediate.inputs.inventory import Host


def library() -> None:
    """Before a command calls the library (SSH, YAML, playbooks; imported then, not to print help): from here on
    the cycle collector runs as usual."""
    from remediate.collector import started
    started()


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
    return cast("HumanRenderer", LazyHuman())


class LazyHuman:
    """The human renderer, made when it first shows something (rich, for a terminal, is imported then, while a plan's
    first connections are being made; a pipe never needs it: cli/plainconsole). Everything else is the renderer's."""

    def __init__(self) -> None:
        self._made: HumanRenderer | None = None
        self._lock = threading.Lock()

    def _real(self) -> HumanRenderer:
        with self._lock:  # the first event may come from several hosts' threads at once
            if self._made is None:
                from remediate.cli.render import HumanRenderer
                self._made = HumanRenderer()
            return self._made

    def __call__(self, event: Any) -> None:
        self._real()(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)


def finish(render: JsonRenderer | HumanRenderer, outcomes: list[Outcome]) -> None:
    """One summary per host, the rollout's counts over several, and the exit code the outcomes make."""
    from remediate import api
    for outcome in outcomes:
        render(events.Summary(outcome.host, outcome.status, outcome.exit_code, outcome.run_id, outcome.message))
    code = api.exit_code(outcomes)
    if len(outcomes) > 1:
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        render(events.RolloutFinished(len(outcomes), counts, code))
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
            allow_unused_vars: bool = False, **selection: Any) -> Options:
    """The library's Options from the command line's; --host is required."""
    if not hosts:
        raise click.UsageError("Missing option '--host'.")
    library()
    from remediate.engine.options import Options
    return Options(inventory=inventory or default_path(), hosts=hosts, playbook=playbook, extra=extra,
                   accept_new_host_keys=accept_new_host_keys, break_lock=break_lock, verbose=verbose,
                   refuse_unused_vars=not allow_unused_vars, **rollout(selection), **selection)


def fleet_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--forks for plan and apply; apply and `plan --out` also take the rollout's batches and failure budget (a
    saved plan keeps them, as part of what was reviewed)."""
    func = click.option("--forks", type=int, default=20, show_default=True, metavar="N",
                        help="Hosts worked on at the same time.")(func)
    if func.__name__ not in ("apply", "plan"):
        return func
    func = click.option("--rollback-fleet-on-abort", is_flag=True,
                        help="When the rollout stops, roll back the hosts it already fixed, newest first.")(func)
    func = click.option("--max-fail-percent", type=float, default=None, metavar="P",
                        help="The rollout stops once failures reach P% of its hosts, counted over the whole "
                             "rollout (default 0: the first failure); then no new host starts.")(func)
    return click.option("--serial", default=None, metavar="N,M,P%",
                        help="Canary batches, e.g. 1,5,20%: one host, then 5, then 20% at a time; each batch starts "
                             "once the one before has verified.")(func)


def rollout_given(selection: dict[str, Any]) -> str | None:
    """The first rollout option (batches, failure budget) given on the command line, by its flag; None if none."""
    for key, default in (("serial", None), ("max_fail_percent", None), ("rollback_fleet_on_abort", False)):
        if selection.get(key, default) != default:
            return "--" + key.replace("_", "-")
    return None


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


class Commands(click.Group):
    """remediate's commands, some of them (serve's, rollouts) registered by their module only when one is asked for
    or listed: a local plan or apply imports neither serve nor logging."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, Callable[[], None]] = {}

    def later(self, names: tuple[str, ...], register: Callable[[], None]) -> None:
        """Commands names, which register() adds to this group when one of them is first needed."""
        self.lazy.update(dict.fromkeys(names, register))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        register = self.lazy.get(cmd_name) if cmd_name not in self.commands else None
        if register is not None:
            self.lazy = {name: other for name, other in self.lazy.items() if other is not register}
            register()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="remediate")
def cli() -> None:
    """Plan, apply, verify and roll back documented incident fixes over SSH.

    Exit codes: 0 done or nothing to do, 1 error (failed runs are rolled back),
    2 changes pending (plan), 3 findings, 4 rollback incomplete, 5 rollout stopped
    (failure budget exceeded; hosts not started were skipped), 6 rollout stopped and
    the hosts it had fixed rolled back.
    """


