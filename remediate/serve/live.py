"""The page's live updates: GET /events, a Server-Sent Events stream that says which incidents changed, and the two
static files the page loads (its stylesheet and the small script that listens). The backend is asked once a second
whatever the number of pages open (its list's stamps, so either backend works); at most MAX_STREAMS streams are open
at once, and each ends after STREAM_SECONDS (the browser's EventSource reconnects after RETRY_MS)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from remediate import redact
from remediate.serve.backend import Unavailable
from remediate.serve.bodies import Bad
from remediate.serve.views import stamp

LOG = logging.getLogger(__name__)

MAX_STREAMS: Final = 64
#: Short: uvicorn's shutdown waits for every open response, so a page left open holds a stopping serve this long at
#: most (uvicorn tells the app nothing; its timeout_graceful_shutdown would cut it shorter).
STREAM_SECONDS: Final = 15.0
POLL_SECONDS: Final = 1.0
KEEPALIVE_SECONDS: Final = 10.0
RETRY_MS: Final = 2000
#: The static files, by name: content type. Read from the package, never from a path the request names.
STATIC: Final = {"page.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}


class Changes:
    """The incidents' stamps, fetched at most once per `interval` for every open stream together."""

    def __init__(self, backend: Any, interval: float = POLL_SECONDS) -> None:
        self.backend = backend
        self.interval = interval
        self.open = 0
        self.stamps: dict[str, str] = {}
        self.paused = False
        self._at = float("-inf")
        self._busy = False

    async def now(self) -> tuple[dict[str, str], bool]:
        """Each incident's stamp by id, and whether serve is paused; fetched again once `interval` has passed."""
        if time.monotonic() - self._at >= self.interval and not self._busy:
            self._busy = True
            try:
                found = await run_in_threadpool(self.backend.list)
                paused = await run_in_threadpool(self.backend.paused_by)
                self.stamps, self.paused = {str(i.id): stamp(i) for i in found}, paused is not None
            except Unavailable as e:  # the backend away: the streams keep what they had and say nothing new
                LOG.warning("live updates: the incidents could not be read: %s", redact.text(str(e)))
            finally:
                self._at = time.monotonic()
                self._busy = False
        return self.stamps, self.paused

    async def follow(self, seconds: float) -> AsyncIterator[str]:
        """One stream's events for `seconds`: every stamp first, then those that changed, and the pause (its slot in
        `open` is the Stream's, taken before the answer starts)."""
        yield f"retry: {RETRY_MS}\n\n"
        sent: dict[str, str] = {}
        paused: bool | None = None
        start = quiet = time.monotonic()
        while time.monotonic() - start < seconds:
            stamps, now_paused = await self.now()
            changed = {k: v for k, v in stamps.items() if sent.get(k) != v}
            if changed or now_paused != paused:
                yield f"data: {json.dumps({'stamps': changed, 'paused': now_paused})}\n\n"
                sent, paused, quiet = dict(stamps), now_paused, time.monotonic()
            elif time.monotonic() - quiet >= KEEPALIVE_SECONDS:  # a proxy keeps a stream that speaks
                yield ": still here\n\n"
                quiet = time.monotonic()
            await asyncio.sleep(min(self.interval, 0.5))


class Stream(StreamingResponse):
    """A live stream that holds the slot its request took in `Changes.open` until the answer is over, however it
    ends (the stream's end, the client gone, or never started)."""

    def __init__(self, live: Changes) -> None:
        super().__init__(live.follow(STREAM_SECONDS), media_type="text/event-stream",
                         headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.live = live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.live.open -= 1


def changes(request: Request) -> Changes:
    """The app's Changes, made on the first stream."""
    state = request.app.state
    found = getattr(state, "changes", None)
    if not isinstance(found, Changes):
        found = state.changes = Changes(state.web.backend)
    return found


async def events(request: Request) -> Response:
    """GET /events: the live stream (the page's guard lets the page's person through)."""
    live = changes(request)
    if live.open >= MAX_STREAMS:
        raise Bad(503, f"{MAX_STREAMS} live pages are open already; the page works without (reload it)",
                  headers={"Retry-After": "30"})
    live.open += 1  # taken with the check, no await between: requests arriving together cannot all pass it
    return Stream(live)


def _read(name: str) -> bytes:
    return resources.files("remediate.serve").joinpath("static", name).read_bytes()


FILES: Final = {name: _read(name) for name in STATIC}


async def static(request: Request) -> Response:
    """GET /static/NAME: one of the page's files (no token: they hold nothing but the page's own code and style)."""
    name = request.path_params["name"]
    if name not in FILES:
        raise Bad(404, f"no static file {name!r}")
    return Response(FILES[name], media_type=STATIC[name], headers={"Cache-Control": "no-cache",
                                                                    "X-Content-Type-Options": "nosniff"})
