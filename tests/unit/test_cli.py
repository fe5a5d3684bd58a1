from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from remediate.cli import main as cli
from remediate.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK

from .conftest import BOOK


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, list(args))
    return result.exit_code, result.output


def test_plan_exit_codes_follow_terraforms_detailed_exitcode(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    code, out = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_CHANGES, out
    assert "-old" in out and "+new" in out
    code, out = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book), "-e", "wanted=old")
    assert code == EXIT_OK, out
    assert "nothing to do" in out
    assert fake.writes == []


def test_apply_without_a_terminal_or_yes_refuses(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    code, out = invoke("apply", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_ERROR
    assert "refusing to apply without confirmation" in out and "--yes" in out
    assert fake.writes == []


def test_apply_yes_then_again_is_a_noop_and_runs_lists_it(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    code, out = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_OK, out
    assert fake.files["/etc/app.conf"].content == b"new\n"
    code, out = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_OK and "nothing to do" in out
    code, out = invoke("runs", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["outcome"] for r in rows] == ["applied"]
    assert rows[0]["host"] == "h1" and rows[0]["steps"] == "1/1"


def test_dry_run_is_plan(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    code, _ = invoke("apply", "--dry-run", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_CHANGES
    assert fake.writes == []


def test_json_events_tell_the_whole_run(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, _ = setup
    code, out = invoke("apply", "--yes", "--json", "--host", "h1", "-i", str(inv), "-p", str(book))
    events = [json.loads(line) for line in out.splitlines()]
    assert code == EXIT_OK
    assert [e["event"] for e in events] == ["run_started", "step_planned", "step_started", "step_applied", "step_verified",
                                            "run_finished", "summary"]
    assert events[1]["diffs"][0]["path"] == "/etc/app.conf"
    assert all("ts" in e for e in events)


@pytest.mark.parametrize(("args", "words"), [
    (("-e", "oops"), "expected key=value"),
    (("--host", "nosuch"), "no host or group named 'nosuch'"),
    (("-p", "/nonexistent/book.yml"), "no such playbook"),
])
def test_bad_input_exits_1_and_touches_nothing(setup, args: tuple[str, ...], words: str) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    base = ["plan", "-i", str(inv), "-p", str(book)]
    if "--host" not in args:
        base += ["--host", "h1"]
    code, out = invoke(*base, *args)
    assert code == EXIT_ERROR, out
    assert words in out
    assert fake.ran == [] and fake.writes == []


def test_json_errors_are_events(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, _ = setup
    code, out = invoke("plan", "--json", "--host", "nosuch", "-i", str(inv), "-p", str(book))
    event = json.loads(out.splitlines()[-1])
    assert code == EXIT_ERROR and event["event"] == "error" and "nosuch" in event["message"]


def test_usage_errors_exit_1_not_2(tmp_path: Path) -> None:
    done = subprocess.run(["remediate", "plan"], capture_output=True, text=True)
    assert done.returncode == EXIT_ERROR
    assert "Missing option '--host'" in done.stderr


def test_a_failure_is_told_once_on_screen(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    book.write_text(BOOK + "  - id: check\n    kind: command\n"
                           "    params: {command: [probe-service], creates: /etc/never, undo: [\"true\"]}\n")
    fake.expect(["probe-service"], (7, "", "service answered 503 Service Unavailable"))
    fake.expect(["true"])
    code, out = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_ERROR, out
    assert out.count("503 Service Unavailable") == 1, out
    assert "(see above)" in out and "every applied step was rolled back" in out


def test_plan_with_json_ends_with_run_finished(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    code, out = invoke("plan", "--json", "--host", "h1", "-i", str(inv), "-p", str(book))
    events = [json.loads(line) for line in out.splitlines()]
    finished = [e for e in events if e["event"] == "run_finished"]
    assert code == EXIT_CHANGES and finished and finished[0]["outcome"] == "pending" and finished[0]["exit_code"] == 2


def test_runs_show_tells_one_run_step_by_step(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    code, out = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_OK, out
    run_id = json.loads(CliRunner().invoke(cli.cli, ["runs", "--json"]).output.splitlines()[0])["run_id"]
    code, out = invoke("runs", "show", run_id[:12])
    assert code == EXIT_OK, out
    assert f"run {run_id}" in out and "conf (file): verified" in out and "file /etc/app.conf: sha256" in out
    record = json.loads(CliRunner().invoke(cli.cli, ["runs", "show", run_id, "--json"]).output)
    assert record["event"] == "run" and record["steps"][0]["files"][0]["path"] == "/etc/app.conf"
    code, out = invoke("runs", "show", "2")
    assert code == EXIT_ERROR and "at least 11 characters" in out


def test_apply_right_after_plan_does_not_print_the_same_diffs_again(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    code, out = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert "+new" in out
    code, out = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_OK, out
    assert "+new" not in out and "its diffs are not repeated" in out and "conf (file on host) will change" in out
    fake.put("/etc/app.conf", "other\n")
    code, out = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert "+new" in out  # a plan that differs from what was shown is shown in full


def test_a_saved_plan_is_applied_exactly_or_refused(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    planfile = tmp_path / "fix.plan"
    code, out = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book), "--out", str(planfile))
    assert code == EXIT_CHANGES and planfile.exists() and (planfile.stat().st_mode & 0o777) == 0o600, out
    code, out = invoke("show", str(planfile))
    assert code == EXIT_OK and "+new" in out and "h1" in out
    fake.put("/etc/app.conf", "someone else's edit\n")  # the host changed after the plan was reviewed
    code, out = invoke("apply", str(planfile))
    assert code == EXIT_ERROR and "not as the saved plan saw it" in out and "conf" in out
    assert fake.files["/etc/app.conf"].content == b"someone else's edit\n"
    fake.put("/etc/app.conf", "old\n")
    code, out = invoke("apply", str(planfile))  # no --yes: a saved plan was reviewed when it was saved
    assert code == EXIT_OK, out
    assert fake.files["/etc/app.conf"].content == b"new\n"
    doc = json.loads(planfile.read_text())
    doc["extra"]["wanted"] = "evil"
    planfile.write_text(json.dumps(doc))
    code, out = invoke("apply", str(planfile))
    assert code == EXIT_ERROR and "changed after it was saved" in out
    code, out = invoke("apply", str(planfile), "--host", "h1")
    assert code != EXIT_OK and "names its hosts" in out


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["runs"], ["runs", "--json"]])
def test_help_version_and_runs_load_no_ssh_or_terminal_library(args: list[str]) -> None:
    probe = ("import sys\nfrom remediate.cli import main as cli\ntry:\n    cli.main()\nexcept SystemExit:\n    pass\n"
             "heavy = sorted(m for m in ('paramiko', 'fabric', 'invoke', 'rich', 'ruamel') if m in sys.modules\n"
             "               and type(sys.modules[m]).__name__ != 'Deferred')  # invoke's stand-in: not loaded\n"
             "sys.stderr.write('HEAVY=' + ','.join(heavy))\n")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60)
    assert "HEAVY=" in done.stderr and done.stderr.rsplit("HEAVY=", 1)[1] == "", done.stderr


def test_the_collector_is_held_back_at_start_and_runs_again_once_a_command_has_loaded() -> None:
    import gc

    from remediate import collector

    gc.disable()
    try:
        collector.started()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        collector.started()  # again (each command that loads the library calls it): nothing more to do
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
