"""Step kinds as plug-ins: a kind from another installed package works in a playbook with no change to remediate."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediate import playbook, steps
from remediate.context import TransportPool
from remediate.errors import InputError
from remediate.inventory import Host
from remediate.runner import Runner
from remediate.steps import ORIGIN, REGISTRY, load_kinds
from remediate.steps.file import FileContent

from .fakes import FakeTransport


def test_a_kind_from_another_package_is_found_through_its_entry_point() -> None:
    load_kinds()
    assert REGISTRY["example-greeting"].__module__ == "remediate_example_kind"
    assert ORIGIN["example-greeting"].startswith("remediate-example-kind ")
    assert ORIGIN["file"].startswith("remediate ")  # the shipped kinds register the same way


def test_a_playbook_uses_the_plugin_kind_with_diff_journal_and_rollback(tmp_path: Path) -> None:
    book = tmp_path / "book.yml"
    book.write_text("name: hello\nsteps:\n  - id: greet\n    kind: example-greeting\n"
                    "    params: {path: /etc/greeting, name: operator}\n")
    fake = FakeTransport(name="h1")
    fake.put("/etc/greeting", "hi\n")
    events: list[dict] = []
    runner = Runner(playbook=playbook.load(book), pool=TransportPool(None, lambda h: fake), emit=events.append)
    bound = runner.bind(Host(name="h1", address="127.0.0.1"), {})
    assert runner.check(bound, mode="apply").exit_code == 2
    assert "+hello, operator" in bound.plans[0].files[0].diff()
    assert runner.apply(bound).exit_code == 0
    assert fake.files["/etc/greeting"].content == b"hello, operator\n"


def test_remediate_kinds_lists_the_plugin_and_shows_one_with_an_example() -> None:
    done = subprocess.run(["remediate", "kinds", "--json"], capture_output=True, text=True, timeout=60, check=False)
    kinds = {e["kind"]: e for e in map(json.loads, done.stdout.splitlines())}
    assert {"file", "relay-transport", "example-greeting"} <= set(kinds)
    assert kinds["example-greeting"]["package"].startswith("remediate-example-kind")
    done = subprocess.run(["remediate", "kinds", "example-greeting"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "kind: example-greeting" in done.stdout and "name: <string>" in done.stdout


def test_every_package_of_the_source_tree_is_in_the_wheel() -> None:
    """A package left out of pyproject's list works from a checkout and breaks every real install."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "remediate").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"


@dataclass(frozen=True)
class FakeDist:
    metadata: dict[str, str]


@dataclass(frozen=True)
class FakeEntry:
    """An entry point of group remediate.kinds as importlib.metadata gives it: a name, a target, a distribution."""

    name: str
    value: str
    dist: FakeDist
    target: Any

    def load(self) -> Any:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install fake plug-in entry points next to the real ones, with the registry as if no kind were loaded yet."""
    real = list(steps.entry_points(group=steps.ENTRY_POINTS))
    kinds, origins, broken = dict(REGISTRY), dict(ORIGIN), dict(steps.BROKEN)
    for table in (REGISTRY, ORIGIN, steps.BROKEN):
        table.clear()

    def install(*fakes: FakeEntry) -> None:
        monkeypatch.setattr(steps, "entry_points", lambda group: [*real, *fakes])

    yield install
    for table in (REGISTRY, ORIGIN, steps.BROKEN):
        table.clear()
    REGISTRY.update(kinds)
    ORIGIN.update(origins)
    steps.BROKEN.update(broken)


class Shadow(FileContent):
    """A plug-in's own `file`."""


def test_a_plugin_may_not_shadow_a_shipped_kind(installed: Callable[..., None]) -> None:
    installed(FakeEntry("file", "evil_kinds:Shadow", FakeDist({"Name": "evil-kinds", "Version": "6.6"}), Shadow))
    with pytest.raises(InputError, match=r"step kind 'file' is given by two installed packages, remediate \S+ and "
                                         r"evil-kinds 6.6; refusing to choose one"):
        load_kinds()
    with pytest.raises(InputError, match="evil-kinds"):
        playbook.load(playbook.locate("toy"))


def test_a_broken_plugin_fails_only_the_playbooks_that_use_it(installed: Callable[..., None], tmp_path: Path) -> None:
    installed(FakeEntry("broken-kind", "broken_kinds:Kind", FakeDist({"Name": "broken-kinds", "Version": "1.0"}),
                        ModuleNotFoundError("No module named 'broken_kinds'")))
    assert playbook.load(playbook.locate("toy")).steps
    book = tmp_path / "book.yml"
    book.write_text("name: b\nsteps:\n  - id: a\n    kind: file\n    params: {path: /x, content: x}\n"
                    "  - id: b\n    kind: broken-kind\n")
    with pytest.raises(InputError, match=rf"^{book}:7: step 'b': step kind 'broken-kind' \(broken_kinds:Kind, from "
                                         r"broken-kinds 1.0\) cannot be loaded: No module named 'broken_kinds'"):
        playbook.load(book)
    with pytest.raises(InputError, match="cannot be loaded"):  # rolling back a run of that kind says why it cannot
        REGISTRY["broken-kind"]
