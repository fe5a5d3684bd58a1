"""The pytest plug-in (entry point group pytest11): the `remediate_lab` fixture, and the `lab` marker on the tests
that use it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.testkit.lab import Lab, find_lab, why_not_up


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: needs the real lab (sshd, dockerd, Postfix, Dovecot); bring it up with "
                                       "lab/up")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for remediate_lab needs the lab: `-m 'not lab'` leaves it out."""
    for item in items:
        if "remediate_lab" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def remediate_lab_folder(request: pytest.FixtureRequest) -> Path:
    """The lab's folder, checked up once a session: where it is not, the test fails in CI (CI=true) and is skipped
    elsewhere, saying what is missing."""
    folder = find_lab(Path(str(request.config.rootpath)))
    missing = why_not_up(folder)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the lab is not up in CI: {missing}")
        pytest.skip(missing)
    assert folder is not None
    return folder


@pytest.fixture
def remediate_lab(remediate_lab_folder: Path, tmp_path: Path) -> Iterator[Lab]:
    """The shared lab, reset to its broken state for this test (lab/reset: seconds; nothing rebuilt), with this
    test's own inventory copy and run records; the compose projects the test brought are taken down after it."""
    lab = Lab(remediate_lab_folder, tmp_path / "remediate-lab")
    lab.reset()
    try:
        yield lab
    finally:
        lab.close()
