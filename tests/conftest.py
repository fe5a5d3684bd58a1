from __future__ import annotations

import faulthandler
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """scripts/test's timeout sends SIGUSR1 before it kills a pytest that hangs: every thread's stack is printed first,
    so a hung run says where. On a copy of fd 2 made here, where pytest's capture is paused (as its own faulthandler
    plugin does): during a test, fd 2 is that test's capture, which nobody reads once pytest is killed."""
    faulthandler.register(signal.SIGUSR1, file=os.dup(2), all_threads=True)


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own journal directory and HOME (known_hosts, ssh config, the cache folder)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("REMEDIATE_BECOME_PASSWORD", raising=False)
    monkeypatch.delenv("REMEDIATE_INVENTORY", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # the agent's kept code, when kept there: under HOME
    return tmp_path


@pytest.fixture(autouse=True)
def umask_kept() -> Iterator[None]:
    """Every test leaves the process's umask as it found it. launch.serve sets serve's (077) for good, and unit tests
    call it in-process: the tests after them made their files 0600 and folders 0700, and an integration sshd that
    reads authorized keys as the login user refused every login (why tests/integration failed when run after
    tests/unit in one pytest, as scripts/test's second pytest did)."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


@pytest.fixture(autouse=True)
def signals_kept() -> Iterator[None]:
    """Every test leaves SIGTERM's and SIGHUP's handlers as it found them. The CLI, run in-process, makes SIGTERM roll
    back like Ctrl-C (undo.terminate_as_interrupt): left in place, it turned the SIGTERM of scripts/test's timeout
    into an exception inside pytest's exit."""
    before = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for number, handler in before.items():
        if handler is not None:
            signal.signal(number, handler)
