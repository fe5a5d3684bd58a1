"""The page's live updates for real: serve's app under uvicorn on loopback, GET /events read as a browser's
EventSource reads it (a line at a time, as it is sent): the stamps of every incident first, then an event when one
changes or a new one comes; a person is needed; the number of streams and each stream's length are bounded."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from remediate.serve import live
from remediate.serve.identity import Tokens

from .test_serve import TOKEN, Serve, alert, fake_host, make, person_token


@dataclass
class Running:
    serve: Serve
    port: int
    auth: dict[str, str]  # erin's named token

    @contextmanager
    def get(self, path: str, headers: dict[str, str] | None = None) -> Iterator[http.client.HTTPResponse]:
        """The response as it streams in (no read waits more than 15 s)."""
        connection = http.client.HTTPConnection("127.0.0.23", self.port, timeout=15)
        try:
            connection.request("GET", path, headers=headers or {})
            yield connection.getresponse()
        finally:
            connection.close()


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    serve = make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, "http://127.0.0.19:9/hook")
    server = uvicorn.Server(uvicorn.Config(serve.client.app, host="127.0.0.23", port=0, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    token = person_token(Tokens(serve.db.parent), "erin")
    yield Running(serve, port, {"Authorization": f"Bearer {token}"})
    server.should_exit = True
    thread.join(timeout=30)
    serve.engine.stop()


def events(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """Each `data:` event of a stream, parsed, as it arrives; the stream's end ends it."""
    while line := response.readline():
        if line.startswith(b"data: "):
            yield json.loads(line[len(b"data: "):])


def test_an_event_arrives_when_an_incident_changes_and_when_one_is_new(running: Running) -> None:
    serve = running.serve
    first = serve.post(alert("f1"))[0]["id"]
    with running.get("/events", running.auth) as got:
        assert got.status == 200 and got.headers["content-type"].startswith("text/event-stream")
        stream = events(got)
        now = next(stream)
        assert set(now["stamps"]) == {str(first)} and now["paused"] is False
        second = serve.post(alert("f2", "h2:1"))[0]["id"]
        assert set(next(stream)["stamps"]) == {str(second)}  # only what changed
        assert serve.act(first, "approve").status_code == 200
        # the new one's planning may be its own event first (a look may fall between its arrival and its plan)
        changed = next(e["stamps"] for e in stream if str(first) in e["stamps"])
        assert changed[str(first)] != now["stamps"][str(first)]


def test_the_stream_wants_a_person(running: Running) -> None:
    with running.get("/events") as nobody:
        assert nobody.status == 303 and nobody.headers["location"] == "/login"
    with running.get("/events", {"Authorization": f"Bearer {TOKEN}"}) as shared:
        assert shared.status == 403  # the webhook's token opens the webhook alone
    with running.get("/events", {"Authorization": "Bearer rmt_wrong"}) as wrong:
        assert wrong.status == 303 and wrong.headers["location"] == "/login"  # the page's guard: to the login


def test_streams_are_bounded_in_number_and_each_ends(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "MAX_STREAMS", 1)
    monkeypatch.setattr(live, "STREAM_SECONDS", 1.0)
    with running.get("/events", running.auth) as one:
        stream = events(one)
        assert next(stream)["stamps"] == {}
        with running.get("/events", running.auth) as another:
            assert another.status == 503 and another.headers["retry-after"]
        assert list(stream) == []  # the stream ends by itself; were it endless, this read would time out
    with running.get("/events", running.auth) as again:
        assert again.status == 200  # the ended stream freed its place
