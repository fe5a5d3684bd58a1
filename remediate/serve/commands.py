"""`remediate serve` and the commands that talk to it: incidents, approve, deny, pause, resume.

The web stack is imported only by `serve` itself (launch.py)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import click

from remediate.cli.backend import refuse_stray_temporal_options, temporal_options
from remediate.errors import InputError, RemediateError
from remediate.serve import client as client_mod
from remediate.serve.logs import LEVELS, log_line, one_line
from remediate.serve.temporal.options import TemporalOptions

__all__ = ["incident_row", "log_line", "one_line", "register"]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

SERVER_OPTION: Final = click.option(
    "--server", default=None, metavar="URL",
    help=f"serve's URL (default: ${client_mod.SERVER_ENV} or http://{client_mod.DEFAULT_LISTEN}).")
TOKEN_OPTION: Final = click.option("--token-file", type=click.Path(path_type=Path), default=None,
                                   help=f"Your named token, from `remediate serve tokens add` (default: "
                                        f"${client_mod.TOKEN_ENV}).")


STATE_OPTION: Final = click.option(
    "--state-dir", type=click.Path(path_type=Path), default=None,
    help="Where serve keeps its incidents database and its people's tokens (default: $XDG_STATE_HOME/remediate/serve).")
CHAT_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")


def incident_row(*cells: Any) -> str:
    """One line of `remediate incidents`: id, state, alert, host, run and reason in columns, nothing trailing."""
    number, state, alert, host, run, reason = (one_line(c) for c in cells)
    return f"{number:>5}  {state:<16} {alert:<24} {host:<18} {run:<24} {reason}".rstrip()


def connect(server: str | None, token_file: Path | None) -> client_mod.Client:
    return client_mod.Client(client_mod.server(server), client_mod.token(token_file))


def register(cli: click.Group, reports_errors: Decorator) -> None:
    """serve, incidents, approve, deny, pause and resume, as commands of `cli`."""
    _register_serve(cli, reports_errors)
    _register_incidents(cli, reports_errors)
    _register_decisions(cli, reports_errors)
    _register_pause(cli, reports_errors)


#: serve's options about people and proof (docs/serve.md "People" and "Proof from Alertmanager").
PEOPLE_OPTIONS: Final = (
    click.option("--public-url", default=None, metavar="URL",
                 help="serve's own address as people reach it (links in chat messages and silence comments)."),
    click.option("--trust-user-header", default=None, metavar="HEADER",
                 help="Take the person from this header set by an authenticating proxy (e.g. X-Forwarded-User): only "
                      "with the proxy's --proxy-secret-file secret, or from a loopback peer when there is none."),
    click.option("--proxy-secret-file", type=click.Path(path_type=Path), default=None,
                 help="The secret the proxy sends as X-Remediate-Proxy-Secret with the user header."),
    click.option("--alertmanager", "alertmanager_url", default=None, metavar="URL",
                 help="Alertmanager's address: serve silences an alert while its fix runs and asks its API v2 "
                      "whether the alert resolved."),
    click.option("--alertmanager-grace", default="2m", show_default=True, metavar="DURATION",
                 help="With --alertmanager: how long Alertmanager must have been up before an alert absent from its "
                      "API counts as resolved (a restarted one lists nothing until Prometheus sends its alerts again: "
                      "twice Prometheus' resend interval)."),
    click.option("--slack-signing-secret-file", type=click.Path(path_type=Path), default=None,
                 help="Slack's signing secret: Approve/Deny buttons in chat are verified with it."),
)


def _grace(ctx: click.Context, value: str, alertmanager_url: str | None) -> float:
    """--alertmanager-grace in seconds; given without --alertmanager, a mistake said plainly."""
    if alertmanager_url is None and ctx.get_parameter_source("alertmanager_grace") == \
            click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--alertmanager-grace applies only with --alertmanager URL")
    from remediate.serve.rules import duration
    return duration(value, "--alertmanager-grace")


def people_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(PEOPLE_OPTIONS):
        f = option(f)
    return f


def _register_serve(cli: click.Group, reports_errors: Decorator) -> None:
    @cli.group(invoke_without_command=True)
    @click.option("--rules", "rules_path", type=click.Path(path_type=Path), default=None,
                  help="The rules file: which alerts run which playbook, and the roles: (docs/serve.md). Required.")
    @click.option("-i", "--inventory", type=click.Path(path_type=Path), default=None,
                  help="Inventory file (default: $REMEDIATE_INVENTORY or ./inventory.yml).")
    @click.option("--listen", default=client_mod.DEFAULT_LISTEN, show_default=True, metavar="ADDRESS:PORT")
    @STATE_OPTION
    @click.option("--token-file", type=click.Path(path_type=Path), default=None,
                  help=f"The shared token Alertmanager's webhook sends (it opens POST /alertmanager and GET /metrics "
                       f"alone; people use their own: `serve tokens`) (default: ${client_mod.TOKEN_ENV}).")
    @click.option("--paused", is_flag=True, help="Start paused: alerts are recorded, nothing is run until POST /resume.")
    @click.option("--host-runs-per-hour", type=click.IntRange(1), default=6, show_default=True,
                  help="Incidents per host per hour, across rules; more are ignored as rate-limited.")
    @click.option("--max-body", type=click.IntRange(1024), default=1 << 20, show_default=True,
                  help="Largest request body accepted, in bytes.")
    @click.option("--log-level", type=click.Choice(list(LEVELS)), default="info", show_default=True,
                  help="What serve logs to stderr (timestamped): info says every decision on every incident; "
                       "errors always come with their incident and traceback.")
    @click.option("--backend", type=click.Choice(["embedded", "temporal"]), default="embedded", show_default=True,
                  help="Where incidents live: embedded (SQLite in --state-dir, one serve) or temporal (workflows on a "
                       "Temporal cluster: run as many serve replicas as you like; docs/serve.md).")
    @people_options
    @temporal_options
    @click.pass_context
    @reports_errors
    def serve(ctx: click.Context, rules_path: Path | None, inventory: Path | None, listen: str, state_dir: Path | None,
              token_file: Path | None, paused: bool, host_runs_per_hour: int, max_body: int, log_level: str,
              backend: str, public_url: str | None, trust_user_header: str | None, proxy_secret_file: Path | None,
              alertmanager_url: str | None, slack_signing_secret_file: Path | None, alertmanager_grace: str,
              **temporal: Any) -> None:
        """Take Alertmanager webhooks and run the matching playbook: plan, approval, apply, and the alert's own
        `resolved` as the proof (docs/serve.md). `serve tokens` manages the people's named tokens."""
        if ctx.invoked_subcommand is not None:  # `serve --state-dir DIR tokens ...`: the tokens of DIR
            ctx.obj = {"state_dir": state_dir}
            return
        if rules_path is None:
            raise click.UsageError("Missing option '--rules'.")
        refuse_stray_temporal_options(ctx, backend)
        try:
            from remediate.serve import launch
        except ImportError as e:
            raise RemediateError(f"serve needs its web stack: {e}", hint="pip install 'remediate[serve]'") from None
        launch.serve(launch.Settings(
            rules_path, inventory, listen, state_dir, token_file, paused, host_runs_per_hour, max_body, log_level,
            backend, TemporalOptions(**{k.removeprefix("temporal_"): v for k, v in temporal.items()})
            if backend == "temporal" else None,
            launch.People(public_url, trust_user_header, proxy_secret_file, alertmanager_url,
                          slack_signing_secret_file, alertmanager_grace=_grace(ctx, alertmanager_grace,
                                                                               alertmanager_url))))

    _register_tokens(serve, reports_errors)


def _register_tokens(serve: click.Group, reports_errors: Decorator) -> None:
    @serve.group()
    def tokens() -> None:
        """People's named tokens, kept hashed in serve's state directory: add, list, revoke. A running serve sees a
        change at the next request."""

    @tokens.command("add")
    @click.argument("name")
    @click.option("--role", "roles", multiple=True, required=True, metavar="ROLE",
                  help="A role (the rules file's roles:, or admin: every permission); repeat for several.")
    @click.option("--slack", default=None, metavar="USERID", help="The person's Slack (or Mattermost) user id, "
                                                                   "so their chat approvals are theirs.")
    @STATE_OPTION
    @reports_errors
    def add(name: str, roles: tuple[str, ...], slack: str | None, state_dir: Path | None) -> None:
        """Make NAME's token and print it, once: serve keeps only its hash."""
        from remediate.serve.identity import Tokens
        if slack is not None and not CHAT_ID.match(slack):
            raise InputError(f"--slack {slack!r} is not a chat user id", hint="Slack's look like U0123ABCD")
        token = Tokens(_state(state_dir)).add(name, roles, {"slack": slack} if slack else None)
        click.echo(f"serve tokens: {name}'s token (roles {', '.join(roles)}) follows on stdout, shown only now: hand "
                   f"it to {name} (it goes in their --token-file or ${client_mod.TOKEN_ENV}); serve keeps its hash "
                   "alone", err=True)
        click.echo(token)

    @tokens.command("list")
    @click.option("--json", "as_json", is_flag=True, help="A JSON list (never a token or its hash).")
    @STATE_OPTION
    @reports_errors
    def list_(as_json: bool, state_dir: Path | None) -> None:
        """Every named token: its person, roles, chat ids, and when it was made or revoked."""
        from remediate.serve.identity import Tokens
        found = [e.public() for e in Tokens(_state(state_dir)).entries()]
        if as_json:
            click.echo(json.dumps(found, indent=2))
            return
        click.echo(f"{'name':<24} {'roles':<28} {'chat':<20} {'created':<20} revoked")
        for e in found:
            chat = ",".join(f"{k}:{v}" for k, v in e["chat"].items()) or "-"
            click.echo(one_line(f"{e['name']:<24} {','.join(e['roles']):<28} {chat:<20} {_when(e['created']):<20} "
                                f"{_when(e['revoked']) if e['revoked'] else '-'}").rstrip())

    @tokens.command()
    @click.argument("name")
    @STATE_OPTION
    @reports_errors
    def revoke(name: str, state_dir: Path | None) -> None:
        """Revoke NAME's token: refused by a running serve from its next request on, their page sessions included."""
        from remediate.serve.identity import Tokens
        if not Tokens(_state(state_dir)).revoke(name):
            raise InputError(f"{name} has no live token", hint="remediate serve tokens list")
        click.echo(f"serve tokens: {name}'s token is revoked", err=True)


def _state(state_dir: Path | None) -> Path:
    """The state directory of `serve tokens --state-dir`, else of `serve --state-dir DIR tokens`, else serve's
    default."""
    given = click.get_current_context().find_object(dict)
    return client_mod.state_dir(state_dir or (given or {}).get("state_dir"))


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _register_incidents(cli: click.Group, reports_errors: Decorator) -> None:
    @cli.command()
    @SERVER_OPTION
    @TOKEN_OPTION
    @click.option("--json", "as_json", is_flag=True, help="The API's JSON, a list of incidents.")
    @reports_errors
    def incidents(server: str | None, token_file: Path | None, as_json: bool) -> None:
        """The incidents a running serve holds, newest first."""
        found = connect(server, token_file).call("GET", "/incidents")
        if as_json:
            click.echo(json.dumps(found, indent=2))
            return
        if not found:
            click.echo("no incidents")
            return
        click.echo(incident_row("id", "state", "alert", "host", "run", "reason"))
        for i in found:  # everything from serve is shown inert: labels and diffs come from alerts and hosts
            click.echo(incident_row(i["id"], i["state"], i.get("alertname") or "-", i.get("host") or "-",
                                    i.get("run_id") or "-", i.get("reason") or ""))
            if i.get("state") == "pending" and i.get("plan_diff"):
                click.echo("".join(f"       {one_line(line)}\n" for line in str(i["plan_diff"]).splitlines()), nl=False)


def _register_decisions(cli: click.Group, reports_errors: Decorator) -> None:
    @cli.command()
    @click.argument("incident_id", type=int)
    @SERVER_OPTION
    @TOKEN_OPTION
    @reports_errors
    def approve(incident_id: int, server: str | None, token_file: Path | None) -> None:
        """Approve a pending incident's plan, shown first: serve applies exactly that plan (or refuses, and plans
        afresh, if the host changed since). A plan made after it was shown is never the one approved."""
        client = connect(server, token_file)
        shown = client.call("GET", f"/incidents/{incident_id}")
        identity = str(shown.get("plan_identity") or "") if isinstance(shown, dict) else ""
        if identity:  # everything from serve is shown inert: the diff comes from a host
            click.echo(one_line(f"incident {incident_id} on {shown.get('host')}: approving plan {identity[:12]}"))
            click.echo("".join(f"       {one_line(line)}\n" for line in str(shown.get("plan_diff") or "").splitlines()),
                       nl=False)
        # no plan shown (not pending, or not planned yet): a plan no incident holds, so serve refuses and says why
        done = client.call("POST", f"/incidents/{incident_id}/approve", {"plan_identity": identity or "none"})
        click.echo(one_line(f"incident {done['id']}: {done['state']} (approved by {done.get('approved_by')})"))

    @cli.command()
    @click.argument("incident_id", type=int)
    @click.option("--reason", required=True, help="Why: it goes into the incident's audit log.")
    @SERVER_OPTION
    @TOKEN_OPTION
    @reports_errors
    def deny(incident_id: int, reason: str, server: str | None, token_file: Path | None) -> None:
        """Deny a pending incident: nothing is run."""
        done = connect(server, token_file).call("POST", f"/incidents/{incident_id}/deny", {"reason": reason})
        click.echo(one_line(f"incident {done['id']}: {done['state']} ({done.get('reason')})"))


def _register_pause(cli: click.Group, reports_errors: Decorator) -> None:
    @cli.command()
    @click.option("--reason", default="", help="Why: shown with every alert ignored meanwhile, and on the page.")
    @SERVER_OPTION
    @TOKEN_OPTION
    @reports_errors
    def pause(reason: str, server: str | None, token_file: Path | None) -> None:
        """The kill switch: serve changes no host until `remediate resume` (docs/serve.md, "The pause")."""
        done = connect(server, token_file).call("POST", "/pause", {"reason": reason})
        click.echo(one_line(f"serve paused ({done.get('paused_by')}): new alerts are recorded as ignored, "
                            "approvals are refused, and no apply or rollback starts until `remediate resume`"))

    @cli.command()
    @SERVER_OPTION
    @TOKEN_OPTION
    @reports_errors
    def resume(server: str | None, token_file: Path | None) -> None:
        """Lift the pause: new alerts are handled again; incidents the pause held back wait in pending for approval."""
        connect(server, token_file).call("POST", "/resume", {})
        click.echo(one_line("serve resumed: incidents the pause held back are pending; "
                            "see `remediate incidents`"))
