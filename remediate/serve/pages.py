"""serve's page for people: the login, the incidents list, a page per incident at /incidents/ID (for a browser: an
API client asking the same URL gets routes.py's JSON) and its live updates (live.py). Each route is guarded as
routes.table says; a page's forms carry the session's CSRF value (guard.py). Every page is sent with a strict
Content-Security-Policy: its script and style are files of its own origin, nothing inline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from remediate.serve import live
from remediate.serve.bodies import Bad, form
from remediate.serve.engine import NotFound
from remediate.serve.guard import COOKIE
from remediate.serve.store import STATES, Incident, iso
from remediate.serve.views import View, view

Guarded = Callable[..., Route]

#: The page's own origin only: its stylesheet and script are files (live.py), its forms post to serve, its script
#: talks to serve alone (fetch and EventSource), and no other site may frame it.
CSP: Final = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
              "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS: Final = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                  "Cache-Control": "no-store"}
MAX_NEXT: Final = 2000


def _web(request: Request) -> Any:
    return request.app.state.web


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={**HEADERS, **(headers or {})})


def local(target: str | None) -> str | None:
    """`target` when it is a path on this site (where a login may send the browser back to), else None: never
    another origin (`//evil`, `https://...`, `/\\evil`, which browsers read as `//evil`), nor anything but printable
    ASCII (a browser sends a path's other characters percent-encoded)."""
    if not target or len(target) > MAX_NEXT or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(not 0x21 <= ord(c) <= 0x7E for c in target):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


async def login_form(request: Request) -> Response:
    page = _web(request).templates.get_template("login.html")
    return _html(page.render(error=None, next=local(request.query_params.get("next"))))


async def login(request: Request) -> Response:
    site = _web(request)
    page = site.templates.get_template("login.html")
    address = request.client.host if request.client else "-"
    fields = await form(request)
    back = local(fields.get("next"))
    wait = site.access.throttle.wait(address)
    if wait:
        return _html(page.render(error=f"too many wrong tokens from {address}: try again in {int(wait) + 1} s",
                                 next=back), 429, {"Retry-After": str(int(wait) + 1)})
    session = site.access.login(fields.get("token", ""))  # a person's named token, never the shared one
    if session is None:
        site.access.throttle.failed(address)
        return _html(page.render(error="wrong token", next=back), 401)
    site.access.throttle.succeeded(address)
    response = RedirectResponse(back or "/", status_code=303)
    response.set_cookie(COOKIE, session, httponly=True, samesite="strict", max_age=int(site.access.sessions.lifetime),
                        secure=request.url.scheme == "https")
    return response


async def index(request: Request) -> Response:
    site = _web(request)
    backend = site.backend
    incidents = await run_in_threadpool(backend.list)
    csrf = site.access.csrf(request)  # the session's or the proxy person's; a bearer's page has no forms to send
    paused_by = await run_in_threadpool(backend.paused_by)
    html = site.templates.get_template("index.html").render(
        views=[_view(backend, i) for i in incidents], csrf=csrf, paused=paused_by is not None, paused_by=paused_by,
        counts=await run_in_threadpool(backend.counts), states=STATES, now=iso(time.time()))
    return _html(html)


async def incident(request: Request) -> Response:
    """GET /incidents/ID from a browser: the incident's page (an API client gets routes.py's JSON instead)."""
    site = _web(request)
    raw = str(request.path_params["id"])
    if not raw.isdigit():
        raise Bad(400, f"incident ids are numbers, not {raw!r}")
    page = site.templates.get_template("incident.html")
    try:
        found = await run_in_threadpool(site.backend.get, int(raw))
    except NotFound:
        return _html(page.render(v=None, number=int(raw)), 404, {"Vary": "Accept"})
    return _html(page.render(v=_view(site.backend, found), csrf=site.access.csrf(request)), headers={"Vary": "Accept"})


def _view(backend: Any, incident: Incident) -> View:
    """The incident's view, with its rule's approvals and their expiry when the backend knows the rule."""
    rules = getattr(backend, "rules", None) or getattr(getattr(backend, "engine", None), "rules", None)
    rule = rules.named(incident.rule) if rules is not None and incident.rule else None
    if rule is None:
        return view(incident)
    return view(incident, needed=rule.approvals, expires=rule.approval_expires)


def browser(scope: Scope) -> bool:
    """Whether a request is a browser's: it asks for HTML before JSON, and carries no bearer token."""
    headers = dict(scope.get("headers") or [])
    if headers.get(b"authorization", b"").lower().startswith(b"bearer"):
        return False
    wanted: dict[str, float] = {}
    for part in headers.get(b"accept", b"").decode("latin-1").split(","):
        kind, _, params = part.partition(";")
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        kind = kind.strip().lower()
        wanted[kind] = max(wanted.get(kind, 0.0), weight)
    return wanted.get("text/html", 0.0) > wanted.get("application/json", 0.0)


class ForBrowsers(Route):
    """A guarded route taken by a browser's request alone: any other request passes it by to the next route with
    the same path (content negotiation on one URL)."""

    def __init__(self, route: Route) -> None:  # the guarded route as it is; only what it matches differs
        self.__dict__.update(route.__dict__)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and not browser(scope):
            return Match.NONE, {}
        return super().matches(scope)


class BackHere:
    """Around a page's guard: its redirect to /login carries `next` (this page), so the login comes back here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (302, 303, 307):
                headers = MutableHeaders(scope=message)
                if headers.get("location") == "/login":
                    here = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else "")
                    if local(here):
                        headers["location"] = "/login?" + urlencode({"next": here})
            await send(message)

        await self.app(scope, receive, sending)


def _back_here(route: Route) -> Route:
    route.app = BackHere(route.app)
    return route


def routes(guarded: Guarded) -> list[Route]:
    """The page's routes: the login form and the page's own files (open), and the pages (a person)."""
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/static/{name}", live.static, methods=["GET"]),
        guarded("/", index, page=True),
        ForBrowsers(_back_here(guarded("/incidents/{id}", incident, ["GET"], page=True))),
        guarded("/events", live.events, ["GET"], page=True),
    ]
