"""Issue #25, "a newcomer's first hour": what a new user ran into from a fresh clone, each kept fixed.

The scripts are run as a person runs them (bash, in a subprocess), against stand-ins for the lab and for pytest where
the real ones would take minutes; the CLI is run into a pipe, as `| less` or `| tee` would read it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REMEDIATE = str(Path(sys.executable).parent / "remediate")


def piped(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """remediate with stdout and stderr pipes, no terminal, no width from the environment."""
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run([REMEDIATE, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL, env={**base, **(env or {})})


# --- author item 7: human output in a pipe ---------------------------------------------------------------------------

LONG_BEFORE = "# 10 MB, too small for the attachments our customers send; raised to 50 MiB in the 2025-11 migration"
LONG_AFTER = "# 50 MB, big enough for the attachments our customers send; raised from 10 MiB in the 2025-11 migration"
LONG_COMMAND = "echo a command line that goes well past eighty columns of text, as restarts often do, to its very end"


def test_plan_in_a_pipe_keeps_long_diff_lines_and_commands_whole_and_unpadded(tmp_path: Path) -> None:
    """`remediate plan ... | less` cropped diff lines at 80 columns and padded every line with spaces."""
    target = tmp_path / "main.cf"
    target.write_text(f"a\n{LONG_BEFORE}\nb\n")
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    # Every step targets the operator's own machine (LocalTransport): nothing connects anywhere.
    (tmp_path / "book.yml").write_text(
        "name: long-lines\ndescription: a diff line and a command longer than a terminal\nsteps:\n"
        f"  - id: edit\n    kind: file\n    target: local\n    params:\n      path: {target}\n"
        f"      content: \"a\\n{LONG_AFTER}\\nb\\n\"\n"
        f"  - id: run\n    kind: command\n    target: local\n    params:\n      command: [sh, -c, \"{LONG_COMMAND}\"]\n")
    done = piped("plan", "--host", "h1", "-i", "inventory.yml", "-p", "book.yml", cwd=tmp_path,
                 env={"XDG_STATE_HOME": str(tmp_path / "state")})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert f"      -{LONG_BEFORE}" in lines and f"      +{LONG_AFTER}" in lines, done.stdout
    assert f"      $ sh -c '{LONG_COMMAND}' sh" in lines, done.stdout
    assert [line for line in lines if line != line.rstrip()] == [], "lines padded with spaces:\n" + done.stdout
    assert "\x1b" not in done.stdout  # no colour codes in a pipe
    assert target.read_text() == f"a\n{LONG_BEFORE}\nb\n"  # a plan changes nothing


# --- 2: scripts/test brings the lab up only for tests that need it -------------------------------------------------

def stand_in(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of scripts/test in a tree whose setup, lab/up and .venv/bin/python only note that they ran."""
    tree, calls = tmp_path / "clone", tmp_path / "calls"
    for folder in ("scripts", "lab", ".venv/bin", "tests/unit", "tests/integration", "tests/lab"):
        (tree / folder).mkdir(parents=True)
    (tree / "scripts" / "test").write_text((REPO / "scripts" / "test").read_text())
    (tree / "scripts" / "setup").write_text(f'echo setup >> {calls}\n')
    (tree / "lab" / "up").write_text(f'echo lab-up >> {calls}\n')
    (tree / ".venv" / "bin" / "python").write_text(f'#!/bin/sh\necho "python $*" >> {calls}\n')
    (tree / ".venv" / "bin" / "python").chmod(0o755)
    return tree, calls


def split(calls: list[str]) -> tuple[list[str], str]:
    """A split run's calls: the lab's side in order (setup, lab-up, its pytest), and the pytest beside it (started
    before lab/up, so its line may come anywhere after setup)."""
    beside = [c for c in calls if "cache_dir=.pytest_cache/no-lab" in c]
    assert len(beside) == 1, calls
    return [c for c in calls if c not in beside], beside[0]


def test_scripts_test_brings_the_lab_up_only_when_the_chosen_tests_need_it(tmp_path: Path) -> None:
    """`scripts/test tests/unit` reset the lab (lab/up does), and with it the hosts' journals, behind the back of
    this machine's run records; unit and integration tests need no lab."""
    tree, calls = stand_in(tmp_path)

    def run(*args: str) -> list[str]:
        calls.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(tree / "scripts" / "test"), *args], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return calls.read_text().splitlines()

    # CI's call, the whole suite: the tests that need no lab in a second pytest (its own basetemp and cache), started
    # before lab/up and running beside it and the lab's
    lab, beside = split(run())
    assert lab == ["setup", "lab-up", "python -m pytest -ra --durations=30 tests --ignore=tests/unit "
                                      "--ignore=tests/integration"], lab
    assert beside.startswith("python -m pytest -ra --durations=20 --basetemp=/tmp/remediate-test.") and \
        beside.endswith("/basetemp -o cache_dir=.pytest_cache/no-lab tests/unit tests/integration"), beside
    assert run("tests/unit") == ["setup", "python -m pytest -ra --durations=30 tests/unit"]
    assert run("tests/unit/test_cli.py::test_plan_exit_codes_follow_terraforms_detailed_exitcode", "-x",
               "./tests/integration/", "-k", "tests/lab") == \
        ["setup", "python -m pytest -ra --durations=30 tests/unit/test_cli.py::test_plan_exit_codes_follow_terraforms_detailed_exitcode "
                  "-x ./tests/integration/ -k tests/lab"]
    lab, beside = split(run("-x", "-k", "serve"))  # no path: everything, options to both
    assert lab == ["setup", "lab-up", "python -m pytest -ra --durations=30 -x -k serve tests --ignore=tests/unit "
                                      "--ignore=tests/integration"], lab
    assert beside.endswith("-o cache_dir=.pytest_cache/no-lab -x -k serve tests/unit tests/integration"), beside
    lab, beside = split(run("tests/unit", "tests/lab/test_demo.py", "-x"))  # tests on both sides: split, paths apart
    assert lab == ["setup", "lab-up", "python -m pytest -ra --durations=30 -x tests/lab/test_demo.py"], lab
    assert beside.endswith("/basetemp -o cache_dir=.pytest_cache/no-lab -x tests/unit"), beside
    assert run("tests")[:2] == ["setup", "lab-up"]


def test_scripts_test_fails_when_either_pytest_fails_and_says_both_summaries(tmp_path: Path) -> None:
    """The whole suite runs in two pytests side by side: a failure on either side fails the run, and the end of the
    output gives each side's exit status and pytest summary. pytest's 5 (nothing collected) on one side alone, as a
    -k that picks tests of one side gives, is no failure."""
    tree, calls = stand_in(tmp_path)
    (tree / ".venv" / "bin" / "python").write_text(
        f'#!/bin/sh\necho "python $*" >> {calls}\n'
        'case "$*" in *--ignore=tests/unit*) echo "=== 2 passed in 1.00s ==="; exit $LAB_RC ;; esac\n'
        'echo "=== 1 failed, 3 passed in 1.00s ==="; exit $QUICK_RC\n')

    def run(quick: int, lab: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(tree / "scripts" / "test")], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, env={**os.environ, "QUICK_RC": str(quick), "LAB_RC": str(lab)})

    assert run(0, 0).returncode == 0
    failed = run(1, 0)
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[-2:] == [
        "test: the lab's tests (tests --ignore=tests/unit --ignore=tests/integration): exit 0 === 2 passed in 1.00s ===",
        "test: beside them (tests/unit tests/integration): exit 1 === 1 failed, 3 passed in 1.00s ==="]
    assert run(0, 1).returncode == 1
    assert run(1, 2).returncode == 2
    assert run(5, 0).returncode == 0 and run(0, 5).returncode == 0 and run(5, 5).returncode == 5
    (tree / "lab" / "up").write_text("exit 3\n")  # lab/up failing fails the run, the second pytest stopped
    assert run(0, 0).returncode == 3


def test_setup_installs_the_package_again_only_when_pyproject_changed(tmp_path: Path) -> None:
    """scripts/setup ran pip install -e on every call, and scripts/demo (run by a lab test) calls it while the suite's
    other half runs: the reinstall took remediate's metadata (its kinds, its pytest plugin) away under it."""
    tree, calls = stand_in(tmp_path)
    (tree / "scripts" / "setup").write_text((REPO / "scripts" / "setup").read_text())
    (tree / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tree / ".venv" / "bin" / "python").write_text(
        f'#!/bin/sh\ncase "$*" in *pip*) echo "pip $*" >> {calls} ;; *version*) echo 3.11 ;; esac\n')

    def setup() -> list[str]:
        calls.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(tree / "scripts" / "setup")], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return calls.read_text().splitlines() if calls.exists() else []

    assert len(setup()) == 1  # a fresh .venv: installed
    assert setup() == []  # nothing changed: not again
    (tree / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['tenacity']\n")
    assert len(setup()) == 1  # a new dependency or entry point: installed again


# --- 1: scripts/demo --help ----------------------------------------------------------------------------------------

def test_demo_help_says_what_it_does_and_installs_nothing(tmp_path: Path) -> None:
    """`scripts/demo --help` printed only a usage line, and exited 1."""
    tree, calls = stand_in(tmp_path)
    (tree / "scripts" / "demo").write_text((REPO / "scripts" / "demo").read_text())
    for flag in ("--help", "-h"):
        done = subprocess.run(["bash", str(tree / "scripts" / "demo"), flag], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert done.stdout.startswith("usage: scripts/demo [--alert [INCIDENT]] [--help]\n")
        for words in ("remediate plan --host ec2-mx", "remediate apply --host ec2-mx --yes", "  --alert ",
                      "Alertmanager", "  --help "):
            assert words in done.stdout, words
    assert not calls.exists()  # neither setup nor the lab ran
    wrong = subprocess.run(["bash", str(tree / "scripts" / "demo"), "--alret"], capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
    assert wrong.returncode == 1 and "unknown option --alret" in wrong.stderr and "usage:" in wrong.stderr
    assert not calls.exists()
