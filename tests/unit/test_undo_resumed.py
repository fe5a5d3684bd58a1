"""A rollback killed after some undos, before their records reached the journal it is resumed from (a worker killed
while rolling back; its retry elsewhere reads the host's copy, which has the run's last records only): each undo runs
again (docs/reliability.md). Two steps of the run edit the same file: the first undo put it back as it was before
both, so the later step finds it at its own before-state's before-state, which is no later change of anyone's."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from remediate.engine import journal
from remediate.engine.context import Context, TransportPool
from remediate.errors import EXIT_OK, EXIT_ROLLBACK_INCOMPLETE
from remediate.inputs.inventory import Host

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
    assert said["step_rolled_back"][1:] == ["first: /etc/app.conf already as before this step",
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


def test_an_earlier_state_counts_only_with_its_mode_and_owner_and_never_under_force(tmp_path: Path) -> None:
    """The run's earlier content, but another owner and mode (someone who can write the folder put it there): not
    undone further. Refused as changed; --force restores each step's before-image, mode and owner included."""
    fake = host()
    applied(tmp_path, fake, TWICE)
    fake.put("/etc/app.conf", "old\n", mode=0o666, uid=1000, gid=1000)
    outcome, said = rolled_back(fake)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
    assert said["step_rollback_failed"][0].startswith("second: h1:/etc/app.conf changed after the run"), said
    assert said["step_rollback_failed"][1:] == [
        "first: not run: a later step of the run that wrote the same file, second, is not undone; this one runs once "
        "it is", "restart: not run: it would re-create the service from files that were not restored (second); it "
        "runs once they are"]
    assert fake.files["/etc/app.conf"].mode == 0o666
    forced, said = rolled_back(fake, force=True)
    assert forced.exit_code == EXIT_OK, (forced.message, said)
    assert said["step_rolled_back"][0].startswith("second: restored /etc/app.conf from "), said
    assert said["step_rolled_back"][1].startswith("first: restored /etc/app.conf from "), said
    f = fake.files["/etc/app.conf"]
    assert (f.content, f.mode, f.uid, f.gid) == (b"old\n", 0o640, 0, 7)


def test_a_state_of_a_step_the_operator_keeps_is_not_undone_further(tmp_path: Path) -> None:
    """--skip first keeps the first step's change: a file without it is not as the rollback leaves it."""
    fake = host()
    applied(tmp_path, fake, TWICE)
    fake.put("/etc/app.conf", "old\n", mode=0o640, uid=0, gid=7)
    outcome, said = rolled_back(fake, skip=frozenset({"first"}))
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
    assert said["step_rollback_failed"][0].startswith("second: h1:/etc/app.conf changed after the run"), said
    again, said = rolled_back(fake)  # the skip is journalled: a later rollback keeps it too
    assert again.exit_code == EXIT_ROLLBACK_INCOMPLETE, said
    assert said["step_rollback_failed"][0].startswith("second: h1:/etc/app.conf changed after the run"), said


def test_a_state_under_a_later_kept_change_is_not_undone_further(tmp_path: Path) -> None:
    """Only steps before the one undone count: with the second step kept (--skip), the file as it was before a third
    step is the second's change, which the first's undo must not call its own."""
    fake = host()
    applied(tmp_path, fake, TWICE + "  - id: third\n    kind: file\n    params: {path: /etc/app.conf, content: \"third\\n\"}\n")
    fake.put("/etc/app.conf", "second\n", mode=0o640, uid=0, gid=7)
    outcome, said = rolled_back(fake, skip=frozenset({"second"}))
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
    assert said["step_rolled_back"][0] == "third: /etc/app.conf already as before this step", said
    assert said["step_rollback_failed"][0].startswith("first: h1:/etc/app.conf changed after the run"), said


def test_another_files_earlier_state_does_not_count(tmp_path: Path) -> None:
    fake = host()
    fake.put("/etc/other.conf", "elsewhere\n", mode=0o640, uid=0, gid=7)
    other = "  - id: zeroth\n    kind: file\n    params: {path: /etc/other.conf, content: \"zeroth\\n\"}\n"
    applied(tmp_path, fake, TWICE.replace("  - id: first\n", other + "  - id: first\n"))
    fake.put("/etc/app.conf", "elsewhere\n", mode=0o640, uid=0, gid=7)  # other.conf's before-state, not app.conf's
    outcome, said = rolled_back(fake)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
    assert [f.split(":")[0] for f in said["step_rollback_failed"]] == ["second", "first", "restart"], said


def test_the_earlier_states_are_those_of_earlier_steps_on_the_same_file_and_target_not_kept() -> None:
    def wrote(step_id: str, target: str = "h1", path: str = "/etc/app.conf", state: str = "verified") -> dict[str, Any]:
        return {"id": step_id, "state": state, "files": [{"path": path, "target": target, "before_sha256": step_id}]}
    steps = [wrote("a"), wrote("b", target="h2"), wrote("c", path="/etc/other.conf"), wrote("d", state="rollback-skipped"),
             wrote("e"), wrote("f"), wrote("undone"), wrote("z")]
    ctx = Context(host=Host(name="h1", address="127.0.0.1"), vars={}, run_id="r", pool=None,  # type: ignore[arg-type]
                  journal=SimpleNamespace(record={"steps": steps}), skip=frozenset({"e"}))  # type: ignore[arg-type]
    found = ctx.earlier_states("undone", steps[-2]["files"][0])
    assert [(step_id, e["before_sha256"]) for step_id, e in found] == [("a", "a"), ("f", "f")]


def test_a_step_blocked_on_one_file_blocks_the_earlier_steps_of_its_other_files(tmp_path: Path) -> None:
    """A wrote g (g0 -> g1); B wrote f and g (f0 -> f1, g1 -> g2); C wrote f (f1 -> f2). C's undo is refused (f was
    edited), so B waits; A must wait too, for g is as B left it (or as a hand edit left it), never A's to judge.
    Before, A was called rolled back on a g put back by hand, and a `--force` of B and C then put A's change back."""
    import hashlib

    from remediate.engine.undo import Undo
    from remediate.kinds import REGISTRY, StepSpec

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    fake = host()
    states = {"/etc/f": [b"f0\n", b"f1\n", b"f2\n"], "/etc/g": [b"g0\n", b"g1\n", b"g2\n"]}
    wrote = {"A": [("/etc/g", 0)], "B": [("/etc/f", 0), ("/etc/g", 1)], "C": [("/etc/f", 1)]}
    for path, kept in states.items():
        fake.put(path, kept[2], mode=0o640, uid=0, gid=7)
    j = journal.Journal.start(run_id="20261208T000000Z-abcdef", host="h1", address="x", playbook="p",
                              playbook_path="/p.yml", variables={},
                              steps=[journal.StepRecord(s, "file", "host", {"path": "/x", "content": "x"}, "verified")
                                     for s in wrote])
    for step_id, files in wrote.items():
        for path, n in files:
            fake.put(f"{path}.{step_id}", states[path][n], mode=0o600)
        j.update_step(step_id, files=[{"path": path, "target": "h1", "existed": True, "backup": f"{path}.{step_id}",
                                       "before_sha256": sha(states[path][n]), "after_sha256": sha(states[path][n + 1]),
                                       "mode": "640", "owner": "0:7"} for path, n in files])
    fake.put("/etc/f", "hand edit\n", mode=0o640, uid=0, gid=7)
    fake.put("/etc/g", "g0\n", mode=0o640, uid=0, gid=7)

    def roll_back(**how: Any) -> dict[str, str]:
        ctx = Context(host=Host(name="h1", address="x"), vars={}, run_id=j.run_id,
                      pool=TransportPool(None, lambda h: fake), journal=j, **how)
        steps = {s: REGISTRY["file"](StepSpec(id=s, kind="file", target="host", params={"path": "/x", "content": "x"}))
                 for s in wrote}
        Undo(pool=ctx.pool, emit=lambda e: None).rollback_journal(ctx, j, steps)
        return {s["id"]: s["state"] for s in j.record["steps"]}

    assert roll_back() == {"A": "rollback-blocked", "B": "rollback-blocked", "C": "rollback-failed"}
    assert "a later step of the run that wrote the same file, B, is not undone" in j.step("A")["rollback_error"]
    assert roll_back(force=True) == {"A": "rolled-back", "B": "rolled-back", "C": "rolled-back"}
    assert (fake.files["/etc/f"].content, fake.files["/etc/g"].content) == (b"f0\n", b"g0\n")
