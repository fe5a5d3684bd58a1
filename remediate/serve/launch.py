"""`remediate serve` itself: check the inputs, take the state directory, start the engine (or, with --backend temporal,
the Temporal worker: serve/temporal/launch.py) and the web app under uvicorn, and on SIGTERM (or Ctrl-C) stop taking
requests and let every job in flight finish. Imported by the serve command alone: it pulls in the web stack."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import click
import uvicorn

from remediate import api
from remediate.collector import started
from remediate.errors import InputError, RemediateError
from remediate.inputs import inventory as inventory_mod
from remediate.inputs.inventory import default_path
from remediate.serve import alertmanager, logs, slack_actions
from remediate.serve import app as app_mod
from remediate.serve import client as client_mod
from remediate.serve import roles as roles_mod
from remediate.serve.access import TOKEN_HINT, Proxy, token_problem
from remediate.serve.engine import Engine
from remediate.serve.identity import Tokens, state_folder
from remediate.serve.notify import Escalation, Notifier
from remediate.serve.rules import Rules
from remediate.serve.rules import load as load_rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.store import Store
from remediate.serve.temporal.options import TemporalOptions

LOG = logging.getLogger(__name__)

#: serve's files (the database, its -wal and -shm, the lock, journals, saved playbook copies) are its own alone.
UMASK: Final = 0o077
HEADER_NAME: Final = re.compile(r"^[A-Za-z0-9-]{1,64}\Z")


@dataclass(frozen=True)
class People:
    """serve's options about people and proof: where people reach it, the trusted proxy, Alertmanager, Slack."""

    public_url: str | None = None
    trust_user_header: str | None = None
    proxy_secret_file: Path | None = None
    alertmanager_url: str | None = None
    slack_signing_secret_file: Path | None = None
    #: How long Alertmanager must have been up before an alert absent from its API counts as resolved (seconds).
    alertmanager_grace: float = 120.0


@dataclass(frozen=True)
class Settings:
    """`remediate serve`'s options."""

    rules_path: Path
    inventory: Path | None
    listen: str
    state_dir: Path | None
    token_file: Path | None
    paused: bool
    host_runs_per_hour: int
    max_body: int
    log_level: str
    backend: str = "embedded"
    temporal: TemporalOptions | None = None
    people: People = People()


def listen_address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {value!r} is not ADDRESS:PORT", hint=f"for example {client_mod.DEFAULT_LISTEN}")
    return host, int(port)


state_dir = client_mod.state_dir


def password(host: Any) -> str:
    from remediate.redact import BECOME_PASSWORD_ENV as PASSWORD_ENV
    secret = os.environ.get(PASSWORD_ENV)
    if not secret:
        raise RemediateError(f"{host.name}: sudo needs a password and serve asks no one", hint=f"export {PASSWORD_ENV}")
    return secret


def serve(settings: Settings) -> None:
    """Run serve until SIGTERM or Ctrl-C; refused (RemediateError) before anything is written when an input is bad."""
    started()  # a server: the collector runs as usual from here
    os.umask(UMASK)  # before any file: the database's -wal and -shm, journals and plan copies included
    secret = client_mod.token(settings.token_file)
    problem = token_problem(secret)
    if problem:
        raise InputError(problem, hint=TOKEN_HINT)
    listen_address(settings.listen)  # refused here, before anything is written
    rules = load_rules(settings.rules_path)
    slack_actions.check(settings.people.slack_signing_secret_file, rules)  # before any write
    people = _people(settings.people, rules)  # refused here: a bad roles: node, an unreadable proxy secret
    inventory_path = settings.inventory or default_path()
    inventory_mod.load(inventory_path)  # refused here, with file:line, rather than at the first alert
    temporal = _temporal_launch() if settings.backend == "temporal" else None
    connection = temporal.connection(settings.temporal or TemporalOptions()) if temporal else None
    directory = state_dir(settings.state_dir)
    held = _take(directory)
    people["tokens"] = Tokens(directory)
    try:
        people["tokens"].entries()  # an untrusted tokens.json (a link, another user's, writable by others): refused now
    except BaseException:
        held.close()
        raise
    handler = logs.configure(settings.log_level)
    try:
        started_line = (f"serve: listening on http://{settings.listen} with {len(rules.rules)} rule(s) from "
                        f"{settings.rules_path}; inventory {inventory_path}; state {directory}")
        if temporal is not None and connection is not None:
            runs = LibraryRuns(inventory_path, _factory, directory)
            address, port = listen_address(settings.listen)
            temporal.serve(connection, rules, inventory_path, runs, secret=secret, max_body=settings.max_body,
                           paused=settings.paused, started_line=started_line,
                           run=lambda app, after: until_stopped(app, address, port, after),
                           host_runs_per_hour=settings.host_runs_per_hour, web=people, people=settings.people,
                           listen=settings.listen)
        else:
            _serve_embedded(settings, rules, inventory_path, directory, secret, started_line, people)
    finally:
        logs.unconfigure(handler)
        held.close()


def _people(options: People, rules: Rules) -> dict[str, Any]:
    """app.build's keywords about people: the rules file's roles, and the proxy serve trusts for the user's name
    (with its secret, or from loopback alone). The named tokens are added once the state directory is taken."""
    proxy = None
    if options.proxy_secret_file is not None and not options.trust_user_header:
        raise InputError("--proxy-secret-file goes with --trust-user-header HEADER",
                         hint="name the header your proxy sets, e.g. --trust-user-header X-Forwarded-User")
    if options.trust_user_header:
        if not HEADER_NAME.match(options.trust_user_header):
            raise InputError(f"--trust-user-header {options.trust_user_header!r} is not a header name")
        secret = client_mod.token(options.proxy_secret_file) if options.proxy_secret_file else None
        if secret is not None and token_problem(secret):
            raise InputError(f"--proxy-secret-file {options.proxy_secret_file}: {token_problem(secret)}", hint=TOKEN_HINT)
        proxy = Proxy(options.trust_user_header, secret)
        if secret is None:
            click.echo(f"serve: trusting {options.trust_user_header} from loopback peers only (no --proxy-secret-file)",
                       err=True)
    return {"roles": roles_mod.load(rules), "proxy": proxy}


def _temporal_launch() -> Any:
    """serve/temporal/launch.py, or the extra to install when the Temporal SDK is missing."""
    try:
        from remediate.serve.temporal import launch as temporal_launch
    except ImportError as e:
        if not (e.name or "").startswith("temporalio"):
            raise
        raise RemediateError(f"serve --backend temporal needs the Temporal SDK: {e}",
                             hint="pip install 'remediate[temporal]'") from None
    return temporal_launch


def _serve_embedded(settings: Settings, rules: Rules, inventory_path: Path, directory: Path, secret: str,
                    started_line: str, people: dict[str, Any]) -> None:
    store = Store(directory / "incidents.db")
    engine = _engine(settings, store, rules, inventory_path, directory)
    chat = slack_actions.wire(settings.people.slack_signing_secret_file, settings.people.public_url, rules, store)
    registry, metrics, alerts = app_mod.metrics_for(engine)
    engine.metrics = metrics
    Escalation(store, lambda name: engine.rules.named(name)).watch()
    alertmanager.wire(engine, settings.people.alertmanager_url, settings.people.alertmanager_grace,
                      settings.people.public_url or f"http://{settings.listen}")
    for line in engine.start():
        click.echo(f"recovered: {line}", err=True)
    app = app_mod.build(engine, secret, max_body=settings.max_body, registry=registry, alerts=alerts, **people)
    app.state.slack = chat  # POST /slack/actions (slack_actions.py)
    click.echo(f"{started_line}{'; PAUSED' if engine.paused else ''}", err=True)
    address, port = listen_address(settings.listen)
    until_stopped(app, address, port, lambda why: _engine_stopped(why, engine, store))


def _take(directory: Path) -> IO[str]:
    """The state directory, 0700, locked for this serve alone (the lock is held while the file is open). Trusted as
    the state home is (identity.state_folder): a real folder of this user's that nobody else can write, under
    folders nobody else can rename it in, so nothing is made in, or followed through, a folder another user
    controls (root with a HOME sudo kept)."""
    directory = state_folder(directory)
    directory.chmod(0o700)
    held = open(directory / "serve.lock", "w")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        raise RemediateError(f"{directory}: another serve is using this state directory",
                             hint="stop it, or give this one its own --state-dir") from None
    return held


def _factory(opts: api.Options, emit: Any) -> Any:
    return api.ssh_factory(opts, emit, password)


def _engine(settings: Settings, store: Store, rules: Rules, inventory_path: Path, directory: Path) -> Engine:
    engine = Engine(store, rules, inventory_path, LibraryRuns(inventory_path, _factory, directory),
                    Notifier(rules.notify, store.log), host_runs_per_hour=settings.host_runs_per_hour)
    if settings.paused:
        engine.pause("serve --paused")
    engine.announce = lambda line: click.echo(logs.one_line(line), err=True)
    return engine


def until_stopped(app: Any, address: str, port: int, after: Callable[[str], None]) -> None:
    """uvicorn until it stops; then `after(why)` (SIGTERM, Ctrl-C or stopping) finishes what is in flight."""
    # uvicorn stops on SIGTERM, puts back the handler it found and raises the signal again: with the default one,
    # that killed serve there, runs in flight included. This one only notes it, so that they finish.
    signals: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: signals.append(sig))
    why = "stopping"
    try:
        # an open page's live stream ends within 15 s; a stopping serve waits for it at most 5 s
        uvicorn.run(app, host=address, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    except KeyboardInterrupt:
        why = "Ctrl-C"
        raise
    finally:
        try:
            after("SIGTERM" if signals else why)
        finally:
            signal.signal(signal.SIGTERM, previous)


def _engine_stopped(why: str, engine: Engine, store: Store) -> None:
    """Every job in flight finishes, said on stderr, before serve exits."""
    flight = engine.in_flight()
    click.echo(f"serve: {why}: no longer taking requests; "
               + (f"waiting for {len(flight)} job(s) in flight to finish (an apply is never abandoned "
                  "half-way):" if flight else "nothing in flight"), err=True)
    for line in flight:
        click.echo(logs.one_line(f"  {line}"), err=True)
    engine.stop()
    store.close()
    click.echo(f"serve: stopped{f' ({len(flight)} job(s) finished)' if flight else ''}", err=True)
