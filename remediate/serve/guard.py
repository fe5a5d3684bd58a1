"""Who gets past serve's door: an ASGI middleware on every guarded route, which puts the verified Person on
`request.state.person`. A person is proven by their named token (Bearer rmt_...), the page's login session (made with
a named token, and ended by its revoke), or the trusted proxy's user header (access.Proxy). The webhook's shared token
opens only the routes built with shared=True (GET /metrics) or webhook=True (POST /alertmanager, which a person may
not call: an alert of theirs would be a run no grant allowed), with `request.state.person` None.
A form POSTed with a session, or by the proxy's person, must carry the CSRF value; the proxy's person may also send
JSON (a browser sends that cross-site only after a CORS preflight serve never answers). Anyone else: 401 (a page GET:
sent to /login)."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from remediate.errors import InputError
from remediate.serve.access import Proxy, Sessions, Throttle
from remediate.serve.bodies import FORM, Bad, form
from remediate.serve.identity import Person, Tokens, digest

LOG = logging.getLogger(__name__)

COOKIE: Final = "remediate_session"
UNAUTHORIZED: Final = "unauthorized: send Authorization: Bearer <your token> (remediate serve tokens add NAME)"
BAD_CSRF: Final = "the form's CSRF field is missing or wrong; reload the page"
SHARED_ONLY: Final = ("the shared token opens only POST /alertmanager and GET /metrics: a person acts with their own "
                      "token (remediate serve tokens add NAME --role ROLE), the page's login, or the trusted proxy")
JSON: Final = "application/json"
TOKENS_REFUSED: Final = "serve refuses its tokens file (serve's log says why and what to do): nobody can be verified"


@dataclass(frozen=True)
class Access:
    """The shared token, the people's named tokens, the page's login sessions, the failed-login throttle and the
    trusted proxy, for one app."""

    token: str
    sessions: Sessions
    throttle: Throttle
    tokens: Tokens | None = None
    proxy: Proxy | None = None

    def bearer(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def bearer_ok(self, request: Request) -> bool:
        """Whether the request carries the shared token."""
        given = self.bearer(request)
        return given is not None and self.token_ok(given)

    def token_ok(self, given: str) -> bool:
        """Whether `given` is the shared token (the webhook's)."""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def named(self, given: str, via: str = "token") -> Person | None:
        """The person of a live named token."""
        return self.tokens.person(given, via) if self.tokens is not None else None

    def login(self, given: str) -> str | None:
        """A new login session for a live named token's holder, or None (the caller counts it as a failure)."""
        return self.sessions.new(digest(given)) if self.named(given) is not None else None

    def session(self, request: Request) -> str | None:
        """The request's login session, when it holds a valid one."""
        session = request.cookies.get(COOKIE, "")
        return session if self.sessions.valid(session) else None

    def session_person(self, session: str) -> Person | None:
        """Whoever logged in with this session, their roles as their token has them now; None once it is revoked."""
        wanted = self.sessions.token_digest(session)
        if not wanted or self.tokens is None:
            return None
        entry = next((e for e in self.tokens.entries() if e.revoked is None and hmac.compare_digest(e.digest, wanted)),
                     None)
        return Person(entry.name, frozenset(entry.roles), "session") if entry else None

    def proxy_person(self, request: Request) -> Person | None:
        """The person the trusted proxy names, with their named token's roles when they have one (and the rules
        file's roles listing them, as for everyone)."""
        if self.proxy is None:
            return None
        name = self.proxy.user(request.headers, request.client.host if request.client else None)
        if name is None:
            return None
        live = [e for e in self.tokens.entries() if e.name == name and e.revoked is None] if self.tokens else []
        return Person(name, frozenset(r for e in live for r in e.roles), "proxy")

    def csrf(self, request: Request) -> str:
        """The CSRF value a page's form carries for this request's session or proxy person ("" for neither)."""
        session = self.session(request)
        if session is not None:
            return self.sessions.csrf(session)
        found = getattr(request.state, "person", None)
        return self.sessions.csrf(f"proxy:{found.name}") if isinstance(found, Person) and found.via == "proxy" else ""

    def csrf_ok(self, session: str, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.sessions.csrf(session).encode())


class Guard:
    """Route middleware: puts the request's person on request.state and lets it through to the route, or refuses it
    (Bad, answered by the app)."""

    def __init__(self, app: ASGIApp, *, access: Access, page: bool = False, shared: bool = False,
                 webhook: bool = False) -> None:
        self.app = app
        self.access = access
        self.page = page
        self.shared = shared or webhook
        #: The shared token alone opens it (POST /alertmanager): a person's alert would be a run no grant allowed.
        self.webhook = webhook

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            found = await self._person(request)
        except InputError as e:  # tokens.json refused (not a tokens file, or one others could have written)
            LOG.error("%s %s: %s", request.method, request.url.path, e)
            raise Bad(503, TOKENS_REFUSED) from None
        if found is None:
            if self.page and request.method == "GET":
                await RedirectResponse("/login", status_code=303)(scope, receive, send)
                return
            raise Bad(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        if self.webhook and isinstance(found, Person):
            raise Bad(403, f"{found.said}: POST /alertmanager takes Alertmanager's shared token only; a person asks for "
                           "a run with POST /incidents (the request grant)")
        request.state.person = found if isinstance(found, Person) else None
        await self.app(scope, receive, send)

    async def _person(self, request: Request) -> Person | bool | None:
        """The request's person; True for the shared token where it opens the route; None for nobody."""
        given = self.access.bearer(request)
        if given is not None:
            if self.access.token_ok(given):
                if not self.shared:
                    raise Bad(403, SHARED_ONLY)
                return True
            return self.access.named(given)
        session = self.access.session(request) if self.page else None
        if session is not None:
            person = self.access.session_person(session)
            if person is not None and request.method == "POST":  # the form is read once; the route reads the same bytes
                if not self.access.csrf_ok(session, (await form(request)).get("csrf", "")):
                    raise Bad(403, BAD_CSRF)
            return person
        person = self.access.proxy_person(request)
        if person is not None and request.method not in ("GET", "HEAD"):
            kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
            if kind == FORM:
                if not self.access.csrf_ok(f"proxy:{person.name}", (await form(request)).get("csrf", "")):
                    raise Bad(403, BAD_CSRF)
            elif kind != JSON:
                raise Bad(415, f"the proxy's person sends a form with its CSRF field, or {JSON}")
        return person
