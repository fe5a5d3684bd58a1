"""Fixtures the unit tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediate import api as session

from .fakes import FakeTransport

BOOK = """\
name: unit
steps:
  - id: conf
    kind: file
    params: {path: /etc/app.conf, content: "{{ wanted }}\\n"}
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, FakeTransport]:
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n      wanted: new\n")
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    fake = FakeTransport(name="h1")
    fake.put("/etc/app.conf", "old\n")
    monkeypatch.setattr(session, "ssh_factory", lambda opts, emit, pw: (lambda host: fake))
    return inv, book, fake
