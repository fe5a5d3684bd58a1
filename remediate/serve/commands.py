"""`remediate serve` and the commands that talk to it: incidents, approve, deny, pause, resume.

The web stack is imported only by `serve` itself."""

from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path
from typing import Any

import click

from remediate.cli.output import visible
from remediate.errors import InputError, RemediateError
from remediate.serve import client as client_mod

#: serve's files (the database, its -wal and -shm, the lock, journals, saved playbook copies) are its own alone.
UMASK = 0o077


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {value!r} is not ADDRESS:PORT", hint=f"for example {client_mod.DEFAULT_LISTEN}")
    return host, int(port)


def _state_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "remediate" / "serve"


def _password(host: Any) -> str:
    from remediate.redact import BECOME_PASSWORD_ENV as PASSWORD_ENV
    secret = os.environ.get(PASSWORD_ENV)
    if not secret:
        raise RemediateError(f"{host.name}: sudo needs a password and serve asks no one", hint=f"export {PASSWORD_ENV}")
    return secret


def one_line(value: Any) -> str:
    """A value on one terminal line: control characters made visible (output.visible), a newline as ^J too, so
    that an alert's label, a receiver or an approver's name can neither drive the terminal nor forge a line."""
    return str(visible(str(value))).replace("\n", "^J")


def log_line(incident_id: int, what: str, detail: str) -> str:
    """One decision as serve prints it to stderr: always exactly one line."""
    return one_line(f"incident {incident_id}: {what}{': ' + detail if detail else ''}")


def incident_row(*cells: Any) -> str:
    """One line of `remediate incidents`: id, state, alert, host, run and reason in columns, nothing trailing."""
    number, state, alert, host, run, reason = (one_line(c) for c in cells)
    return f"{number:>5}  {state:<16} {alert:<24} {host:<18} {run:<24} {reason}".rstrip()


def register(cli: click.Group, reports_errors: Any) -> None:
    @cli.command()
    @click.option("--rules", "rules_path", type=click.Path(path_type=Path), required=True,
                  help="The rules file: which alerts run which playbook (docs/serve.md).")
    @click.option("-i", "--inventory", type=click.Path(path_type=Path), default=None,
                  help="Inventory file (default: $REMEDIATE_INVENTORY or ./inventory.yml).")
    @click.option("--listen", default=client_mod.DEFAULT_LISTEN, show_default=True, metavar="ADDRESS:PORT")
    @click.option("--state-dir", type=click.Path(path_type=Path), default=None,
                  help="Where the incidents database lives (default: $XDG_STATE_HOME/remediate/serve).")
    @click.option("--token-file", type=click.Path(path_type=Path), default=None,
                  help=f"The API's bearer token (default: ${client_mod.TOKEN_ENV}).")
    @click.option("--paused", is_flag=True, help="Start paused: alerts are recorded, nothing is run until POST /resume.")
    @click.option("--host-runs-per-hour", type=click.IntRange(1), default=6, show_default=True,
                  help="Incidents per host per hour, across rules; more are ignored as rate-limited.")
    @click.option("--max-body", type=click.IntRange(1024), default=1 << 20, show_default=True,
                  help="Largest request body accepted, in bytes.")
    @reports_errors
    def serve(rules_path: Path, inventory: Path | None, listen: str, state_dir: Path | None, token_file: Path | None,
              paused: bool, host_runs_per_hour: int, max_body: int) -> None:
        """Take Alertmanager webhooks and run the matching playbook: plan, approval, apply, and the alert's own
        `resolved` as the proof (docs/serve.md)."""
        try:
            import uvicorn

            from remediate.serve import app as app_mod
        except ImportError as e:
            raise RemediateError(f"serve needs its web stack: {e}", hint="pip install 'remediate[serve]'") from None
        from remediate import api as session
        from remediate.collector import started
        from remediate.inputs import inventory as inventory_mod
        from remediate.inputs.inventory import default_path
        from remediate.serve.engine import Engine
        from remediate.serve.notify import Notifier
        from remediate.serve.rules import load as load_rules
        from remediate.serve.runs import SessionRuns
        from remediate.serve.store import Store
        started()  # a server: the collector runs as usual from here

        os.umask(UMASK)  # before any file: the database's -wal and -shm, journals and plan copies included
        secret = client_mod.token(token_file)
        from remediate.serve.access import TOKEN_HINT, token_problem
        problem = token_problem(secret)
        if problem:
            raise InputError(problem, hint=TOKEN_HINT)
        address, port = _listen(listen)
        rules = load_rules(rules_path)
        inventory_path = inventory or default_path()
        inventory_mod.load(inventory_path)  # refused here, with file:line, rather than at the first alert
        directory = _state_dir(state_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
        held = open(directory / "serve.lock", "w")
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RemediateError(f"{directory}: another serve is using this state directory",
                                 hint="stop it, or give this one its own --state-dir") from None

        def say(incident_id: int, what: str, detail: str) -> None:
            click.echo(log_line(incident_id, what, detail), err=True)

        store = Store(directory / "incidents.db", echo=say)
        notifier = Notifier(rules.notify, store.log)
        factory = lambda opts, emit: session.ssh_factory(opts, emit, _password)  # noqa: E731
        engine = Engine(store, rules, inventory_path, SessionRuns(inventory_path, factory, directory), notifier,
                        host_runs_per_hour=host_runs_per_hour)
        registry, metrics, alerts = app_mod.metrics_for(engine)
        engine.metrics = metrics
        if paused:
            engine.pause("serve --paused")
        engine.announce = lambda line: click.echo(one_line(line), err=True)
        for line in engine.start():
            click.echo(f"recovered: {line}", err=True)
        app = app_mod.build(engine, secret, max_body=max_body, registry=registry, alerts=alerts)
        click.echo(f"serve: listening on http://{listen} with {len(rules.rules)} rule(s) from {rules_path}; "
                   f"inventory {inventory_path}; state {directory}{'; PAUSED' if engine.paused else ''}", err=True)
        # uvicorn stops on SIGTERM, puts back the handler it found and raises the signal again: with the default one,
        # that killed serve there, runs in flight included. This one only notes it, so that they finish.
        signals: list[int] = []
        previous = signal.signal(signal.SIGTERM, lambda sig, frame: signals.append(sig))
        why = "stopping"
        try:
            uvicorn.run(app, host=address, port=port, log_level="warning", access_log=False)
        except KeyboardInterrupt:
            why = "Ctrl-C"
            raise
        finally:
            why = "SIGTERM" if signals else why
            flight = engine.in_flight()
            click.echo(f"serve: {why}: no longer taking requests; "
                       + (f"waiting for {len(flight)} job(s) in flight to finish (an apply is never abandoned "
                          "half-way):" if flight else "nothing in flight"), err=True)
            for line in flight:
                click.echo(one_line(f"  {line}"), err=True)
            engine.stop()
            store.close()
            signal.signal(signal.SIGTERM, previous)
            click.echo(f"serve: stopped{f' ({len(flight)} job(s) finished)' if flight else ''}", err=True)

    def connect(server: str | None, token_file: Path | None) -> client_mod.Client:
        return client_mod.Client(client_mod.server(server), client_mod.token(token_file))

    server_option = click.option("--server", default=None, metavar="URL",
                                 help=f"serve's URL (default: ${client_mod.SERVER_ENV} or http://{client_mod.DEFAULT_LISTEN}).")
    token_option = click.option("--token-file", type=click.Path(path_type=Path), default=None,
                                help=f"The API's bearer token (default: ${client_mod.TOKEN_ENV}).")

    @cli.command()
    @server_option
    @token_option
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

    @cli.command()
    @click.argument("incident_id", type=int)
    @server_option
    @token_option
    @reports_errors
    def approve(incident_id: int, server: str | None, token_file: Path | None) -> None:
        """Approve a pending incident: serve applies exactly the plan it showed (or refuses, and plans afresh, if the
        host changed since)."""
        from remediate.engine.journal import operator
        done = connect(server, token_file).call("POST", f"/incidents/{incident_id}/approve", {"by": operator()})
        click.echo(one_line(f"incident {done['id']}: {done['state']} (approved by {done.get('approved_by')})"))

    @cli.command()
    @click.argument("incident_id", type=int)
    @click.option("--reason", required=True, help="Why: it goes into the incident's audit log.")
    @server_option
    @token_option
    @reports_errors
    def deny(incident_id: int, reason: str, server: str | None, token_file: Path | None) -> None:
        """Deny a pending incident: nothing is run."""
        from remediate.engine.journal import operator
        done = connect(server, token_file).call("POST", f"/incidents/{incident_id}/deny",
                                                {"by": operator(), "reason": reason})
        click.echo(one_line(f"incident {done['id']}: {done['state']} ({done.get('reason')})"))

    @cli.command()
    @click.option("--reason", default="", help="Why: shown with every alert ignored meanwhile, and on the page.")
    @server_option
    @token_option
    @reports_errors
    def pause(reason: str, server: str | None, token_file: Path | None) -> None:
        """The kill switch: serve changes no host until `remediate resume` (docs/serve.md, "The pause")."""
        from remediate.engine.journal import operator
        done = connect(server, token_file).call("POST", "/pause", {"by": operator(), "reason": reason})
        click.echo(one_line(f"serve paused ({done.get('paused_by') or operator()}): new alerts are recorded as ignored, "
                            "approvals are refused, and no apply or rollback starts until `remediate resume`"))

    @cli.command()
    @server_option
    @token_option
    @reports_errors
    def resume(server: str | None, token_file: Path | None) -> None:
        """Lift the pause: new alerts are handled again; incidents the pause held back wait in pending for approval."""
        from remediate.engine.journal import operator
        connect(server, token_file).call("POST", "/resume", {"by": operator()})
        click.echo(one_line(f"serve resumed by {operator()}: incidents the pause held back are pending; "
                            "see `remediate incidents`"))
