"""serve's HTTP side (Starlette): the Alertmanager receiver, the incidents API, a page for people, /metrics.

Every endpoint wants `Authorization: Bearer TOKEN`, except /healthz and the login form. The page also accepts the
session cookie /login sets (a random id per login that expires, never the token), and its forms carry a CSRF field.
Every body is bounded before it is read, and a form is urlencoded only: nothing is ever spooled to disk."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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

from remediate import jsonin, redact
from remediate.cli.output import visible
from remediate.errors import InputError
from remediate.serve.access import Sessions, Throttle, token_problem
from remediate.serve.engine import Engine, Metrics, NotFound, Refused
from remediate.serve.models import ValidationError, Webhook, reason
from remediate.serve.store import STATES, iso

COOKIE = "remediate_session"
MAX_BODY = 1 << 20  # 1 MiB: Alertmanager's largest groups are far smaller
MAX_FORM = 8 << 10  # the page's forms: a token, a name, a reason (1000 characters) and the CSRF field
FORM = "application/x-www-form-urlencoded"


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
    registry.register(_StateCollector(engine))
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
          alerts: Counter | None = None, clock: Callable[[], float] = time.monotonic) -> Starlette:
    problem = token_problem(token)
    if problem:
        raise ValueError(problem)
    sessions = Sessions(clock=clock)
    throttle = Throttle(clock=clock)
    templates = Environment(loader=PackageLoader("remediate.serve", "templates"), autoescape=select_autoescape())
    templates.filters["iso"] = iso

    def bearer_ok(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def cookie_ok(request: Request) -> bool:
        return sessions.valid(request.cookies.get(COOKIE, ""))

    def refuse() -> JSONResponse:
        return JSONResponse({"error": "unauthorized: send Authorization: Bearer <token>"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    def guarded(handler: Callable[[Request], Awaitable[Response]], *, page: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            if bearer_ok(request):
                return await handler(request)
            if page and cookie_ok(request):
                if request.method == "POST":
                    try:
                        fields = await form(request)
                    except _Bad as e:
                        return JSONResponse({"error": e.reason}, status_code=e.status)
                    csrf = sessions.csrf(request.cookies.get(COOKIE, ""))
                    if not hmac.compare_digest(fields.get("csrf", "").encode(), csrf.encode()):
                        return JSONResponse({"error": "the form's CSRF field is missing or wrong; reload the page"},
                                            status_code=403)
                return await handler(request)
            if page and request.method == "GET":
                return RedirectResponse("/login", status_code=303)
            return refuse()
        return wrapper

    async def body_json(request: Request) -> Any:
        raw = await _bounded(request, max_body)
        if not raw:
            return {}
        try:
            return jsonin.loads(raw, what="the body")
        except InputError as e:
            raise _Bad(400, str(e)) from None

    def who(request: Request, doc: Any) -> str:
        by = (doc.get("by") if isinstance(doc, dict) else None) or request.headers.get("x-remediate-user") or "api"
        return one_line(str(by))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "paused": engine.paused})

    async def login_form(request: Request) -> Response:
        return HTMLResponse(templates.get_template("login.html").render(error=None))

    async def login(request: Request) -> Response:
        address = request.client.host if request.client else "-"
        wait = throttle.wait(address)
        if wait:
            return HTMLResponse(templates.get_template("login.html").render(
                error=f"too many wrong tokens from {address}: try again in {int(wait) + 1} s"), status_code=429,
                headers={"Retry-After": str(int(wait) + 1)})
        try:
            given = (await form(request)).get("token", "")
        except _Bad as e:
            return JSONResponse({"error": e.reason}, status_code=e.status)
        if not hmac.compare_digest(given.encode(), token.encode()):
            throttle.failed(address)
            return HTMLResponse(templates.get_template("login.html").render(error="wrong token"), status_code=401)
        throttle.succeeded(address)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, sessions.new(), httponly=True, samesite="strict", max_age=int(sessions.lifetime),
                            secure=request.url.scheme == "https")
        return response

    async def index(request: Request) -> Response:
        incidents = await run_in_threadpool(engine.store.all)
        session = request.cookies.get(COOKIE, "")
        csrf = sessions.csrf(session) if sessions.valid(session) else ""  # a bearer's page has no forms to send
        html = templates.get_template("index.html").render(
            incidents=incidents, csrf=csrf, paused=engine.paused, paused_by=engine.store.setting("paused_by"),
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
        kind = request.headers.get("content-type", "")
        from_form = FORM in kind or "multipart/form-data" in kind  # multipart: refused by form(), 415
        try:
            doc: Any = await form(request) if from_form else await body_json(request)
            number = incident_id(request)
            by = who(request, doc) if not from_form else f"{one_line(doc.get('by') or '') or 'someone'} (web page)"
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
        why = one_line(str((doc.get("reason") if isinstance(doc, dict) else None) or "").strip())[:1000]
        return JSONResponse({"paused": True, "paused_by": engine.pause(who(request, doc), why)})

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


def one_line(name: str, limit: int = 100) -> str:
    """A name a person typed, as the audit log keeps it: secrets masked, whitespace (newlines included) as one space,
    any other control character made visible (output.visible), at most `limit` characters."""
    return visible(redact.text(" ".join(name.split())))[:limit]


async def _bounded(request: Request, limit: int) -> bytes:
    """The body, refused (413) past `limit` bytes: by its Content-Length before reading, else as it streams in. Read
    once per request (the CSRF check and the handler share it)."""
    kept = getattr(request.state, "body", None)
    if kept is not None:
        return bytes(kept)
    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > limit):
        raise _Bad(413, f"the body is larger than {limit} bytes")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _Bad(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    request.state.body = b"".join(chunks)
    return bytes(request.state.body)


async def form(request: Request) -> dict[str, str]:
    """A page form: urlencoded only (415 otherwise: no multipart parser, so no file part is ever spooled to disk), at
    most MAX_FORM bytes and a few fields; each field's first value."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind != FORM:
        raise _Bad(415, f"a form is sent as {FORM}, not {kind or 'without a Content-Type'}")
    raw = await _bounded(request, MAX_FORM)
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as e:
        raise _Bad(400, f"the form cannot be read: {e}") from None
    return {k: v[0] for k, v in fields.items()}


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
