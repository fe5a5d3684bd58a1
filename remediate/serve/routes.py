"""serve's endpoints, each a small function: the Alertmanager receiver, the incidents API, the pause, the page and its
login, /metrics and /healthz. Who is calling is guard.py's (a verified Person); whether they may act, permit.py's
(their roles, on the incident's rule and host); a refusal (Bad, NotFound, Refused) is answered by the
app's exception handlers (app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from remediate.serve import pages, permit
from remediate.serve.asks import routes as asks_routes
from remediate.serve.backend import Backend, plan_identity
from remediate.serve.bodies import FORM, Bad, body_json, form, one_line
from remediate.serve.guard import Access, Guard
from remediate.serve.identity import Person, Tokens
from remediate.serve.models import ValidationError, Webhook, reason
from remediate.serve.roles import Roles
from remediate.serve.slack_actions import actions as slack_actions
from remediate.serve.store import Incident


@dataclass(frozen=True)
class Web:
    """What the endpoints serve from, kept on the app's state."""

    backend: Backend
    access: Access
    templates: Environment
    max_body: int
    registry: CollectorRegistry | None
    alerts: Counter | None
    #: Who may do what (the rules file's roles:), and the people's named tokens.
    roles: Roles = field(default_factory=Roles)
    tokens: Tokens | None = None


def web(request: Request) -> Web:
    found: Web = request.app.state.web
    return found


def incident_id(request: Request) -> int:
    raw = request.path_params["id"]
    if not str(raw).isdigit():
        raise Bad(400, f"incident ids are numbers, not {raw!r}")
    return int(raw)


def shown(incident: Incident) -> dict[str, Any]:
    """An incident as the API returns it: its fields, and the identity of its plan (what an approval names)."""
    return {**incident.public(), "plan_identity": plan_identity(incident)}


async def healthz(request: Request) -> Response:
    health = await run_in_threadpool(web(request).backend.health)
    return JSONResponse(health.public(), status_code=200 if health.ok else 503)


async def alertmanager(request: Request) -> Response:
    site = web(request)
    doc = await body_json(request, site.max_body)
    try:
        payload = Webhook.model_validate(doc)
    except ValidationError as e:
        raise Bad(400, f"not an Alertmanager webhook (version 4) payload: {reason(e)}") from None
    if site.alerts is not None:
        for alert in payload.alerts:
            site.alerts.labels(alert.status).inc()
    results = await run_in_threadpool(site.backend.receive, payload)
    return JSONResponse({"incidents": results})


async def incidents(request: Request) -> Response:
    found = await run_in_threadpool(web(request).backend.list)
    return JSONResponse([shown(i) for i in found])


async def incident(request: Request) -> Response:
    """The incident as JSON; the same URL is its page for a browser (pages.py), hence Vary: Accept."""
    found = await run_in_threadpool(web(request).backend.get, incident_id(request))
    return JSONResponse(shown(found), headers={"Vary": "Accept"})


async def approve(request: Request) -> Response:
    backend = web(request).backend
    number = incident_id(request)
    person = await _allowed(request, "approve", number)
    doc, from_form = await _decision(request)
    seen = doc.get("plan_identity") if isinstance(doc, dict) else None
    if not seen:  # an approval names the plan its person reviewed, never "whatever is held now"
        raise Bad(400, f'approve names the plan you reviewed: {{"plan_identity": "..."}} (GET /incidents/{number} '
                       f'shows it with the diff; `remediate approve {number}` sends it)')
    done = await run_in_threadpool(backend.approve, number, person, str(seen))
    return _decided(request, done.id, shown(done), from_form)


async def deny(request: Request) -> Response:
    backend = web(request).backend
    number = incident_id(request)
    person = await _allowed(request, "deny", number)
    doc, from_form = await _decision(request)
    why = str((doc.get("reason") if isinstance(doc, dict) else None) or "").strip()
    if not why:
        raise Bad(400, 'deny needs a reason: {"reason": "..."}')
    done = await run_in_threadpool(backend.deny, number, person, why[:1000])
    return _decided(request, done.id, shown(done), from_form)


async def _allowed(request: Request, action: str, number: int) -> Person:
    """The person, when a role of theirs grants `action` on this incident's rule and host (404 for no incident)."""
    found = await run_in_threadpool(web(request).backend.get, number)
    return permit.require(request, action, rule=found.rule, host=found.host)


async def _decision(request: Request) -> tuple[Any, bool]:
    """The body of an approve or deny (the page's form, or JSON), and whether it came from the page. Who decided is
    the verified person, never a name in the body."""
    kind = request.headers.get("content-type", "")
    if FORM in kind or "multipart/form-data" in kind:  # multipart: refused by form(), 415
        return await form(request), True
    return await body_json(request, web(request).max_body), False


def _decided(request: Request, number: int, public: dict[str, Any], from_form: bool) -> Response:
    """The decision's answer: JSON, or for the page's form the incident's own page (the page's script, which sends the
    form asking for JSON, gets JSON: a redirect would lead its fetch to the JSON route, which wants a bearer)."""
    if from_form and not request.headers.get("accept", "").startswith("application/json"):
        return RedirectResponse(f"/incidents/{number}", status_code=303)  # the incident's own page
    return JSONResponse(public)


async def pause(request: Request) -> Response:
    person = permit.require(request, "pause")
    doc = await _any_json(request)
    why = one_line(str((doc.get("reason") if isinstance(doc, dict) else None) or "").strip())[:1000]
    paused_by = await run_in_threadpool(web(request).backend.pause, person.said, why)
    return JSONResponse({"paused": True, "paused_by": paused_by})


async def resume(request: Request) -> Response:
    person = permit.require(request, "pause")
    await run_in_threadpool(web(request).backend.resume, person.said)
    return JSONResponse({"paused": False})


async def _any_json(request: Request) -> Any:
    """The body for pause, {} when it cannot be read: the kill switch works whatever the body."""
    try:
        return await body_json(request, web(request).max_body)
    except Bad:
        return {}


async def metrics(request: Request) -> Response:
    registry = web(request).registry
    return PlainTextResponse(generate_latest(registry) if registry else b"", media_type=CONTENT_TYPE_LATEST)


def table(access: Access) -> list[Route]:
    """Every route; all but /healthz and the login form behind the Guard (the page's also take the login cookie; the
    shared token opens /alertmanager and /metrics alone)."""
    def guarded(path: str, endpoint: Any, methods: list[str] | None = None, *, page: bool = False,
                shared: bool = False, webhook: bool = False) -> Route:
        return Route(path, endpoint, methods=methods,
                     middleware=[Middleware(Guard, access=access, page=page, shared=shared, webhook=webhook)])

    return [
        Route("/healthz", healthz),
        *pages.routes(guarded),
        *asks_routes(guarded),  # POST /incidents (a run by hand), /incidents/N/replan and /rollback
        Route("/slack/actions", slack_actions, methods=["POST"]),  # Slack signs it, not the Guard
        guarded("/alertmanager", alertmanager, ["POST"], webhook=True),
        guarded("/incidents", incidents),
        guarded("/incidents/{id}", incident),
        guarded("/incidents/{id}/approve", approve, ["POST"], page=True),
        guarded("/incidents/{id}/deny", deny, ["POST"], page=True),
        guarded("/pause", pause, ["POST"]),
        guarded("/resume", resume, ["POST"]),
        guarded("/metrics", metrics, shared=True),
    ]
