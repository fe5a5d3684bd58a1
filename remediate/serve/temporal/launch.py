"""`remediate serve --backend temporal`: this process is an HTTP front end and a Temporal worker at once. It still
takes its --state-dir (plan copies) and that directory's lock; incidents live in Temporal. Temporal unreachable at
start is no refusal: serve answers 503 and an unhealthy /healthz with the reason, and connects when it can. On SIGTERM
the HTTP server stops first, then the worker; workflows in flight stay with Temporal, for another replica's worker
(or this one, restarted) to carry on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from remediate import redact
from remediate.errors import InputError, RemediateError
from remediate.serve import app as app_mod
from remediate.serve import slack
from remediate.serve.backend import Unavailable
from remediate.serve.engine import Metrics
from remediate.serve.rules import Rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.slack_actions import Slack
from remediate.serve.temporal.backend import Connection, TemporalBackend
from remediate.serve.temporal.metered import MeteredRuns
from remediate.serve.temporal.options import TemporalOptions
from remediate.serve.temporal.proof import Proofing

__all__ = ["connection", "serve"]


def connection(options: TemporalOptions) -> Connection:
    """The Connection the options name, their TLS files read now (refused, with the option and the path, when one
    cannot be); the API key registered as a secret before anything could print it."""
    redact.register(options.api_key)
    if bool(options.tls_cert) != bool(options.tls_key):
        raise InputError("--temporal-tls-cert and --temporal-tls-key go together (mTLS needs both)",
                         hint="give both, or neither")
    return Connection(options.address, options.namespace, options.task_queue,
                      tls_cert=_read("--temporal-tls-cert", options.tls_cert),
                      tls_key=_read("--temporal-tls-key", options.tls_key),
                      tls_ca=_read("--temporal-tls-ca", options.tls_ca), api_key=options.api_key or None,
                      heartbeat=options.heartbeat_timeout)


def _read(option: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"{option} {path}: {e.strerror or e}") from None


def serve(where: Connection, rules: Rules, inventory: Path, runs: LibraryRuns, *, secret: str, max_body: int,
          paused: bool, started_line: str, run: Callable[[Any, Callable[[str], None]], None],
          host_runs_per_hour: int, web: dict[str, Any] | None = None, people: Any = None,
          listen: str = "") -> None:
    """Start the worker (or note why Temporal cannot be reached), then the HTTP front end: `run(app, after)` serves
    it until SIGTERM, then calls after(why). `web`: app.build's keywords about people (tokens, roles, proxy);
    `people`: serve's options about proof (launch.People: Alertmanager, the public URL, Slack's signing secret)."""
    metered = MeteredRuns(runs, Metrics())  # this worker's runs, counted into this replica's /metrics
    proofing = _proofing(people, listen)
    backend = TemporalBackend(where, rules, inventory, metered, host_runs_per_hour=host_runs_per_hour,
                              proofing=proofing)
    registry, metered.metrics, alerts = app_mod.metrics_for(backend)
    backend.start()
    try:
        if paused:
            _pause(backend)
        app = app_mod.build(backend, secret, max_body=max_body, registry=registry, alerts=alerts, **(web or {}))
        if proofing.slack_secret is not None or any(rule.chat for rule in rules.rules):  # POST /slack/actions
            app.state.slack = Slack(proofing.slack_secret, rules, backend.note, backend.get,
                                    getattr(people, "public_url", None))
        click.echo(f"{started_line}; backend temporal at {where.address}, namespace {where.namespace}, task queue "
                   f"{where.task_queue} (this process is a front end and a worker){'; PAUSED' if paused else ''}",
                   err=True)
        _said(backend)
    except BaseException:
        backend.stop()
        raise
    run(app, lambda why: _stopped(why, backend))


def _proofing(people: Any, listen: str) -> Proofing:
    """This replica's proof options (serve --alertmanager, --alertmanager-grace, --public-url,
    --slack-signing-secret-file), the signing secret read now."""
    if people is None:
        return Proofing(public_url=f"http://{listen}")
    secret_file = people.slack_signing_secret_file
    return Proofing(people.alertmanager_url, people.alertmanager_grace, people.public_url or f"http://{listen}",
                    slack_secret=slack.read_secret(secret_file) if secret_file is not None else None)


def _said(backend: TemporalBackend) -> None:
    """What the start found: Temporal out of reach, or the search attributes added, or missing and how to add them."""
    checked, namespace = backend.checked, backend.connection.namespace
    if backend.problem:
        click.echo(redact.text(f"serve: {backend.problem}; answering 503 to alerts and an unhealthy /healthz until it "
                               "can be reached"), err=True)
    if checked.added:
        click.echo(f"serve: added the search attribute(s) {', '.join(checked.added)} to Temporal namespace "
                   f"{namespace}", err=True)
    if checked.problem and checked.unchecked:
        click.echo(redact.text(f"serve: note: {checked.problem}"), err=True)
    elif checked.problem:
        click.echo(redact.text(f"serve: {checked.problem}; answering 503 to alerts and an unhealthy /healthz until "
                               "they exist"), err=True)


def _pause(backend: TemporalBackend) -> None:
    """--paused pauses every replica (the pause is Temporal's); refused when Temporal cannot be reached, since the
    pause could not be promised."""
    try:
        backend.pause("serve --paused")
    except Unavailable as e:
        raise RemediateError(f"--paused: the pause is kept in Temporal, which cannot be reached: {e}",
                             hint="start without --paused, and `remediate pause` once Temporal answers") from None


def _stopped(why: str, backend: TemporalBackend) -> None:
    click.echo(f"serve: {why}: no longer taking requests; stopping the Temporal worker: workflows in flight stay with "
               "Temporal, and another replica's worker (or this one, restarted) carries them on", err=True)
    try:
        backend.stop()
    except Unavailable as e:
        click.echo(redact.text(f"serve: {e}"), err=True)
        return
    click.echo("serve: stopped", err=True)
