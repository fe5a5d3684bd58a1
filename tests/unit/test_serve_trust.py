"""serve's promises of issue #22 (trust, round 3): the reviewed plan is the applied plan, the pause stops changes
already accepted, and the web side bounds what a stranger can make it do. Same harness as test_serve.py: the
HTTP API in process, the engine and SQLite store for real, fake transports at the seam."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from remediate.serve.store import Store
from remediate.transport import FileState

from . import test_serve as base
from .fakes import FakeTransport
from .test_serve import AUTH, Serve, alert, make, webhook

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
    assert serve.client.post("/pause", json={"by": "carol"}, headers=AUTH).status_code == 200
    host.go.set()
    serve.engine.idle()
    incident = serve.incident(number)
    assert incident["state"] == "pending" and "carol" in incident["reason"], incident
    assert any(h["what"] == "paused" and "nothing was changed" in h["detail"] for h in incident["history"])
    assert host.files["/etc/app.conf"].content == b"broken\n"
    assert serve.act(number, "approve").status_code == 409  # still paused
    serve.client.post("/resume", headers=AUTH)
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
    serve.client.post("/pause", json={"by": "erin"}, headers=AUTH)
    serve.clock.now += 301
    for _ in range(3):
        serve.engine.tick()
        serve.engine.idle()
    incident = serve.incident(number)
    assert incident["state"] == "waiting_resolved", incident
    assert serve.fakes["h1"].files["/etc/app.conf"].content == b"fixed\n"
    assert [h["what"] for h in incident["history"]].count("rollback held") == 1
    serve.client.post("/resume", headers=AUTH)
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
