"""Who gets past serve's door: an ASGI middleware on every guarded route. The bearer token opens every one; the
page's routes also take the login cookie, and a form POSTed with it must carry that session's CSRF value. Anyone else
is answered 401 (a page GET: sent to /login)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from remediate.serve.access import Sessions, Throttle
from remediate.serve.bodies import Bad, form

COOKIE: Final = "remediate_session"
UNAUTHORIZED: Final = "unauthorized: send Authorization: Bearer <token>"
BAD_CSRF: Final = "the form's CSRF field is missing or wrong; reload the page"


@dataclass(frozen=True)
class Access:
    """The token, the page's login sessions and the failed-login throttle, for one app."""

    token: str
    sessions: Sessions
    throttle: Throttle

    def bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def session(self, request: Request) -> str | None:
        """The request's login session, when it holds a valid one."""
        session = request.cookies.get(COOKIE, "")
        return session if self.sessions.valid(session) else None

    def csrf_ok(self, session: str, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.sessions.csrf(session).encode())


class Guard:
    """Route middleware: lets the request through to the route, or refuses it (Bad, answered by the app)."""

    def __init__(self, app: ASGIApp, *, access: Access, page: bool = False) -> None:
        self.app = app
        self.access = access
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if self.access.bearer_ok(request):
            await self.app(scope, receive, send)
            return
        session = self.access.session(request) if self.page else None
        if session is not None:
            if request.method == "POST":  # the form is read here once; the route reads the same bytes (bodies.py)
                fields = await form(request)
                if not self.access.csrf_ok(session, fields.get("csrf", "")):
                    raise Bad(403, BAD_CSRF)
            await self.app(scope, receive, send)
            return
        if self.page and request.method == "GET":
            await RedirectResponse("/login", status_code=303)(scope, receive, send)
            return
        raise Bad(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
