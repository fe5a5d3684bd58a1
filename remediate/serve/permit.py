"""What a route asks before it acts: who is asking (the verified Person the Guard put on the request) and whether one
of their roles grants the action on this rule and host. A refusal is a 403 that says who, what and why."""

from __future__ import annotations

from starlette.requests import Request

from remediate.serve.bodies import Bad
from remediate.serve.guard import SHARED_ONLY, UNAUTHORIZED
from remediate.serve.identity import Person

__all__ = ["SHARED_ONLY", "person", "require"]


def person(request: Request) -> Person:
    """The verified person making this request; 403 when it came with the webhook's shared token alone."""
    found = getattr(request.state, "person", None)
    if isinstance(found, Person):
        return found
    if hasattr(request.state, "person"):  # the Guard passed it on the shared token
        raise Bad(403, SHARED_ONLY)
    raise Bad(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def require(request: Request, action: str, *, rule: str | None = None, host: str | None = None) -> Person:
    """The person, when one of their roles grants `action` on `rule` and `host`; else 403, saying why."""
    who = person(request)
    roles = request.app.state.web.roles
    if not roles.allows(who, action, rule, host):
        raise Bad(403, roles.refusal(who, action, rule, host))
    return who
