"""apply's and plan's --backend option and the Temporal options it shares with serve (named, and read from the
environment, as Temporal's own CLI names them), without importing serve: a local run loads none of it."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import click

#: serve's and apply's --backend temporal options, named (and read from the environment) as Temporal's own CLI names
#: them.
TEMPORAL_OPTIONS: Final = (
    click.option("--temporal-address", envvar="TEMPORAL_ADDRESS", default="127.0.0.1:7233", show_default=True,
                 metavar="HOST:PORT", help="Temporal's frontend (env TEMPORAL_ADDRESS)."),
    click.option("--temporal-namespace", envvar="TEMPORAL_NAMESPACE", default="default", show_default=True,
                 help="The Temporal namespace (env TEMPORAL_NAMESPACE)."),
    click.option("--temporal-task-queue", envvar="TEMPORAL_TASK_QUEUE", default="remediate", show_default=True,
                 help="The task queue every replica polls: one per team of replicas (env TEMPORAL_TASK_QUEUE)."),
    click.option("--temporal-tls-cert", envvar="TEMPORAL_TLS_CLIENT_CERT_PATH", type=click.Path(path_type=Path),
                 default=None, help="mTLS client certificate, PEM (env TEMPORAL_TLS_CLIENT_CERT_PATH)."),
    click.option("--temporal-tls-key", envvar="TEMPORAL_TLS_CLIENT_KEY_PATH", type=click.Path(path_type=Path),
                 default=None, help="mTLS client key, PEM (env TEMPORAL_TLS_CLIENT_KEY_PATH)."),
    click.option("--temporal-tls-ca", envvar="TEMPORAL_TLS_SERVER_CA_CERT_PATH", type=click.Path(path_type=Path),
                 default=None, help="The CA that signed Temporal's certificate, PEM (env "
                                    "TEMPORAL_TLS_SERVER_CA_CERT_PATH)."),
    click.option("--temporal-api-key", envvar="TEMPORAL_API_KEY", default=None, metavar="KEY",
                 help="An API key (Temporal Cloud); prefer env TEMPORAL_API_KEY. Never printed."),
    click.option("--temporal-heartbeat-timeout", envvar="REMEDIATE_TEMPORAL_HEARTBEAT_TIMEOUT",
                 type=click.FloatRange(min=1), default=60.0, show_default=True, metavar="SECONDS",
                 help="How long an apply or rollback may go without a heartbeat before Temporal retries it on another "
                      "worker: a dead worker's run is taken up this much later (env "
                      "REMEDIATE_TEMPORAL_HEARTBEAT_TIMEOUT)."),
)



def temporal_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(TEMPORAL_OPTIONS):
        f = option(f)
    return f


def refuse_stray_temporal_options(ctx: click.Context, backend: str) -> None:
    """Temporal options on the command line of another backend are a mistake, said plainly (from the environment
    they are ignored: TEMPORAL_ADDRESS may be set for Temporal's own CLI)."""
    if backend == "temporal":
        return
    given = [f"--{name.replace('_', '-')}" for name in ctx.params if name.startswith("temporal_")
             and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise click.UsageError(f"{', '.join(given)} {verb} only with --backend temporal (`{ctx.command_path}` runs "
                               f"with --backend {backend} here)")


def backend_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """apply's --backend, and the Temporal options serve takes (the same names and environment variables)."""
    func = temporal_options(func)
    return click.option("--backend", type=click.Choice(["local", "temporal"]), default="local", show_default=True,
                        help="local: apply from here. temporal: start a rollout workflow on Temporal that serve's "
                             "workers apply; it goes on if this process ends (`remediate rollouts`).")(func)


def chosen(backend: str) -> bool:
    """True for --backend temporal; a Temporal option given on the command line without it is refused."""
    refuse_stray_temporal_options(click.get_current_context(), backend)
    return backend == "temporal"


def exits_at_once(func: Callable[..., Any]) -> Callable[..., Any]:
    """A command that held a Temporal client ends with its output flushed and os._exit(its exit code): the Temporal
    SDK's threads can crash CPython's finalization (rollout_client.CONNECTED says why). Any other ending is as usual."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        code = 0
        try:
            func(*args, **kwargs)
        except SystemExit as e:
            if not _connected():
                raise
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:
            if not _connected():
                return None
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:  # None: that descriptor was closed when the process began
                    stream.flush()
            except (OSError, ValueError):
                pass  # the terminal is gone
        os._exit(code)
    return wrapper


def _connected() -> bool:
    module = sys.modules.get("remediate.serve.temporal.rollout_client")
    return module is not None and bool(module.CONNECTED.is_set())
