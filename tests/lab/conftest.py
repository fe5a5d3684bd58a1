from __future__ import annotations

import pytest

from . import labctl


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_up() -> None:
    missing = labctl.why_not_up()
    if missing:
        if labctl.ci():
            pytest.fail(f"the lab is not up in CI: {missing}")
        pytest.skip(missing)


@pytest.fixture
def broken_lab(lab_up: None) -> None:
    """The lab in the incident's broken state, fresh for this test."""
    labctl.reset()
