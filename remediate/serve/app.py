"""serve's HTTP side (Starlette): the Alertmanager receiver, the incidents API, a page for people, /metrics.

Every endpoint wants `Authorization: Bearer TOKEN`, except /healthz and the login form. The page also accepts the
session cookie /login sets (an HMAC of the token, never the token), and its forms carry a CSRF field."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from .. import redact
from .engine import Engine, Metrics, NotFound, Refused
from .models import ValidationError, Webhook, reason
from .store import STATES, iso

COOKIE = "remediate_session"
MAX_BODY = 1 << 20  # 1 MiB: Alertmanager's largest groups are far smaller


class _StateCollector:
    """Incidents by state, read from the store at scrape time (so a restart does not zero them)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Any:
        family = GaugeMetricFamily("remediate_serve_incidents", "Incidents by state.", labels=["state"])
        for state, count in self.engine.store.counts().items():
            family.add_metric([state], count)
        yield family
        yield GaugeMetricFamily("remediate_serve_paused", "1 while serve is paused (no new runs).",
                                value=1 if self.engine.paused else 0)


def metrics_for(engine: Engine) -> tuple[CollectorRegistry, Metrics, Counter]:
    registry = CollectorRegistry()
    registry.register(_StateCollector(engine))  # type: ignore[arg-type]
    runs = Counter("remediate_serve_runs", "Plans, applies and rollbacks serve ran, by outcome.",
                   ["playbook", "mode", "outcome"], registry=registry)
    durations = Histogram("remediate_serve_run_duration_seconds", "How long plans, applies and rollbacks took.",
                          ["mode"], registry=registry, buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
    alerts = Counter("remediate_serve_alerts_received", "Alerts received, by status.", ["status"], registry=registry)

    def run(playbook: str, mode: str, outcome: str, seconds: float) -> None:
        runs.labels(Path(playbook).stem, mode, outcome).inc()
        durations.labels(mode).observe(seconds)

    return registry, Metrics(run=run), alerts


def build(engine: Engine, token: str, *, max_body: int = MAX_BODY, registry: CollectorRegistry | None = None,
          alerts: Counter | None = None) -> Starlette:
    if not token:
        raise ValueError("serve needs a token")
    session_value = hmac.new(token.encode(), b"remediate-session", hashlib.sha256).hexdigest()
    csrf_value = hmac.new(token.encode(), b"remediate-csrf", hashlib.sha256).hexdigest()
    templates = Environment(loader=PackageLoader("remediate.serve", "templates"), autoescape=select_autoescape())
    templates.filters["iso"] = iso

    def bearer_ok(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def cookie_ok(request: Request) -> bool:
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), session_value.encode())

    def refuse() -> JSONResponse:
        return JSONResponse({"error": "unauthorized: send Authorization: Bearer <token>"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    def guarded(handler: Callable[[Request], Awaitable[Response]], *, page: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            if bearer_ok(request):
                return await handler(request)
            if page and cookie_ok(request):
                if request.method == "POST":
                    form = await request.form()
                    if not hmac.compare_digest(str(form.get("csrf", "")).encode(), csrf_value.encode()):
                        return JSONResponse({"error": "the form's CSRF field is missing or wrong; reload the page"},
                                            status_code=403)
                return await handler(request)
            if page and request.method == "GET":
                return RedirectResponse("/login", status_code=303)
            return refuse()
        return wrapper

    async def body_json(request: Request) -> Any:
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body):
            raise _Bad(413, f"the body is larger than {max_body} bytes")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_body:
                raise _Bad(413, f"the body is larger than {max_body} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise _Bad(400, f"the body is not JSON: {e}") from None

    def who(request: Request, doc: Any) -> str:
        by = (doc.get("by") if isinstance(doc, dict) else None) or request.headers.get("x-remediate-user") or "api"
        return redact.text(str(by))[:100]

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "paused": engine.paused})

    async def login_form(request: Request) -> Response:
        return HTMLResponse(templates.get_template("login.html").render(error=None))

    async def login(request: Request) -> Response:
        form = await request.form()
        if not hmac.compare_digest(str(form.get("token", "")).encode(), token.encode()):
            return HTMLResponse(templates.get_template("login.html").render(error="wrong token"), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session_value, httponly=True, samesite="strict", max_age=12 * 3600)
        return response

    async def index(request: Request) -> Response:
        incidents = await run_in_threadpool(engine.store.all)
        html = templates.get_template("index.html").render(
            incidents=incidents, csrf=csrf_value, paused=engine.paused, paused_by=engine.store.setting("paused_by"),
            counts=engine.store.counts(), states=STATES, now=iso(time.time()))
        return HTMLResponse(html)

    async def alertmanager(request: Request) -> Response:
        try:
            doc = await body_json(request)
            payload = Webhook.model_validate(doc)
        except _Bad as e:
            return JSONResponse({"error": e.reason}, status_code=e.status)
        except ValidationError as e:
            return JSONResponse({"error": f"not an Alertmanager webhook (version 4) payload: {reason(e)}"},
                                status_code=400)
        if alerts is not None:
            for alert in payload.alerts:
                alerts.labels(alert.status).inc()
        results = await run_in_threadpool(engine.receive, payload)
        return JSONResponse({"incidents": results})

    async def incidents(request: Request) -> Response:
        found = await run_in_threadpool(engine.store.all)
        return JSONResponse([i.public() for i in found])

    def incident_id(request: Request) -> int:
        raw = request.path_params["id"]
        if not str(raw).isdigit():
            raise _Bad(400, f"incident ids are numbers, not {raw!r}")
        return int(raw)

    async def incident(request: Request) -> Response:
        try:
            found = engine.get(incident_id(request))
        except _Bad as e:
            return JSONResponse({"error": e.reason}, status_code=e.status)
        except NotFound as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        return JSONResponse(found.public())

    async def act(request: Request, action: str) -> Response:
        from_form = "application/x-www-form-urlencoded" in request.headers.get("content-type", "") or \
            "multipart/form-data" in request.headers.get("content-type", "")
        try:
            doc: Any = dict(await request.form()) if from_form else await body_json(request)
            number = incident_id(request)
            by = who(request, doc) if not from_form else f"{str(doc.get('by') or '').strip()[:100] or 'someone'} (web page)"
            if action == "approve":
                done = await run_in_threadpool(engine.approve, number, by)
            else:
                why = str((doc or {}).get("reason") or "").strip()
                if not why:
                    raise _Bad(400, 'deny needs a reason: {"reason": "..."}')
                done = await run_in_threadpool(engine.deny, number, by, why[:1000])
        except _Bad as e:
            return JSONResponse({"error": e.reason}, status_code=e.status)
        except NotFound as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        except Refused as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        if from_form:
            return RedirectResponse(f"/#incident-{done.id}", status_code=303)
        return JSONResponse(done.public())

    async def approve(request: Request) -> Response:
        return await act(request, "approve")

    async def deny(request: Request) -> Response:
        return await act(request, "deny")

    async def pause(request: Request) -> Response:
        doc = await _json_or_empty(request, body_json)
        engine.pause(who(request, doc))
        return JSONResponse({"paused": True})

    async def resume(request: Request) -> Response:
        doc = await _json_or_empty(request, body_json)
        engine.resume(who(request, doc))
        return JSONResponse({"paused": False})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(generate_latest(registry) if registry else b"", media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/", guarded(index, page=True)),
        Route("/alertmanager", guarded(alertmanager), methods=["POST"]),
        Route("/incidents", guarded(incidents)),
        Route("/incidents/{id}", guarded(incident)),
        Route("/incidents/{id}/approve", guarded(approve, page=True), methods=["POST"]),
        Route("/incidents/{id}/deny", guarded(deny, page=True), methods=["POST"]),
        Route("/pause", guarded(pause), methods=["POST"]),
        Route("/resume", guarded(resume), methods=["POST"]),
        Route("/metrics", guarded(metrics)),
    ]
    return Starlette(routes=routes)


class _Bad(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _json_or_empty(request: Request, read: Callable[[Request], Awaitable[Any]]) -> Any:
    try:
        return await read(request)
    except _Bad:
        return {}
