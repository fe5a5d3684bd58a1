from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from remediate.engine import journal, lock, runrecord
from remediate.engine.context import TransportPool
from remediate.engine.runner import Runner
from remediate.errors import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_ROLLBACK_INCOMPLETE,
    ConflictError,
    ConnectError,
    InputError,
)
from remediate.inputs import playbook
from remediate.inputs.inventory import Host
from remediate.kinds import Param, Step, register
from remediate.transport import Result

from .fakes import FakeTransport


@register
class FakeRestart(Step):
    """A reconciler: its undo must run after the file steps are undone."""

    kind = "test-restart"
    reconciler = True
    params = {"service": Param(str, required=True)}

    def plan(self, ctx):  # type: ignore[no-untyped-def]
        return self.planned("restart needed", commands=(f"restart {self.p['service']}",))

    def apply(self, ctx, plan):  # type: ignore[no-untyped-def]
        ctx.transport(self.target).run(["restart", self.p["service"]], check=True)

    def rollback(self, ctx, entry):  # type: ignore[no-untyped-def]
        ctx.transport(self.target).run(["restart", entry["params"]["service"]], check=True)
        return "restarted on the restored files"


BOOK = """\
name: unit
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "new\\n"}
  - id: restart
    kind: test-restart
    params: {service: app}
  - id: marker
    kind: command
    params: {command: [make-marker], creates: /etc/marker, undo: [rm-marker]}
  - id: last
    kind: file
    params: {path: /etc/last.conf, content: "last\\n"}
"""


@pytest.fixture
def fake() -> FakeTransport:
    t = FakeTransport(name="h1")
    t.put("/etc/app.conf", "old\n", mode=0o640, uid=0, gid=7)
    t.put("/etc/last.conf", "last-old\n")
    t.expect(["restart", "app"])
    t.expect(["make-marker"], lambda stdin: (t.put("/etc/marker", "") or (0, "", "")))
    t.expect(["rm-marker"], lambda stdin: (t.files.pop("/etc/marker", None) and (0, "", "")) or (0, "", ""))
    return t


def runner_for(tmp_path: Path, fake: FakeTransport, events: list[dict[str, Any]], text: str = BOOK):
    path = tmp_path / "book.yml"
    path.write_text(text)
    book = playbook.load(path)
    run = Runner(playbook=book, pool=TransportPool(None, lambda host: fake), emit=lambda e: events.append(e.as_dict()))
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {})
    return run, bound


def applied(tmp_path: Path, fake: FakeTransport, text: str = BOOK) -> Any:
    """The playbook planned and applied on fake, in one go: its outcome."""
    run, bound = runner_for(tmp_path, fake, [], text)
    run.run(bound, mode="apply")
    return run.apply(bound)


def rolled_back_later(fake: FakeTransport, events: list[dict[str, Any]] | None = None, **how: Any) -> Any:
    """`remediate rollback` of the host's last run, from its journal alone, as a new process would (how: force, skip)."""
    sink = events if events is not None else []
    later = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: sink.append(e.as_dict()))
    return later.rollback(Host(name="h1", address="127.0.0.1"), journal.find("h1", None), **how)


def test_plan_changes_nothing_and_reports_each_step(tmp_path: Path, fake: FakeTransport) -> None:
    events: list[dict[str, Any]] = []
    run, bound = runner_for(tmp_path, fake, events)
    outcome = run.run(bound, mode="plan")
    assert outcome.exit_code == EXIT_CHANGES
    assert fake.writes == [] and fake.ran == []
    planned = [e for e in events if e["event"] == "step_planned"]
    assert [e["step"] for e in planned] == ["conf", "restart", "marker", "last"]
    assert "-old\n+new\n" in planned[0]["diffs"][0]["diff"]
    assert planned[2]["commands"] == ["make-marker"]


def test_apply_then_nothing_to_do(tmp_path: Path, fake: FakeTransport) -> None:
    events: list[dict[str, Any]] = []
    run, bound = runner_for(tmp_path, fake, events)
    run.run(bound, mode="apply")
    assert run.apply(bound).exit_code == EXIT_OK
    assert fake.files["/etc/app.conf"].content == b"new\n"
    assert (fake.files["/etc/app.conf"].mode, fake.files["/etc/app.conf"].gid) == (0o640, 7)
    record = journal.history("h1")[0]
    assert record["outcome"] == "applied"
    assert [s["state"] for s in record["steps"]] == ["verified"] * 4
    # the restart reconciler is still "needed" by this toy, so drop it to see a clean second pass
    text = BOOK.split("  - id: restart")[0] + "  - id: marker" + BOOK.split("  - id: marker")[1]
    run2, bound2 = runner_for(tmp_path, fake, [], text)
    assert run2.run(bound2, mode="plan").exit_code == EXIT_OK


def test_failure_rolls_back_in_reverse_with_reconcilers_last(tmp_path: Path, fake: FakeTransport) -> None:
    events: list[dict[str, Any]] = []
    fake.fail_write = lambda path: path == "/etc/last.conf"
    run, bound = runner_for(tmp_path, fake, events)
    run.run(bound, mode="apply")
    outcome = run.apply(bound)
    assert outcome.exit_code == EXIT_ERROR
    assert "step 'last' failed" in outcome.message and "rolled back" in outcome.message
    assert fake.files["/etc/app.conf"].content == b"old\n"
    assert (fake.files["/etc/app.conf"].mode, fake.files["/etc/app.conf"].gid) == (0o640, 7)
    assert "/etc/marker" not in fake.files
    rolled = [e["step"] for e in events if e["event"] == "step_rolled_back"]
    assert rolled == ["last", "marker", "conf", "restart"]
    assert fake.ran == ["restart app", "make-marker", "rm-marker", "restart app"]
    assert journal.history("h1")[0]["outcome"] == "rolled-back"
    assert all(e["host"] == "h1" for e in events), [e for e in events if e.get("host") != "h1"]
    finished = events[-1]
    assert (finished["event"], finished["outcome"], finished["exit_code"]) == ("run_finished", "rolled-back", EXIT_ERROR)
    assert journal.Journal.load(Path(journal.history("h1")[0]["_path"])).record["version"] == journal.VERSION


def test_a_journal_that_cannot_reach_the_host_stops_the_run_before_any_change(tmp_path: Path,
                                                                             fake: FakeTransport) -> None:
    events: list[dict[str, Any]] = []
    fake.fail_write = lambda path: path.endswith("journal.json")
    run, bound = runner_for(tmp_path, fake, events)
    run.run(bound, mode="apply")
    outcome = run.apply(bound)
    assert outcome.exit_code == EXIT_ERROR and "nothing was changed" in outcome.message, outcome.message
    assert fake.files["/etc/app.conf"].content == b"old\n" and fake.ran == []
    assert journal.history("h1")[0]["outcome"] == "failed"
    assert {s["id"]: s["state"] for s in journal.history("h1")[0]["steps"]}["conf"] == "not-started"
    assert not [e for e in events if e["event"] == "step_rolled_back"]


TWO_FILES = """\
name: unit
steps:
  - id: env
    kind: compose-env
    params:
      path: /srv/app/docker-compose.yml
      service: postfix
      rename: {OLD_NAME: NEW_NAME}
      unset: [ALLOWED_SENDER_DOMAINS]
"""


def test_a_journal_lost_at_a_steps_second_file_undoes_its_first(tmp_path: Path) -> None:
    """One step writes two files (a compose file and its env_file), each after its own journal copy; the disk fills
    after the first write. The first file changed: the step is undone and the run says so, never "nothing was
    changed" with a file left as the run made it."""
    fake = FakeTransport(name="h1")
    fake.put("/srv/app/docker-compose.yml", "services:\n  postfix:\n    image: boky/postfix\n    env_file: mail.env\n"
                                            "    environment:\n      - ALLOWED_SENDER_DOMAINS=example.com\n")
    fake.put("/srv/app/mail.env", "OLD_NAME=keep-me\n")
    before = {path: f.content for path, f in fake.files.items()}
    fake.fail_write = lambda path: path.endswith("journal.json") and any(
        fake.files[p].content != c for p, c in before.items())
    events: list[dict[str, Any]] = []
    run, bound = runner_for(tmp_path, fake, events, TWO_FILES)
    run.run(bound, mode="apply")
    assert len(bound.plans[0].files) == 2
    outcome = run.apply(bound)
    assert {p: fake.files[p].content for p in before} == before
    assert "every applied step was rolled back" in outcome.message, outcome.message
    record = journal.history("h1")[0]
    assert record["outcome"] == "rolled-back" and record["steps"][0]["state"] == "rolled-back"


def test_journal_reaches_the_host_before_each_mutation(tmp_path: Path, fake: FakeTransport) -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    class Recording(dict):  # every file the fake host gets, in order, with the journal's step states
        def __setitem__(self, path: str, state: Any) -> None:
            if path.endswith("journal.json"):
                seen.append(("journal", {s["id"]: s["state"] for s in json.loads(state.content)["steps"]}))
            else:
                seen.append((path, {}))
            super().__setitem__(path, state)

    fake.files = Recording(fake.files)
    applied(tmp_path, fake)
    conf_write = seen.index(("/etc/app.conf", {}))
    last_journal = [s for s in seen[:conf_write] if s[0] == "journal"][-1][1]
    assert last_journal["conf"] == "applying"
    assert any(p.startswith("cp /etc/app.conf /etc/.remediate/") for p in fake.writes[:fake.writes.index("/etc/app.conf")])


def test_edit_underfoot_is_refused_and_rolled_back(tmp_path: Path, fake: FakeTransport) -> None:
    run, bound = runner_for(tmp_path, fake, [])
    run.run(bound, mode="apply")
    fake.put("/etc/last.conf", "someone else's edit\n")
    outcome = run.apply(bound)
    assert outcome.exit_code == EXIT_ERROR
    assert "changed since the plan" in outcome.message
    assert fake.files["/etc/last.conf"].content == b"someone else's edit\n"
    assert fake.files["/etc/app.conf"].content == b"old\n"


def test_rollback_from_a_new_process_uses_the_journal_alone(tmp_path: Path, fake: FakeTransport) -> None:
    applied(tmp_path, fake)
    fresh = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    record = journal.find("h1", None)
    outcome = fresh.rollback(Host(name="h1", address="127.0.0.1"), record)
    assert outcome.exit_code == EXIT_OK
    assert fake.files["/etc/app.conf"].content == b"old\n"
    assert fake.files["/etc/last.conf"].content == b"last-old\n"
    assert journal.history("h1")[0]["outcome"] == "rolled-back"
    with pytest.raises(Exception, match="is rolled-back; nothing to roll back"):
        journal.find("h1", None)


def test_rollback_refuses_to_clobber_a_later_edit(tmp_path: Path, fake: FakeTransport) -> None:
    applied(tmp_path, fake)
    fake.put("/etc/app.conf", "hand edit after the run\n")
    events: list[dict[str, Any]] = []
    restarts = len([c for c in fake.ran if c == "restart app"])
    outcome = rolled_back_later(fake, events)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
    failed = {e["step"]: e["error"] for e in events if e["event"] == "step_rollback_failed"}
    assert "changed after the run" in failed["conf"]
    assert "-hand edit after the run\n+old\n" in failed["conf"]  # the diff --force would apply
    assert fake.files["/etc/app.conf"].content == b"hand edit after the run\n"
    # The restart would re-create the service from a file that was not restored: it does not run.
    assert "not run" in failed["restart"] and len([c for c in fake.ran if c == "restart app"]) == restarts
    assert outcome.message.count("changed after the run") == 0  # said once, in the step's own event


def test_force_keeps_the_change_it_overwrites_beside_the_before_image(tmp_path: Path, fake: FakeTransport) -> None:
    applied(tmp_path, fake)
    fake.put("/etc/app.conf", "hand edit after the run\n")
    events: list[dict[str, Any]] = []
    outcome = rolled_back_later(fake, events, force=True)
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert fake.files["/etc/app.conf"].content == b"old\n"
    kept = [p for p, f in fake.files.items() if f.content == b"hand edit after the run\n"]
    assert len(kept) == 1 and "/.remediate/" in kept[0] and ".replaced-" in kept[0]
    said = {e["step"]: e["message"] for e in events if e["event"] == "step_rolled_back"}
    assert f"that change is kept as {kept[0]}" in said["conf"]


def test_an_edit_saved_while_the_rollback_restores_is_never_overwritten(tmp_path: Path, fake: FakeTransport) -> None:
    """The file is checked (as the run left it), then someone saves it while the before-image is read: the restore
    refuses (compare-and-swap on the host), the edit stays, and the rollback says it is incomplete."""
    applied(tmp_path, fake)
    read = fake.read

    def saved_meanwhile(path: str) -> Any:
        if "/.remediate/" in path and path.endswith("app.conf.conf"):  # its before-image is being read
            fake.put("/etc/app.conf", "saved meanwhile\n")
        return read(path)
    fake.read = saved_meanwhile  # type: ignore[method-assign]
    events: list[dict[str, Any]] = []
    outcome = rolled_back_later(fake, events)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE, outcome.message
    failed = {e["step"]: e["error"] for e in events if e["event"] == "step_rollback_failed"}
    assert "changed while the rollback ran" in failed["conf"]
    assert fake.files["/etc/app.conf"].content == b"saved meanwhile\n"


def test_a_file_the_run_made_and_someone_saved_meanwhile_is_not_removed(tmp_path: Path) -> None:
    from remediate.kinds.file import MISSING_FOLDERS

    fake = FakeTransport(name="h1")
    fake.expect(["sh", "-c", MISSING_FOLDERS, "sh", "/etc"], (0, "0\n", ""))  # which folders of it exist: all
    run, bound = runner_for(tmp_path, fake, [], ONE_FILE.replace("/etc/app.conf", "/etc/made.conf"))
    run.run(bound, mode="apply")
    assert run.apply(bound).exit_code == EXIT_OK
    read = fake.read

    def saved_right_after(path: str) -> Any:
        found = read(path)
        if path == "/etc/made.conf":  # checked as the run left it; saved the moment after
            fake.put(path, "saved meanwhile\n")
        return found
    fake.read = saved_right_after  # type: ignore[method-assign]
    outcome = rolled_back_later(fake)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE, outcome.message
    assert fake.files["/etc/made.conf"].content == b"saved meanwhile\n"


def test_a_retried_rollback_undoes_what_is_left_and_never_claims_success_early(tmp_path: Path, fake: FakeTransport) -> None:
    applied(tmp_path, fake)
    fake.put("/etc/app.conf", "hand edit after the run\n")

    def rollback(**options: Any) -> tuple[Any, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        fresh = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: events.append(e.as_dict()))
        return fresh.rollback(Host(name="h1", address="127.0.0.1"), journal.find("h1", None), **options), events

    first, _ = rollback()
    second, events = rollback()
    assert first.exit_code == second.exit_code == EXIT_ROLLBACK_INCOMPLETE
    assert [e["step"] for e in events if e["event"] == "step_rollback_failed"] == ["conf", "restart"]
    assert journal.history("h1")[0]["outcome"] == "rollback-incomplete"
    forced, events = rollback(force=True)
    assert forced.exit_code == EXIT_OK, forced.message
    assert fake.files["/etc/app.conf"].content == b"old\n"
    assert [e["step"] for e in events if e["event"] == "step_rolled_back"] == ["conf", "restart"]
    assert journal.history("h1")[0]["outcome"] == "rolled-back"


def test_skip_leaves_a_hand_fixed_step_and_lets_the_rest_run(tmp_path: Path, fake: FakeTransport) -> None:
    applied(tmp_path, fake)
    fake.put("/etc/app.conf", "hand edit after the run\n")
    events: list[dict[str, Any]] = []
    fresh = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: events.append(e.as_dict()))
    outcome = fresh.rollback(Host(name="h1", address="127.0.0.1"), journal.find("h1", None), skip=frozenset({"conf"}))
    assert outcome.exit_code == EXIT_OK, outcome.message
    assert fake.files["/etc/app.conf"].content == b"hand edit after the run\n"
    assert [e["step"] for e in events if e["event"] == "step_rollback_skipped"] == ["conf"]
    assert "restart" in [e["step"] for e in events if e["event"] == "step_rolled_back"]


def test_a_before_image_gone_is_said_so_and_only_skip_is_offered(tmp_path: Path, fake: FakeTransport) -> None:
    """#25: after a lab reset (the hosts' run folders removed, the files put back as they were before the fix, which
    for a later step of the run is not its own before-state), the refusal diffed the file against nothing (every line
    removed), and offered --force and a backup file that did not exist; --force then refused."""
    applied(tmp_path, fake)
    backup = next(f["backup"] for s in journal.find("h1", None).record["steps"] if s["id"] == "conf" for f in s["files"])
    del fake.files[backup]
    fake.put("/etc/app.conf", "as a reset left it\n")

    def rollback(**options: Any) -> tuple[Any, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []
        fresh = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: events.append(e.as_dict()))
        return fresh.rollback(Host(name="h1", address="127.0.0.1"), journal.find("h1", None), **options), events

    for options, undone in (({}, ["last", "marker"]), ({"force": True}, [])):
        outcome, events = rollback(**options)
        assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE
        failed = {e["step"]: e["error"] for e in events if e["event"] == "step_rollback_failed"}
        assert f"h1:/etc/app.conf: its before-image {backup} (sha256 " in failed["conf"], failed
        assert ") is gone. Nothing can put it back" in failed["conf"] and failed["conf"].endswith("--skip conf")
        assert "-as a reset left it" not in failed["conf"] and "compare with the backup" not in failed["conf"]
        assert "--force to overwrite" not in outcome.message and "run `remediate rollback` again with --skip conf" \
            in outcome.message, outcome.message
        assert "not run" in failed["restart"]
        assert fake.files["/etc/app.conf"].content == b"as a reset left it\n"
        assert [e["step"] for e in events if e["event"] == "step_rolled_back"] == undone  # the others were undone
    skipped, events = rollback(skip=frozenset({"conf"}))
    assert skipped.exit_code == EXIT_OK, skipped.message
    assert [e["step"] for e in events if e["event"] == "step_rolled_back"] == ["restart"]
    assert fake.files["/etc/app.conf"].content == b"as a reset left it\n"


def test_a_lost_before_image_and_a_hand_edit_each_get_their_way_out(tmp_path: Path, fake: FakeTransport) -> None:
    applied(tmp_path, fake)
    steps = {s["id"]: s for s in journal.find("h1", None).record["steps"]}
    del fake.files[steps["last"]["files"][0]["backup"]]  # /etc/last.conf still as the run left it
    fake.put("/etc/app.conf", "hand edit after the run\n")
    events: list[dict[str, Any]] = []
    outcome = Runner(playbook=None, pool=TransportPool(None, lambda host: fake), emit=lambda e: events.append(e.as_dict())).rollback(
        Host(name="h1", address="127.0.0.1"), journal.find("h1", None))
    failed = {e["step"]: e["error"] for e in events if e["event"] == "step_rollback_failed"}
    assert "is gone" in failed["last"] and "changed after the run" in failed["conf"]
    assert "again with --skip last" in outcome.message and "--force to overwrite a changed file" in outcome.message
    assert fake.files["/etc/last.conf"].content == b"last\n"


def test_unexpected_commands_are_refused() -> None:
    fake = FakeTransport(name="h1")
    with pytest.raises(AssertionError, match="unexpected command"):
        fake.run(["rm", "-rf", "/"])
    assert Result("x", 0).ok


def test_rollback_never_reaches_past_the_last_run(tmp_path: Path, fake: FakeTransport) -> None:
    run_id = applied(tmp_path, fake).run_id
    rolled_back_later(fake)
    with pytest.raises(Exception, match="the last run that changed something, .* is rolled-back; nothing to roll back"):
        journal.find("h1", None)
    assert journal.find("h1", run_id[:12]).run_id == run_id


WHEN_BOOK = """\
name: when
steps:
  - id: before-edit
    kind: command
    when: changed(conf)
    params: {command: [snapshot], creates: /etc/snap}
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "{{ wanted }}\\n"}
  - id: after-edit
    kind: command
    when: changed(conf)
    params: {command: [reload-app], creates: /etc/reloaded}
"""


@pytest.mark.parametrize(("wanted", "runs"), [("new", True), ("old", False)])
def test_when_changed_runs_a_step_only_if_a_named_step_changes(tmp_path: Path, fake: FakeTransport, wanted: str,
                                                               runs: bool) -> None:
    path = tmp_path / "book.yml"
    path.write_text(WHEN_BOOK)
    run = Runner(playbook=playbook.load(path), pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {"wanted": wanted})
    run.run(bound, mode="plan")
    planned = {p.step_id: p for p in bound.plans}
    # a dependency before (settled after every step is checked) and after (decided before it is checked)
    assert planned["before-edit"].changed is runs and planned["after-edit"].changed is runs
    if not runs:
        assert planned["after-edit"].reason == "not needed: conf changes nothing"
        assert not [c for c in fake.ran if "reload" in c]


@pytest.mark.parametrize(("when", "words"), [("changed(nope)", "names no step 'nope'"), ("changed(conf)", "names itself"),
                                             ("sometimes", r"must be always or changed\(STEP, \.\.\.\)")])
def test_a_bad_when_is_refused_with_its_line(tmp_path: Path, when: str, words: str) -> None:
    path = tmp_path / "book.yml"
    path.write_text(f"name: w\nsteps:\n  - id: conf\n    kind: file\n    when: {when}\n    params: {{path: /x, content: y}}\n")
    with pytest.raises(InputError, match=words) as e:
        playbook.load(path)
    assert f"{path}:5" in str(e.value)


@register
class FakeSource(Step):
    """Gives a value to later steps."""

    kind = "test-source"
    outputs = ("value",)
    params = {"value": Param(str, required=True)}

    def plan(self, ctx):  # type: ignore[no-untyped-def]
        return self.planned("nothing to change", outputs={"value": self.p["value"].upper()})

    def apply(self, ctx, plan):  # type: ignore[no-untyped-def]
        pass


def test_a_step_output_is_a_variable_of_the_steps_after_it(tmp_path: Path, fake: FakeTransport) -> None:
    path = tmp_path / "book.yml"
    path.write_text("name: out\nsteps:\n  - id: src\n    kind: test-source\n    params: {value: new}\n"
                    "  - id: conf\n    kind: file\n    params: {path: /etc/app.conf, content: \"{{ steps.src.value }}\"}\n")
    run = Runner(playbook=playbook.load(path), pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {})
    run.run(bound, mode="plan")
    assert bound.plans[1].files[0].after == b"NEW"
    assert bound.steps[1].spec.params["content"] == "NEW"  # what the journal will store


@pytest.mark.parametrize(("content", "words"), [('"x {{ steps.src.value }}"', "must be a whole param value"),
                                                ('"{{ steps.src.other }}"', "which no earlier step gives"),
                                                ('"{{ steps.conf.value }}"', "which no earlier step gives")])
def test_step_outputs_are_checked_before_any_connection(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "book.yml"
    path.write_text("name: out\nsteps:\n  - id: src\n    kind: test-source\n    params: {value: new}\n"
                    f"  - id: conf\n    kind: file\n    params: {{path: /etc/app.conf, content: {content}}}\n")
    with pytest.raises(InputError, match=words):
        playbook.load(path).bind(Host(name="h1", address="127.0.0.1"), {})


def test_skipped_steps_count_as_unchanged_and_the_plan_says_so(tmp_path: Path, fake: FakeTransport) -> None:
    from remediate import api as session
    path = tmp_path / "book.yml"
    path.write_text(WHEN_BOOK)
    book = playbook.load(path)
    ids = [s.id for s in book.steps]
    opts = session.Options(inventory=tmp_path, hosts=(), skip_steps=("conf",))
    run = Runner(playbook=book, pool=TransportPool(None, lambda host: fake), emit=lambda e: None,
                 skipped=session.skipped_steps(opts, ids))
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {"wanted": "new"})
    run.run(bound, mode="plan")
    planned = {p.step_id: p for p in bound.plans}
    assert planned["conf"].reason.startswith("skipped: not selected") and not planned["conf"].changed
    assert not planned["after-edit"].changed and not planned["before-edit"].changed  # their input is unchanged
    assert session.skipped_steps(session.Options(inventory=tmp_path, hosts=(), start_at="after-edit"), ids) == \
        {"before-edit", "conf"}
    assert session.skipped_steps(session.Options(inventory=tmp_path, hosts=(), steps=("conf",)), ids) == \
        {"before-edit", "after-edit"}
    with pytest.raises(InputError, match="no step 'nope'"):
        session.skipped_steps(session.Options(inventory=tmp_path, hosts=(), steps=("nope",)), ids)


@register
class FakeCheck(Step):
    """Only proves something, like the test mail."""

    kind = "test-check"
    proves_only = True

    def plan(self, ctx):  # type: ignore[no-untyped-def]
        return self.planned(f"confirm after {', '.join(ctx.changed_dependencies(self.spec))}", checks=("probe it",))

    def apply(self, ctx, plan):  # type: ignore[no-untyped-def]
        pass


def test_a_check_after_a_step_that_only_serves_later_ones_is_not_needed_on_a_noop(tmp_path: Path,
                                                                                 fake: FakeTransport) -> None:
    path = tmp_path / "book.yml"
    path.write_text(WHEN_BOOK.replace("  - id: after-edit\n    kind: command\n    when: changed(conf)\n"
                                      "    params: {command: [reload-app], creates: /etc/reloaded}\n",
                                      "  - id: confirm\n    kind: test-check\n"))
    run = Runner(playbook=playbook.load(path), pool=TransportPool(None, lambda host: fake), emit=lambda e: None)
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {"wanted": "old"})
    outcome = run.run(bound, mode="plan")
    planned = {p.step_id: p for p in bound.plans}
    assert outcome.exit_code == 0 and not planned["confirm"].checks, planned["confirm"]
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {"wanted": "new"})
    run.run(bound, mode="plan")
    assert {p.step_id: p for p in bound.plans}["confirm"].checks == ("probe it",)


def test_the_hosts_copy_ends_applied_and_goes_with_the_locks_release(tmp_path: Path, fake: FakeTransport) -> None:
    run, bound = runner_for(tmp_path, fake, [])
    run.run(bound, mode="apply")
    assert run.apply(bound).exit_code == EXIT_OK
    copy = next(runrecord.newest(s.content) for p, s in fake.files.items() if p.endswith("journal.json"))
    assert copy["outcome"] == "applied" and copy["finished"]
    assert fake.writes[-1].startswith("rm ") and fake.writes[-2].endswith("journal.json")
    assert fake.pending_journal is None


def test_the_local_journal_says_a_step_began_before_its_mutation_and_waits_for_the_rest(
        tmp_path: Path, fake: FakeTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a process killed mid-run leaves: each step that may have changed the host is on disk as begun, with
    what undo needs, before its mutation; what happened after one (applied, verified) goes with the next write."""
    run, bound = runner_for(tmp_path, fake, [])
    run.run(bound, mode="apply")
    on_disk = journal.runs_dir() / f"{bound.ctx.run_id}.h1.json"
    seen: dict[str, dict[str, str]] = {}

    def states() -> dict[str, str]:
        return {s["id"]: s["state"] for s in runrecord.read(on_disk)["steps"]}

    fake.expect(["restart", "app"], lambda stdin: seen.setdefault("restart", states()) and (0, "", ""))
    fake.expect(["make-marker"], lambda stdin: (seen.setdefault("marker", states()), fake.put("/etc/marker", ""))
                and (0, "", ""))
    writes: list[bytes] = []
    def kept(real: Any) -> Any:
        return lambda path, data, **kw: (writes.append(data), real(path, data, **kw))
    for name in ("write_bytes", "append_bytes"):  # a record written whole, or appended (test_journal_append.py)
        monkeypatch.setattr(journal.private, name, kept(getattr(journal.private, name)))
    assert run.apply(bound).exit_code == EXIT_OK
    assert seen["restart"]["conf"] == "verified" and seen["restart"]["restart"] == "applying"
    assert seen["marker"]["restart"] == "verified" and seen["marker"]["marker"] == "applying"
    assert runrecord.read(on_disk)["steps"][2]["undo"] == ["rm-marker"]
    # the start; each step's begin with what undo needs, for the steps that record it, else alone before its first
    # command (the restart); and the end: no write for applied or verified
    begun = [json.loads(w)["steps"] for w in writes]
    assert len(writes) == 1 + 3 + 1 + 1, "\n".join(str([(s["state"], sorted(s)) for s in steps]) for steps in begun)
    assert [(s["state"], "undo" in s) for s in begun[3]][1:3] == [("verified", False), ("applying", True)]
    assert [s["state"] for s in json.loads(writes[-1])["steps"]] == ["verified"] * 4


def test_apply_hands_verify_a_record_and_a_kind_keeps_no_state_on_itself(tmp_path: Path, fake: FakeTransport) -> None:
    """What apply learnt (the sha256 a write read back) reaches verify as the record apply returned, so one step
    object serves any number of hosts; a plug-in written with verify(ctx, plan) still runs."""
    from remediate.contract.plan import Applied
    from remediate.engine import runner as runner_mod
    from remediate.kinds import Step, StepSpec

    class Old(Step):
        kind = "old-style"

        def plan(self, ctx):  # type: ignore[no-untyped-def]
            return self.planned("run it", commands=("x",))

        def apply(self, ctx, plan):  # type: ignore[no-untyped-def]
            return None

        def verify(self, ctx, plan):  # type: ignore[no-untyped-def,override]
            return "old verify"

    class New(Old):
        kind = "new-style"

        def apply(self, ctx, plan):  # type: ignore[no-untyped-def]
            return Applied(data={"seen": "from apply"})

        def verify(self, ctx, plan, applied):  # type: ignore[no-untyped-def]
            return str(applied.data["seen"])

    run, bound = runner_for(tmp_path, fake, [])
    for cls, said in ((Old, "old verify"), (New, "from apply")):
        step = cls(StepSpec(id="s", kind=cls.kind, target="host", params={}))
        plan = step.plan(bound.ctx)
        assert runner_mod.verify(step, bound.ctx, plan, step.apply(bound.ctx, plan) or Applied()) == said
        assert vars(step).keys() == {"spec", "id", "target", "p"}
    run.run(bound, mode="apply")
    assert run.apply(bound).exit_code == EXIT_OK  # the file kind and the others, through the runner
    assert all(vars(s).keys() == {"spec", "id", "target", "p"} for s in bound.steps)


def test_no_command_passes_a_step_begun_and_not_on_disk(tmp_path: Path, fake: FakeTransport) -> None:
    """A step's begin goes to disk with its first record, or before its first command when that comes first (the
    restart records nothing): at every command, a step the run has begun is begun on disk too."""
    run, bound = runner_for(tmp_path, fake, [])
    run.run(bound, mode="apply")
    on_disk = journal.runs_dir() / f"{bound.ctx.run_id}.h1.json"
    behind: list[tuple[str, str]] = []
    real = fake._exec

    def looking(argv: Any, **kw: Any) -> Any:
        if bound.ctx.journal is not None and on_disk.exists():
            saved = {s["id"]: s["state"] for s in runrecord.read(on_disk)["steps"]}
            behind.extend((s["id"], " ".join(map(str, argv))[:40]) for s in bound.ctx.journal.record["steps"]
                          if s["state"] != "planned" and saved[s["id"]] == "planned")
        return real(argv, **kw)
    fake._exec = looking  # type: ignore[method-assign]
    assert run.apply(bound).exit_code == EXIT_OK
    assert behind == [] and fake.ran.count("restart app") == 1


def test_a_step_that_when_may_skip_is_not_read_ahead(tmp_path: Path, fake: FakeTransport) -> None:
    """What a plan asks ahead is what its steps will read: a step whose `when:` names earlier steps only may be
    skipped unplanned, so its file is not asked for (a hung mount it never reads must not stop the plan); one whose
    `when:` names a later step is planned whatever it says, so its file is asked for with the rest."""
    asked: list[list[tuple[str, ...]]] = []
    fake.read_ahead = lambda asks: asked.append(list(asks))  # type: ignore[method-assign]
    fake.put("/etc/b.conf", "old\n")
    text = ("name: unit\nsteps:\n"
            "  - id: conf\n    kind: file\n    params: {path: /etc/app.conf, content: \"old\\n\"}\n"
            "  - id: after\n    kind: file\n    when: changed(conf)\n    params: {path: /mnt/hung/a.conf, content: x}\n"
            "  - id: before\n    kind: file\n    when: changed(last)\n    params: {path: /etc/b.conf, content: x}\n"
            "  - id: last\n    kind: file\n    params: {path: /etc/last.conf, content: \"last\\n\"}\n")
    events: list[dict[str, Any]] = []
    run, bound = runner_for(tmp_path, fake, events, text)
    run.run(bound, mode="plan")
    assert [[ask[1] for ask in asks] for asks in asked] == [["/etc/app.conf", "/etc/b.conf", "/etc/last.conf"]]
    planned = {e["step"]: e for e in events if e["event"] == "step_planned"}
    assert planned["after"]["reason"].startswith("not needed: conf changes nothing"), planned["after"]


TWO_STEPS = """\
name: unit
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "new\\n"}
  - id: last
    kind: file
    params: {path: /etc/last.conf, content: "last\\n"}
"""


class LinkDrops(FakeTransport):
    """The host's SSH connection is lost once `down` is set, and cannot be made again (factory below)."""

    down = False
    drop_after: frozenset[str] = frozenset()

    def write(self, path: str, content: bytes, **kw: Any) -> str:  # type: ignore[override]
        if self.down:
            raise ConnectError("h1: the SSH connection was lost")
        written = super().write(path, content, **kw)
        self.down = path in self.drop_after
        return written

    def sha256(self, path: str) -> str | None:
        if self.down:
            raise ConnectError("h1: the SSH connection was lost")
        return super().sha256(path)


def dropping_pool(fake: LinkDrops) -> TransportPool:
    def factory(host: Host) -> LinkDrops:
        if fake.down:
            raise ConnectError("h1: cannot connect: Connection timed out")
        return fake
    return TransportPool(None, factory)


def planned_over_a_dropping_link(tmp_path: Path) -> tuple[LinkDrops, Runner, Any]:
    """TWO_STEPS planned for apply on a host whose link drops once told to (LinkDrops.drop_after)."""
    fake = LinkDrops(name="h1")
    fake.put("/etc/app.conf", "old\n")
    fake.put("/etc/last.conf", "last-old\n")
    path = tmp_path / "book.yml"
    path.write_text(TWO_STEPS)
    run = Runner(playbook=playbook.load(path), pool=dropping_pool(fake), emit=lambda e: None)
    bound = run.bind(Host(name="h1", address="127.0.0.1"), {})
    run.run(bound, mode="apply")
    return fake, run, bound


def test_a_connection_lost_for_good_mid_run_is_rollback_incomplete_not_refused(tmp_path: Path) -> None:
    """The link drops at the second step's write and cannot be made again: the first step's file is left as the run
    made it. The run says ROLLBACK INCOMPLETE (exit 4) and its journal keeps it for `remediate rollback`, never
    "refused" (a run that changed nothing, which `rollback` passes over)."""
    fake, run, bound = planned_over_a_dropping_link(tmp_path)
    fake.drop_after = frozenset({"/etc/app.conf"})
    outcome = run.apply(bound)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE and "cannot connect" in outcome.message, outcome.message
    record = journal.history("h1")[0]
    assert record["outcome"] == "rollback-incomplete"
    assert {s["id"]: s["state"] for s in record["steps"]}["conf"] == "rollback-failed"
    assert journal.find("h1", None).run_id == outcome.run_id  # `remediate rollback` finds it


def test_a_rollback_that_loses_the_host_between_two_undos_says_what_is_left(tmp_path: Path) -> None:
    fake, run, bound = planned_over_a_dropping_link(tmp_path)
    assert run.apply(bound).exit_code == EXIT_OK
    fake.drop_after = frozenset({"/etc/last.conf"})  # the link drops right after the first restore
    events: list[dict[str, Any]] = []
    later = Runner(playbook=None, pool=dropping_pool(fake), emit=lambda e: events.append(e.as_dict()))
    outcome = later.rollback(Host(name="h1", address="127.0.0.1"), journal.find("h1", None))
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE, outcome.message
    record = journal.history("h1")[0]
    assert {s["id"]: s["state"] for s in record["steps"]} == {"conf": "rollback-failed", "last": "rolled-back"}
    assert journal.live_outcome(record) == "rollback-incomplete"
    assert [e["event"] for e in events][-1] == "run_finished"


NO_UNDO = """\
name: unit
steps:
  - id: purge
    kind: command
    params: {command: [purge-cache], creates: /var/cache/gone}
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "new\\n"}
"""


def test_a_command_without_undo_is_never_called_rolled_back(tmp_path: Path) -> None:
    """The command ran (it deleted a file) and gives no undo: when a later step fails, the rollback says it is not
    reversed (ROLLBACK INCOMPLETE, exit 4), and it stays pending until the operator skips it. The plan warned."""
    fake = FakeTransport(name="h1")
    fake.put("/etc/app.conf", "old\n")
    fake.put("/var/cache/x", "cached\n")
    fake.expect(["purge-cache"], lambda stdin: (fake.files.pop("/var/cache/x") and (0, "", "")))
    fake.fail_write = lambda path: path == "/etc/app.conf"
    events: list[dict[str, Any]] = []
    run, bound = runner_for(tmp_path, fake, events, NO_UNDO)
    run.run(bound, mode="apply")
    assert "no undo: a rollback cannot reverse it" in bound.plans[0].reason
    outcome = run.apply(bound)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE and "not reversed: `purge-cache` ran" in outcome.message
    assert "every applied step was rolled back" not in outcome.message
    assert {s["id"]: s["state"] for s in journal.history("h1")[0]["steps"]}["purge"] == "rollback-failed"
    skipped = rolled_back_later(fake, skip=frozenset({"purge"}))
    assert skipped.exit_code == EXIT_OK, skipped.message


def test_a_command_not_reversed_still_lets_the_restart_run_on_the_restored_files(tmp_path: Path,
                                                                                   fake: FakeTransport) -> None:
    """A command without undo: between a file and the restart: the rollback restores the file, says the command
    is not reversed, and still restarts the service on the restored file (the command left no file unrestored)."""
    book = BOOK.replace("params: {command: [make-marker], creates: /etc/marker, undo: [rm-marker]}",
                        "params: {command: [make-marker], creates: /etc/marker}")
    fake.fail_write = lambda path: path == "/etc/last.conf"
    run, bound = runner_for(tmp_path, fake, [], book)
    run.run(bound, mode="apply")
    outcome = run.apply(bound)
    assert outcome.exit_code == EXIT_ROLLBACK_INCOMPLETE and "not reversed" in outcome.message, outcome.message
    assert fake.files["/etc/app.conf"].content == b"old\n"
    assert fake.ran.count("restart app") == 2  # applied, then again on the restored file
    states = {s["id"]: s["state"] for s in journal.history("h1")[0]["steps"]}
    assert (states["conf"], states["marker"], states["restart"]) == ("rolled-back", "rollback-failed", "rolled-back")


class SecondInterrupt(Exception):
    """What this test's SIGINT handler raises: a second Ctrl-C that got through."""


def test_a_second_ctrl_c_from_the_first_failure_on_waits_for_the_rollback(tmp_path: Path, fake: FakeTransport) -> None:
    """Ctrl-C stops a command; a second Ctrl-C lands while the failure is being said, before any undo has begun. It is
    held: every applied step is still rolled back and the journal says so."""
    fake.expect(["make-marker"], lambda stdin: (_ for _ in ()).throw(KeyboardInterrupt()))

    def emit(event: Any) -> None:
        if event.as_dict()["event"] == "step_failed":
            os.kill(os.getpid(), signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        raise SecondInterrupt()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        path = tmp_path / "book.yml"
        path.write_text(BOOK)
        run = Runner(playbook=playbook.load(path), pool=TransportPool(None, lambda host: fake), emit=emit)
        bound = run.bind(Host(name="h1", address="127.0.0.1"), {})
        run.run(bound, mode="apply")
        outcome = run.apply(bound)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "interrupted (Ctrl-C)" in outcome.message and "every applied step was rolled back" in outcome.message
    assert fake.files["/etc/app.conf"].content == b"old\n"
    assert journal.history("h1")[0]["outcome"] == "rolled-back"


ONE_FILE = """\
name: unit
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "new\\n"}
"""


def test_a_lock_that_cannot_be_released_is_said_and_not_exit_0(tmp_path: Path) -> None:
    """The change is applied and verified, then the lock's release (which carries the host's last journal copy)
    fails: the run says so and exits 1, the journal keeps why, and the next run's refusal says there is nothing to
    roll back (break the lock once the host is checked), not "roll that run back"."""
    fake = FakeTransport(name="h1")
    fake.put("/etc/app.conf", "old\n")
    fake.fail_write = lambda path: path.endswith("journal.json") and fake.files["/etc/app.conf"].content == b"new\n"
    events: list[dict[str, Any]] = []
    run, bound = runner_for(tmp_path, fake, events, ONE_FILE)
    run.run(bound, mode="apply")
    outcome = run.apply(bound)
    assert outcome.status == "changed" and outcome.exit_code == EXIT_ERROR, outcome
    assert "could not release its lock" in outcome.message and "--break-lock" in outcome.message
    assert [(e["outcome"], e["exit_code"]) for e in events if e["event"] == "run_finished"] == [("applied", EXIT_ERROR)]
    assert "could not release its lock" in journal.history("h1")[0]["lock_left"]
    again, bound = runner_for(tmp_path, fake, [], ONE_FILE.replace("new", "newer"))
    again.run(bound, mode="apply")
    with pytest.raises(ConflictError) as refused:
        again.apply(bound)
    assert "stale lock" in str(refused.value) and "nothing to roll back" in (refused.value.hint or "")
    path = next(p for p in fake.files if p.endswith("/lock"))
    lock.take(fake, path, outcome.run_id, take_over=outcome.run_id)  # a rollback of that run takes it anew
    held = lock.peek(fake, path)
    assert held is not None and held.alive is True  # its taker lives: never called stale for the run's old failure


@pytest.mark.parametrize("fails", [True, False])
def test_older_backups_are_pruned_only_once_the_run_is_verified(tmp_path: Path, fails: bool) -> None:
    """keep: 1 prunes the two older backups, as the plan says, but only once every step is verified (the host-side
    code, on this machine): a run rolled back keeps all of them."""
    from remediate.transport.local import LocalTransport

    srv = tmp_path / "srv"
    srv.mkdir()
    conf = srv / "app.conf"
    conf.write_text("old\n")
    older = [srv / f"app.conf.backup-2024010{n}T000000Z" for n in (1, 2)]
    for path in older:
        path.write_text(f"{path.name}\n")
    book = tmp_path / "book.yml"
    book.write_text(f"name: unit\nsteps:\n  - id: backup\n    kind: backup\n    params: {{path: {conf}, keep: 1}}\n"
                    f"  - id: conf\n    kind: file\n    params: {{path: {conf}, content: \"new\\n\"}}\n"
                    f"  - id: prove\n    kind: command\n    params: {{command: ['{'false' if fails else 'true'}'], "
                    f"unless: ['false'], verify: ['true'], undo: ['true']}}\n")
    local = LocalTransport(name="h1")
    run = Runner(playbook=playbook.load(book), pool=TransportPool(None, lambda host: local), emit=lambda e: None)
    bound = run.bind(Host(name="h1", address="127.0.0.1", vars={"remediate_state_dir": str(tmp_path / "state")}), {})
    run.run(bound, mode="apply")
    assert [f"rm -f -- {p}" for p in older] == list(bound.plans[0].commands[1:])  # the plan shows the prune
    outcome = run.apply(bound)
    if fails:
        assert outcome.exit_code == EXIT_ERROR and conf.read_text() == "old\n", outcome.message
        assert all(p.exists() for p in older)
    else:
        assert outcome.exit_code == EXIT_OK and conf.read_text() == "new\n", outcome.message
        assert not any(p.exists() for p in older)
        entry = journal.history("h1")[0]["steps"][0]
        assert "pruned 2 older backup(s)" in entry["settled"]
        said = bound.steps[0].rollback(bound.ctx, entry)  # a later rollback says they are gone, never "none pruned"
        assert "the run had succeeded and 2 older backup(s)" in said and "none was pruned" not in said


def test_a_ctrl_c_while_a_verified_run_settles_waits_for_its_end(tmp_path: Path, fake: FakeTransport,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step is verified; Ctrl-C lands during a step's settle (a backup's prune): the run still ends applied,
    its journal with it, never left "running" to be offered for a rollback."""
    from remediate.kinds.file import FileContent

    def settle(self: Any, ctx: Any, plan: Any, entry: Any) -> str:
        os.kill(os.getpid(), signal.SIGINT)
        return "settled"
    monkeypatch.setattr(FileContent, "settle", settle)

    def handler(signum: int, frame: Any) -> None:
        raise SecondInterrupt()
    previous = signal.signal(signal.SIGINT, handler)
    try:
        run, bound = runner_for(tmp_path, fake, [], ONE_FILE)
        run.run(bound, mode="apply")
        outcome = run.apply(bound)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert outcome.exit_code == EXIT_OK and journal.history("h1")[0]["outcome"] == "applied"
    assert journal.history("h1")[0]["steps"][0]["settled"] == "settled"
