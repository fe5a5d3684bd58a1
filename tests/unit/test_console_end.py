"""The console script ends the process without the interpreter's teardown (entry.console): what it prints, its
status, the exit's registered functions and other threads' work are all as Python's own exit leaves them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from remediate.cli import entry

EXIT_WITH = """
import atexit, sys, threading
from remediate.cli.entry import end
atexit.register(lambda: print("exit function ran", file=sys.stderr))
{before}
end({status})
"""


def ended(status: str, before: str = "") -> subprocess.CompletedProcess[str]:
    code = EXIT_WITH.format(status=status, before=before)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONUNBUFFERED": ""})


@pytest.mark.parametrize(("status", "code"), [("None", 0), ("0", 0), ("2", 2), ("7", 7)])
def test_the_status_is_the_commands(status: str, code: int) -> None:
    done = ended(status)
    assert done.returncode == code
    assert done.stderr.count("exit function ran") == 1  # run once: not again by Python's exit


@pytest.mark.parametrize(("status", "code"), [("2**32 + 5", 5), ("-1", 255), ("True", 1)])
def test_a_status_only_python_takes_ends_as_python_ends_it(status: str, code: int) -> None:
    done = ended(status)
    assert (done.returncode, done.stderr.count("exit function ran")) == (code, 1)
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("closed", [">&-", "2>&-"])
def test_a_stream_closed_from_the_start_changes_nothing(closed: str) -> None:
    """A descriptor closed when the process began (`remediate ... >&-`): Python has no stream for it (None)."""
    code = EXIT_WITH.format(status="2", before="print('shown')")
    done = subprocess.run(["sh", "-c", f'exec "$0" -c "$1" {closed}', sys.executable, code], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "AttributeError" not in done.stderr


def test_a_message_status_is_shown_and_ends_with_1() -> None:
    done = ended("'cannot go on'")
    assert done.returncode == 1
    assert "cannot go on" in done.stderr


def test_buffered_output_is_flushed_whole() -> None:
    """stdout is a pipe here, so block-buffered: what is still in the buffer reaches the reader."""
    done = ended("0", before="sys.stdout.write('x' * 200_000 + '\\nlast line')")
    assert done.returncode == 0
    assert done.stdout.endswith("x\nlast line")
    assert len(done.stdout) == 200_000 + len("\nlast line")


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    """A thread that is not a daemon finishes its work, as Python's own exit waits for it. Its work begins only once
    the main thread has ended: a process ended at once would never see it."""
    mark = tmp_path / "done"
    before = (f"def work():\n    threading.main_thread().join()\n    open({str(mark)!r}, 'w').write('finished')\n"
              "threading.Thread(target=work).start()")
    done = ended("3", before=before)
    assert done.returncode == 3
    assert mark.read_text() == "finished"


def test_console_ends_with_the_command_lines_status(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def fake_main() -> None:
        raise SystemExit(2)

    monkeypatch.setattr(entry, "main", fake_main)
    monkeypatch.setattr(entry, "end", lambda status: seen.append(status))
    entry.console()
    assert seen == [2]


def test_the_installed_command_is_console() -> None:
    """pyproject's console script is the one that ends at once (main stays importable for tests and benches)."""
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert 'remediate = "remediate.cli.entry:console"' in text


@pytest.mark.parametrize("closed", [">&-", "2>&-"])
def test_a_command_that_held_a_temporal_client_ends_with_its_code_whatever_stream_is_closed(closed: str) -> None:
    """cli.backend.exits_at_once: such a command ends with os._exit; a stream closed from the start is no stream."""
    code = """
import sys, threading, types
client = types.ModuleType("remediate.serve.temporal.rollout_client")
client.CONNECTED = threading.Event()
client.CONNECTED.set()
sys.modules[client.__name__] = client
from remediate.cli.backend import exits_at_once
exits_at_once(lambda: sys.exit(2))()
"""
    done = subprocess.run(["sh", "-c", f'exec "$0" -c "$1" {closed}', sys.executable, code], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
