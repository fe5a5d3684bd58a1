"""serve's page for people: the login and the incidents list (routes.py has the API). Each route is guarded as
routes.table says; a page's forms carry the session's CSRF value (guard.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from remediate.serve.bodies import form
from remediate.serve.guard import COOKIE
from remediate.serve.store import STATES, iso

Guarded = Callable[..., Route]


def _web(request: Request) -> Any:
    return request.app.state.web


async def login_form(request: Request) -> Response:
    return HTMLResponse(_web(request).templates.get_template("login.html").render(error=None))


async def login(request: Request) -> Response:
    site = _web(request)
    page = site.templates.get_template("login.html")
    address = request.client.host if request.client else "-"
    wait = site.access.throttle.wait(address)
    if wait:
        return HTMLResponse(page.render(error=f"too many wrong tokens from {address}: try again in {int(wait) + 1} s"),
                            status_code=429, headers={"Retry-After": str(int(wait) + 1)})
    if not site.access.token_ok((await form(request)).get("token", "")):
        site.access.throttle.failed(address)
        return HTMLResponse(page.render(error="wrong token"), status_code=401)
    site.access.throttle.succeeded(address)
    response = RedirectResponse("/", status_code=303)
    sessions = site.access.sessions
    response.set_cookie(COOKIE, sessions.new(), httponly=True, samesite="strict", max_age=int(sessions.lifetime),
                        secure=request.url.scheme == "https")
    return response


async def index(request: Request) -> Response:
    site = _web(request)
    backend = site.backend
    incidents = await run_in_threadpool(backend.list)
    session = site.access.session(request)
    csrf = site.access.sessions.csrf(session) if session else ""  # a bearer's page has no forms to send
    paused_by = await run_in_threadpool(backend.paused_by)
    html = site.templates.get_template("index.html").render(
        incidents=incidents, csrf=csrf, paused=paused_by is not None, paused_by=paused_by,
        counts=await run_in_threadpool(backend.counts), states=STATES, now=iso(time.time()))
    return HTMLResponse(html)


def routes(guarded: Guarded) -> list[Route]:
    """The page's routes: the login form (open), and the pages (the login cookie or the bearer token)."""
    return [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        guarded("/", index, page=True),
    ]
