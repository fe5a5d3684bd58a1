from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own journal directory and HOME (known_hosts, ssh config)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("REMEDIATE_BECOME_PASSWORD", raising=False)
    monkeypatch.delenv("REMEDIATE_INVENTORY", raising=False)
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
