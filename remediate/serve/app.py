"""serve's HTTP side (Starlette): the Alertmanager receiver, the incidents API, a page for people, /metrics.

Every endpoint wants a person, except /healthz and the login form: `Authorization: Bearer rmt_...` (a named token,
`remediate serve tokens add`), the session cookie /login sets with one (a random id per login that expires, never the
token), or the user header of a trusted proxy; a page's forms carry a CSRF field (guard.py). The shared token opens
Alertmanager's webhook and /metrics alone. What a person may do is their roles' (roles.py, permit.py). Every body is bounded before it is read, and a form is urlencoded only: nothing is ever spooled to disk
(bodies.py). A refusal is answered as JSON {"error": ...} by the exception handlers here; anything unexpected is a 500
that says no more than that, and serve's log has the traceback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from remediate import redact
from remediate.errors import InputError, RemediateError
from remediate.serve.access import Proxy, Sessions, Throttle, token_problem
from remediate.serve.backend import Backend, EngineBackend, Unavailable
from remediate.serve.bodies import Bad
from remediate.serve.engine import Engine, Metrics, NotFound, Refused
from remediate.serve.guard import COOKIE, Access
from remediate.serve.identity import Tokens
from remediate.serve.roles import Roles
from remediate.serve.routes import Web, table
from remediate.serve.store import iso

__all__ = ["COOKIE", "MAX_BODY", "build", "metrics_for"]

LOG = logging.getLogger(__name__)

MAX_BODY: Final = 1 << 20  # 1 MiB: Alertmanager's largest groups are far smaller


class _StateCollector:
    """Incidents by state, read from the backend at scrape time (so a restart does not zero them)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("remediate_serve_incidents", "Incidents by state.", labels=["state"])
        for state, count in self.backend.counts().items():
            family.add_metric([state.value], count)
        yield family
        yield GaugeMetricFamily("remediate_serve_paused", "1 while serve is paused (no new runs).",
                                value=1 if self.backend.paused_by() is not None else 0)


def backend_of(given: Engine | Backend) -> Backend:
    """The embedded engine as a Backend (EngineBackend); a Backend as it is."""
    return EngineBackend(given) if isinstance(given, Engine) else given


def metrics_for(engine: Engine | Backend) -> tuple[CollectorRegistry, Metrics, Counter]:
    registry = CollectorRegistry()
    registry.register(_StateCollector(backend_of(engine)))  # type: ignore[arg-type,unused-ignore]  # any object with collect()
    runs = Counter("remediate_serve_runs", "Plans, applies and rollbacks serve ran, by outcome.",
                   ["playbook", "mode", "outcome"], registry=registry)
    durations = Histogram("remediate_serve_run_duration_seconds", "How long plans, applies and rollbacks took.",
                          ["mode"], registry=registry, buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
    alerts = Counter("remediate_serve_alerts_received", "Alerts received, by status.", ["status"], registry=registry)

    def run(playbook: str, mode: str, outcome: str, seconds: float) -> None:
        runs.labels(Path(playbook).stem, mode, outcome).inc()
        durations.labels(mode).observe(seconds)

    return registry, Metrics(run=run), alerts


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


async def _bad(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Bad)
    return _error(exc.status, exc.reason, exc.headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(404, str(exc))


async def _refused(request: Request, exc: Exception) -> Response:
    return _error(409, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    """The backend cannot be reached: 503, and nothing was started (Alertmanager sends the alert again)."""
    LOG.warning("%s %s: %s", request.method, request.url.path, redact.text(str(exc)))
    return _error(503, redact.text(str(exc)), {"Retry-After": "5"})


async def _input(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def _remediate(request: Request, exc: Exception) -> Response:
    """remediate's own error, which names the object and the fix: said, and logged."""
    LOG.error("%s %s: %s", request.method, request.url.path, redact.text(str(exc)))
    return _error(500, redact.text(str(exc)))


async def _unexpected(request: Request, exc: Exception) -> Response:
    """A bug: the traceback goes to serve's log, the client learns no internals."""
    LOG.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal error; serve's log has the details")


HANDLERS: Final[dict[type[Exception] | int, ExceptionHandler]] = {
    Bad: _bad, NotFound: _not_found, Refused: _refused, Unavailable: _unavailable, InputError: _input, RemediateError: _remediate,
    Exception: _unexpected}


def build(engine: Engine | Backend, token: str, *, max_body: int = MAX_BODY, registry: CollectorRegistry | None = None,
          alerts: Counter | None = None, clock: Callable[[], float] = time.monotonic, tokens: Tokens | None = None,
          roles: Roles | None = None, proxy: Proxy | None = None) -> Starlette:
    """The app over `engine` (the embedded one, or any Backend): Alertmanager's webhook opened by the shared `token`
    (refused when too weak: access.token_problem), everything else by a person: a named token of `tokens`, a login
    made with one, or the trusted `proxy`; what each may do is `roles`' (admin alone when None)."""
    problem = token_problem(token)
    if problem:
        raise ValueError(problem)
    access = Access(token, Sessions(clock=clock), Throttle(clock=clock), tokens, proxy)
    templates = Environment(loader=PackageLoader("remediate.serve", "templates"), autoescape=select_autoescape())
    templates.filters["iso"] = iso
    app = Starlette(routes=table(access), exception_handlers=HANDLERS)
    app.state.web = Web(backend_of(engine), access, templates, max_body, registry, alerts, roles or Roles(), tokens)
    return app
