"""A rollback killed after some undos, before their records reached the journal it is resumed from (a worker killed
while rolling back; its retry elsewhere reads the host's copy, which has the run's last records only): each undo runs
again (docs/reliability.md). Two steps of the run edit the same file: the first undo put it back as it was before
both, so the later step finds it at its own before-state's before-state, which is no later change of anyone's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from remediate.engine import journal
from remediate.errors import EXIT_OK, EXIT_ROLLBACK_INCOMPLETE

from .fakes import FakeTransport
from .test_runner import applied, rolled_back_later

#: Two edits of one file, a restart between them (its undo runs last, on the restored file).
TWICE = """\
name: unit
steps:
  - id: first
    kind: file
    params: {path: /etc/app.conf, content: "first\\n"}
  - id: restart
    kind: test-restart
    params: {service: app}
  - id: second
    kind: file
    params: {path: /etc/app.conf, content: "second\\n"}
"""


def host() -> FakeTransport:
    t = FakeTransport(name="h1")
    t.put("/etc/app.conf", "old\n", mode=0o640, uid=0, gid=7)
    t.expect(["restart", "app"])
    return t


def rolled_back(fake: FakeTransport, **how: Any) -> tuple[Any, dict[str, list[str]]]:
    events: list[dict[str, Any]] = []
    outcome = rolled_back_later(fake, events, **how)
    said: dict[str, list[str]] = {}
    for e in events:
        if e["event"].startswith("step_roll"):
            said.setdefault(e["event"], []).append(f"{e['step']}: {e.get('message') or e.get('error') or ''}")
    return outcome, said


def test_an_undo_already_done_further_by_a_killed_rollback_is_said_and_the_rest_runs(tmp_path: Path) -> None:
    fake = host()
    assert applied(tmp_path, fake, TWICE).exit_code == EXIT_OK
    assert fake.files["/etc/app.conf"].content == b"second\n"
    fake.put("/etc/app.conf", "old\n", mode=0o640, uid=0, gid=7)  # both undone by the killed attempt, unrecorded
    outcome, said = rolled_back(fake)
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert "step_rollback_failed" not in said, said
    assert said["step_rolled_back"][0] == "second: /etc/app.conf already as before step first, earlier in this run " \
                                          "(undone further than this step: by a rollback that was cut short, or by hand)"
    assert said["step_rolled_back"][1:] == ["first: /etc/app.conf already as before the run",
                                            "restart: restarted on the restored files"]
    assert fake.files["/etc/app.conf"].content == b"old\n"
    assert journal.history("h1")[0]["outcome"] == "rolled-back"


def test_a_state_the_run_never_had_before_the_step_is_still_refused(tmp_path: Path) -> None:
    """Only the run's own earlier states count: the file as the later step left it is undone; an edit is refused."""
    fake = host()
    applied(tmp_path, fake, TWICE)
    fake.put("/etc/app.conf", "hand edit\n")
    outcome, said = rolled_back(fake)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
    assert said["step_rollback_failed"][0].startswith("second: h1:/etc/app.conf changed after the run"), said
    assert fake.files["/etc/app.conf"].content == b"hand edit\n"


def test_the_before_image_of_a_step_undone_further_is_not_called_lost(tmp_path: Path) -> None:
    """A lab reset or a clean-up removed the run's folder after the killed rollback: the file needs no before-image."""
    fake = host()
    applied(tmp_path, fake, TWICE)
    steps = {s["id"]: s for s in journal.find("h1", None).record["steps"]}
    del fake.files[steps["second"]["files"][0]["backup"]]
    fake.put("/etc/app.conf", "old\n", mode=0o640, uid=0, gid=7)
    outcome, said = rolled_back(fake)
    assert outcome.exit_code == EXIT_OK, (outcome.message, said)


#: The later step puts the file back as it was before the earlier one (one adds a line, the other takes it away).
THERE_AND_BACK = TWICE.replace('content: "second\\n"', 'content: "old\\n"')


def test_a_step_that_put_the_file_back_as_an_earlier_step_found_it_is_undone_not_skipped(tmp_path: Path) -> None:
    """The file as the later step left it is that step's to undo, even when an earlier step once found it so."""
    fake = host()
    applied(tmp_path, fake, THERE_AND_BACK)
    assert fake.files["/etc/app.conf"].content == b"old\n"
    outcome, said = rolled_back(fake, skip=frozenset({"first"}))  # the first step's change is kept: only the second's
    assert outcome.exit_code == EXIT_OK, (outcome.message, said)
    assert said["step_rolled_back"][0].startswith("second: restored /etc/app.conf from "), said
    assert fake.files["/etc/app.conf"].content == b"first\n"
    assert {s["id"]: s["state"] for s in journal.history("h1")[0]["steps"]}["second"] == "rolled-back"


def test_its_lost_before_image_is_said_so(tmp_path: Path) -> None:
    fake = host()
    applied(tmp_path, fake, THERE_AND_BACK)
    steps = {s["id"]: s for s in journal.find("h1", None).record["steps"]}
    del fake.files[steps["second"]["files"][0]["backup"]]
    outcome, said = rolled_back(fake)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
    assert "its before-image" in said["step_rollback_failed"][0] and "is gone" in said["step_rollback_failed"][0], said
