"""serve's promises of issue #22 (trust, round 3): the reviewed plan is the applied plan, the pause stops changes
already accepted, and the web side bounds what a stranger can make it do. Same harness as test_serve.py: the
HTTP API in process, the engine and SQLite store for real, fake transports at the seam."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from remediate.serve import access
from remediate.serve import app as app_mod
from remediate.serve.store import Store
from remediate.transport import FileState

from . import test_serve as base
from .fakes import FakeTransport
from .test_serve import AUTH, Clock, Serve, alert, fake_host, make, named, webhook

receiver = base.receiver  # the fixtures: an outgoing webhook's far end, and serve with hosts h1 and h2
serve = base.serve

COMMAND_BOOK = """\
name: unit-serve-command
steps:
  - id: restart
    kind: command
    params:
      command: "systemctl restart app"
      verify: "systemctl is-active app"
"""


def command_host(name: str, *allowed: str) -> FakeTransport:
    fake = FakeTransport(name=name)
    for command in ("systemctl restart app", "systemctl is-active app", *allowed):
        fake.expect(command)
    return fake


# --- 1: the approved plan is the applied plan ------------------------------------------------------------------------

def test_an_edit_to_the_playbook_after_the_plan_is_not_what_the_approval_runs(tmp_path: Path, receiver: str) -> None:
    host = command_host("h1", "touch /pwned")  # the edit's command would "work": only the frozen text keeps it out
    serve = make(tmp_path, {"h1": host}, receiver)
    book = tmp_path / "book.yml"
    book.write_text(COMMAND_BOOK)
    number = serve.post(alert())[0]["id"]
    assert "$ systemctl restart app" in serve.incident(number)["plan_diff"]
    book.write_text(COMMAND_BOOK.replace('verify: "systemctl is-active app"', 'verify: "touch /pwned"'))
    assert serve.act(number, "approve").status_code == 200
    incident = serve.incident(number)
    assert incident["state"] == "waiting_resolved", incident
    assert host.ran == ["systemctl restart app", "systemctl is-active app"]
    assert book.read_text().count("touch /pwned") == 1  # the file itself is left as its owner made it


def test_the_variables_bound_at_plan_time_are_applied_and_a_secret_comes_from_the_rule(tmp_path: Path,
                                                                                   receiver: str) -> None:
    host = command_host("h1", "systemctl restart other")
    serve = make(tmp_path, {"h1": host}, receiver, vars={"unit": "app", "api_token": "s3cret-value"})
    (tmp_path / "book.yml").write_text(COMMAND_BOOK.replace("systemctl restart app", "systemctl restart {{ unit }}"))
    number = serve.post(alert())[0]["id"]
    stored = serve.engine.store.get(number).plan
    assert stored is not None and stored["extra"]["unit"] == "app" and "s3cret-value" not in json.dumps(stored)
    serve.engine.stop()
    serve.engine.store.close()  # serve restarts with other vars: the plan keeps the ones it was made with
    again = make(tmp_path, {"h1": host}, receiver, db=serve.db, vars={"unit": "other", "api_token": "s3cret-value"})
    (tmp_path / "book.yml").write_text(COMMAND_BOOK.replace("systemctl restart app", "systemctl restart {{ unit }}"))
    assert again.act(number, "approve").status_code == 200
    assert again.incident(number)["state"] == "waiting_resolved", again.incident(number)
    assert host.ran == ["systemctl restart app", "systemctl is-active app"]
    again.engine.stop()


def test_an_incident_an_older_serve_stored_with_its_plans_alone_is_planned_again(serve: Serve, tmp_path: Path,
                                                                                 receiver: str) -> None:
    number = serve.post(alert())[0]["id"]
    store = serve.engine.store
    with store._lock:  # as an older serve left it: the per-host plans, no playbook text, approved
        store._db.execute("UPDATE incidents SET plans=plan, plan=NULL, state='running', approved_by='alice' "
                          "WHERE id=?", (number,))
    serve.engine.stop()
    store.close()
    again = make(tmp_path, serve.fakes, receiver, db=serve.db)
    again.engine.recover()
    again.engine.idle()
    incident = again.incident(number)
    assert incident["state"] == "pending" and incident["approved_by"] is None and "+fixed" in incident["plan_diff"]
    assert any(h["what"] == "planning again" for h in incident["history"])
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    again.engine.stop()


# --- 2: the pause stops what was already accepted --------------------------------------------------------------------

class Gate(FakeTransport):
    """A host whose first read of /etc/app.conf waits: the test acts while the plan is being made."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.reading = threading.Event()
        self.go = threading.Event()

    def read(self, path: str) -> FileState | None:
        if path == "/etc/app.conf" and not self.reading.is_set():
            self.reading.set()
            assert self.go.wait(30), "the test never let the plan go on"
        return super().read(path)


def test_a_pause_while_an_automatic_incident_is_planning_stops_its_apply(tmp_path: Path, receiver: str) -> None:
    host = Gate("h1")
    host.put("/etc/app.conf", "broken\n")
    serve = make(tmp_path, {"h1": host}, receiver, approval="auto")
    response = serve.client.post("/alertmanager", json=webhook(alert()), headers=AUTH)
    number = response.json()["incidents"][0]["id"]
    assert host.reading.wait(30)
    assert serve.client.post("/pause", json={}, headers=serve.people["carol"]).status_code == 200
    host.go.set()
    serve.engine.idle()
    incident = serve.incident(number)
    assert incident["state"] == "pending" and "carol" in incident["reason"], incident
    assert any(h["what"] == "paused" and "nothing was changed" in h["detail"] for h in incident["history"])
    assert host.files["/etc/app.conf"].content == b"broken\n"
    assert serve.act(number, "approve").status_code == 409  # still paused
    serve.client.post("/resume", headers=serve.people["carol"])
    assert serve.act(number, "approve").status_code == 200  # a person approves it, once resumed
    assert serve.incident(number)["state"] == "waiting_resolved"
    assert host.files["/etc/app.conf"].content == b"fixed\n"
    serve.engine.stop()


def test_a_pause_between_the_approval_and_the_first_change_stops_the_apply(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    real = serve.engine.runs.factory

    def pausing(opts: Any, emit: Any) -> Any:
        serve.engine.pause("dave")  # arrives while the apply checks the host, after every earlier look
        return real(opts, emit)

    serve.engine.runs.factory = pausing
    assert serve.act(number, "approve").status_code == 200
    incident = serve.incident(number)
    assert incident["state"] == "pending" and "dave" in incident["reason"], incident
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"


def test_serve_restarted_paused_does_not_start_an_accepted_run(serve: Serve, tmp_path: Path, receiver: str) -> None:
    number = serve.post(alert())[0]["id"]
    serve.engine.store.transition(number, ["pending"], "running", "approved", "by test")  # then SIGKILL
    serve.engine.stop()
    serve.engine.store.close()
    restarted = make(tmp_path, serve.fakes, receiver, db=serve.db)
    restarted.engine.pause("serve --paused")
    said = restarted.engine.recover()
    restarted.engine.idle()
    incident = restarted.incident(number)
    assert incident["state"] == "pending" and "paused" in incident["reason"], (incident, said)
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    assert not list((tmp_path / "state" / "remediate" / "runs").glob("*.json"))
    restarted.engine.stop()


def test_a_deadline_while_paused_holds_the_rollback_until_resume(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    serve.act(number, "approve")
    serve.client.post("/pause", json={}, headers=serve.people["bob"])
    serve.clock.now += 301
    for _ in range(3):
        serve.engine.tick()
        serve.engine.idle()
    incident = serve.incident(number)
    assert incident["state"] == "waiting_resolved", incident
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    assert [h["what"] for h in incident["history"]].count("rollback held") == 1
    serve.client.post("/resume", headers=serve.people["bob"])
    serve.engine.tick()
    serve.engine.idle()
    assert serve.incident(number)["state"] == "failed"
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"


# --- 7: the state directory is private -------------------------------------------------------------------------------

def test_the_database_and_its_wal_and_shm_are_0600_in_a_0700_folder_whatever_the_umask(tmp_path: Path) -> None:
    import os
    folder = tmp_path / "serve"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    old = os.umask(0o022)
    try:
        store = Store(folder / "incidents.db")
        store.set_setting("paused", "0")
        modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert modes == {"incidents.db": 0o600, "incidents.db-wal": 0o600, "incidents.db-shm": 0o600}, modes
    assert folder.stat().st_mode & 0o777 == 0o700


# --- 3: a stranger's body is bounded before it is read ---------------------------------------------------------------

@pytest.fixture
def no_form_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette's form parser spools a multipart file part to disk whatever its size: serve must never call it."""
    def refused(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Request.form() was called: a multipart body would be spooled to disk")
    monkeypatch.setattr(Request, "form", refused)


def test_login_reads_one_small_urlencoded_field_and_never_a_multipart_body(serve: Serve, no_form_parser: None) -> None:
    big = {"upload": ("fill.bin", b"\0" * (1 << 20), "application/octet-stream")}
    assert serve.client.post("/login", files=big, data={"token": "x"}).status_code in (413, 415)
    small = serve.client.post("/login", files={"upload": ("a.txt", b"a", "text/plain")}, data={"token": named(serve)})
    assert small.status_code == 415 and "x-www-form-urlencoded" in small.json()["error"]
    assert serve.client.post("/login", data={"token": "x" * (1 << 16)}).status_code == 413
    streamed = serve.client.post("/login", content=(b"token=" + b"x" * 1024 for _ in range(64)),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413  # no Content-Length: counted as it arrives
    ok = serve.client.post("/login", data={"token": named(serve)}, follow_redirects=False)
    assert ok.status_code == 303


def test_the_pages_forms_are_bounded_and_urlencoded_too(serve: Serve, no_form_parser: None) -> None:
    number = serve.post(alert())[0]["id"]
    serve.client.cookies.set(app_mod.COOKIE, _login(serve.client, named(serve)))
    sent = serve.client.post(f"/incidents/{number}/deny", files={"f": ("f", b"\0" * 100_000, "x/y")},
                             data={"reason": "r"}, follow_redirects=False)
    assert sent.status_code in (413, 415) and serve.incident(number)["state"] == "pending"


# --- 4: outgoing webhooks ------------------------------------------------------------------------------------------

class Mover(http.server.BaseHTTPRequestHandler):
    """A notify URL's far end that answers 302 to another origin; the other origin keeps whatever reaches it."""

    elsewhere: ClassVar[str] = ""
    reached: ClassVar[list[tuple[str, str | None]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/elsewhere"):
            return self._arrived()
        self.send_response(302)
        self.send_header("Location", type(self).elsewhere)
        self.end_headers()

    def do_GET(self) -> None:
        self._arrived()

    def _arrived(self) -> None:
        type(self).reached.append((self.command, self.headers.get("Authorization")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_notify_redirect_is_not_followed_is_a_failure_and_the_url_is_masked(tmp_path: Path, receiver: str,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    mover = http.server.HTTPServer(("127.0.0.19", 0), Mover)
    other = http.server.HTTPServer(("127.0.0.18", 0), Mover)  # another origin
    Mover.elsewhere, Mover.reached = f"http://127.0.0.18:{other.server_address[1]}/elsewhere", []
    for server in (mover, other):
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        secret_url = f"http://127.0.0.19:{mover.server_address[1]}/services/T000/B000/XXXXSECRETXXXX"
        serve = make(tmp_path, {"h1": fake_host("h1")}, secret_url)
        number = serve.post(alert())[0]["id"]
        serve.act(number, "deny", {"reason": "not now"}, who="bob")
        serve.engine.notifier.wait()
    finally:
        mover.shutdown()
        other.shutdown()
    assert Mover.reached == []  # nothing reached the other origin, Authorization least of all
    history = serve.incident(number)["history"]
    failed = [h for h in history if h["what"].startswith("notif")]
    assert [h["what"] for h in failed] == ["notify failed"] and "HTTP 302" in failed[0]["detail"], history
    assert f"http://127.0.0.19:{mover.server_address[1]}/…" in failed[0]["detail"]
    serve.client.cookies.set(app_mod.COOKIE, _login(serve.client, named(serve)))
    for shown in (json.dumps(history), serve.client.get("/").text):
        assert "XXXXSECRETXXXX" not in shown and "/services/" not in shown
    serve.engine.stop()


# --- 6: the login ------------------------------------------------------------------------------------------------

def _login(client: TestClient, token: str) -> str:
    response = client.post("/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
    return str(response.cookies[app_mod.COOKIE])


def test_failed_logins_are_throttled_per_client_address(serve: Serve) -> None:
    for _ in range(access.FAILURES):
        assert serve.client.post("/login", data={"token": "guess"}).status_code == 401
    refused = serve.client.post("/login", data={"token": named(serve)}, follow_redirects=False)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0  # even the right one, for now
    other = TestClient(serve.client.app, client=("127.0.0.19", 4000))
    _login(other, named(serve))  # another address is not held back
    serve.clock.now += access.FAILURE_WINDOW + 1
    _login(serve.client, named(serve))


def test_the_throttle_and_the_sessions_stay_bounded() -> None:
    clock = Clock()
    throttle = access.Throttle(failures=2, window=60, limit=3, clock=clock)
    for address in ("a", "a", "b", "c", "d"):
        throttle.failed(address)
    assert throttle.wait("a") == 0  # the least recently failing address was forgotten: memory stays bounded
    assert len(throttle._seen) == 3
    sessions = access.Sessions(lifetime=60, limit=2, clock=clock)
    first, second, third = sessions.new(), sessions.new(), sessions.new()
    assert not sessions.valid(first) and sessions.valid(second) and sessions.valid(third)
    clock.now += 61
    assert not sessions.valid(third)


def test_each_login_gets_its_own_expiring_session_cookie(serve: Serve) -> None:
    response = serve.client.post("/login", data={"token": named(serve)}, follow_redirects=False)
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header.replace("Strict", "strict")
    assert "Secure" not in header and "Max-Age=" in header
    first, second = _login(serve.client, named(serve)), _login(serve.client, named(serve))
    assert first != second and named(serve) not in first
    serve.client.cookies.set(app_mod.COOKIE, first)
    assert serve.client.get("/", follow_redirects=False).status_code == 200
    serve.clock.now += access.SESSION_SECONDS + 1
    assert serve.client.get("/", follow_redirects=False).headers.get("location") == "/login"  # expired, server-side
    tls = TestClient(serve.client.app, base_url="https://testserver")
    assert "Secure" in tls.post("/login", data={"token": named(serve)}, follow_redirects=False).headers["set-cookie"]


def test_a_token_shorter_than_128_bits_is_refused(serve: Serve) -> None:
    for short in ("x", "0123456789abcdef0123456789abcde", "Zm9vYmFyYmF6cXV4cXV1eA"[:21]):
        with pytest.raises(ValueError, match="needs 128"):
            app_mod.build(serve.engine, short)
    for enough in ("0123456789abcdef0123456789abcdef", "Zm9vYmFyYmF6cXV4cXV1eA", "kQ3xZ7pL0vB2nR8tY5wC4mJ9hF6dS1a"):
        assert access.token_problem(enough) is None, enough  # 32 hex digits, 22 base64, lab/chain's 31 alphanumerics


# --- 5: a name cannot forge a line in serve's log --------------------------------------------------------------------

def test_an_approvers_name_stays_on_one_inert_line_in_the_history_and_the_log(serve: Serve) -> None:
    from remediate.serve.commands import log_line
    lines: list[str] = []
    serve.engine.store.echo = lambda *args: lines.extend(log_line(*args).split("\n"))
    number = serve.post(alert())[0]["id"]
    forged = "alice\nincident 9: approved: by mallory\x1b[2J\r"
    assert serve.act(number, "approve", {"by": forged}, who="bob").status_code == 200  # the body's name is ignored
    approved_by = serve.incident(number)["approved_by"]
    assert approved_by.startswith("bob") and "mallory" not in json.dumps(serve.incident(number)), approved_by
    assert not any(line.startswith("incident 9") or "mallory" in line for line in lines), lines
    assert not any(c in "".join(lines) for c in "\x1b\r"), lines


def test_the_store_has_a_schema_version_and_migrates_an_older_database(tmp_path: Path) -> None:
    import sqlite3

    from remediate.errors import RemediateError
    from remediate.serve import store as store_mod

    old = tmp_path / "old.db"
    db = sqlite3.connect(old)  # as a serve before the plan was kept whole made it: no version, no `plan` column
    db.executescript(store_mod.SCHEMA.replace("    plan TEXT,\n", ""))
    db.execute("INSERT INTO incidents (fingerprint, starts_at, labels, state, created, updated) "
               "VALUES ('f', 's', '{}', 'pending', 0, 0)")
    db.commit()
    db.close()
    store = store_mod.Store(old)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION
    assert [i.fingerprint for i in store.all()] == ["f"] and store.all()[0].plan is None
    store.close()
    fresh = store_mod.Store(tmp_path / "new.db")
    assert fresh._db.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION
    fresh._db.execute("PRAGMA user_version = 99")  # as a newer serve would leave it
    fresh.close()
    with pytest.raises(RemediateError, match="newer remediate serve"):
        store_mod.Store(tmp_path / "new.db")
