"""The endpoints for what a person asks of serve besides approve and deny: POST /incidents (a run of a rule on a host,
by hand), POST /incidents/N/replan and POST /incidents/N/rollback. Each is behind the Guard and wants a role that
grants it on the rule and host (permit.require: "request" for the first two, "rollback"); the backend does the rest
(manual.py on the embedded one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from remediate.serve import permit
from remediate.serve.backend import Backend, plan_identity
from remediate.serve.bodies import Bad, body_json, one_line
from remediate.serve.identity import Person
from remediate.serve.store import Incident

Guarded = Callable[..., Route]


def _backend(request: Request) -> Backend:
    found: Backend = request.app.state.web.backend
    return found


def _shown(incident: Incident) -> dict[str, Any]:
    return {**incident.public(), "plan_identity": plan_identity(incident)}


def _number(request: Request) -> int:
    raw = request.path_params["id"]
    if not str(raw).isdigit():
        raise Bad(400, f"incident ids are numbers, not {raw!r}")
    return int(raw)


async def ask(request: Request) -> Response:
    """POST /incidents {"rule": R, "host": H}: a run of rule R on host H, planned and waiting for others' approval."""
    doc = await body_json(request, request.app.state.web.max_body)
    rule = one_line(str(doc.get("rule") or "")).strip() if isinstance(doc, dict) else ""
    host = one_line(str(doc.get("host") or "")).strip() if isinstance(doc, dict) else ""
    if not rule or not host:
        raise Bad(400, 'a run asked for by hand names its rule and host: {"rule": "...", "host": "..."}')
    person = permit.require(request, "request", rule=rule, host=host)
    done = await run_in_threadpool(_backend(request).request, rule, host, person)
    return JSONResponse(_shown(done), status_code=201)


async def _allowed(request: Request, action: str) -> tuple[int, Person]:
    """The incident's number and the person, when a role of theirs grants `action` on its rule and host."""
    number = _number(request)
    found = await run_in_threadpool(_backend(request).get, number)
    return number, permit.require(request, action, rule=found.rule, host=found.host)


async def replan(request: Request) -> Response:
    number, person = await _allowed(request, "request")
    return JSONResponse(_shown(await run_in_threadpool(_backend(request).replan, number, person)))


async def rollback(request: Request) -> Response:
    number, person = await _allowed(request, "rollback")
    return JSONResponse(_shown(await run_in_threadpool(_backend(request).rollback, number, person)))


def routes(guarded: Guarded) -> list[Route]:
    """The three endpoints, each behind the Guard (routes.table's `guarded`)."""
    return [guarded("/incidents", ask, ["POST"]), guarded("/incidents/{id}/replan", replan, ["POST"]),
            guarded("/incidents/{id}/rollback", rollback, ["POST"])]
