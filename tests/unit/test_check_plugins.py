"""Check types as plug-ins: a check type from another installed package works in diagnose: and in an assert step, and
`remediate checks` shows it with its parameters, as step kinds are (test_plugins.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import remediate
from remediate import diagnostics
from remediate.diagnostics import ORIGIN, REGISTRY, diagnose, load_checks
from remediate.diagnostics.container import ContainerRunning
from remediate.engine.context import TransportPool
from remediate.engine.runner import Runner
from remediate.errors import InputError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host

from .fakes import FakeTransport
from .test_plugins import FakeDist, FakeEntry, example_kind  # noqa: F401 - example_kind: a fixture used here


@contextmanager
def fresh_checks() -> Iterator[None]:
    """The check type registry as if none were loaded yet; as it was, afterwards."""
    tables = (REGISTRY, ORIGIN, diagnostics.BROKEN)
    saved = [dict(t) for t in tables]
    for table in tables:
        table.clear()
    try:
        yield
    finally:
        for table, before in zip(tables, saved):
            table.clear()
            table.update(before)  # type: ignore[attr-defined]


@pytest.fixture
def example(example_kind: dict[str, str]) -> Iterator[dict[str, str]]:  # noqa: F811 - the imported fixture
    with fresh_checks():
        yield example_kind


def test_a_check_type_from_another_package_is_found_through_its_entry_point(example: dict[str, str]) -> None:
    load_checks()
    assert REGISTRY["example-greets"].__module__ == "remediate_example_kind"
    assert ORIGIN["example-greets"].startswith("remediate-example-kind ")
    assert ORIGIN["log-signature"].startswith("remediate")  # the shipped check types register the same way
    assert not diagnostics.shipped_check("example-greets") and diagnostics.shipped_check("relay-target")


def test_remediate_checks_lists_the_plugin_check_type_with_its_parameters(example: dict[str, str]) -> None:
    done = subprocess.run(["remediate", "checks", "--json"], capture_output=True, text=True, timeout=60, check=False,
                          env=example)
    types = {e["check"]: e for e in map(json.loads, done.stdout.splitlines())}
    assert {"log-signature", "relay-target", "example-greets"} <= set(types), done.stdout + done.stderr
    assert [p["name"] for p in types["example-greets"]["params"]] == ["path", "name"]
    done = subprocess.run(["remediate", "checks", "example-greets"], capture_output=True, text=True, timeout=60,
                          check=False, env=example)
    assert done.returncode == 0 and "check: example-greets" in done.stdout and "name: <string>" in done.stdout
    assert "who must be greeted" in done.stdout


def test_the_catalog_names_a_plugin_check_types_own_package(example: dict[str, str]) -> None:
    from remediate.api import catalog
    [greets] = catalog.checks("example-greets")
    assert greets.package.startswith("remediate-example-kind ") and greets.plugin is True
    assert greets.as_dict()["plugin"] is True
    [shipped] = catalog.checks("relay-target")
    assert shipped.package == f"remediate {remediate.__version__}" and shipped.plugin is False


BOOK = """\
name: greet
steps:
  - id: greet
    kind: example-greeting
    params: {path: /etc/greeting, name: operator}
  - id: greeted
    kind: assert
    params: {check: example-greets, path: /etc/greeting, name: operator}
diagnose:
  - id: greeted
    check: example-greets
    fix: greet
    params: {path: /etc/greeting, name: operator}
"""


def test_a_plugin_check_type_diagnoses_and_proves_a_step(example: dict[str, str], tmp_path: Path) -> None:
    book = tmp_path / "book.yml"
    book.write_text(BOOK)
    fake = FakeTransport(name="h1")
    fake.put("/etc/greeting", "hi\n")
    loaded = playbook.load(book)
    found = diagnose.run(loaded.checks(Host(name="h1", address="x"), {}, {"greet": "greet"}), fake)
    assert [(c.ok, c.evidence) for c in found.checks] == [(False, "/etc/greeting says 'hi'")]
    runner = Runner(playbook=loaded, pool=TransportPool(None, lambda h: fake), emit=lambda event: None)
    bound = runner.bind(Host(name="h1", address="127.0.0.1"), {})
    assert runner.run(bound, mode="apply").exit_code == 2
    assert bound.plans[1].reason == "prove example-greets after greet; now: /etc/greeting says 'hi'"
    assert runner.apply(bound).exit_code == 0  # the assert step proved the greeting
    assert fake.files["/etc/greeting"].content == b"hello, operator\n"


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Fake check type entry points next to the real ones, with the registry as if none were loaded yet."""
    real = list(diagnostics.entry_points(group=diagnostics.ENTRY_POINTS))

    def install(*fakes: FakeEntry) -> None:
        monkeypatch.setattr(diagnostics, "entry_points", lambda group: [*real, *fakes])

    with fresh_checks():
        yield install


class Shadow(ContainerRunning):
    """A plug-in's own container-running."""


def test_a_plugin_may_not_shadow_a_shipped_check_type(installed: Callable[..., None]) -> None:
    installed(FakeEntry("container-running", "evil:Shadow", FakeDist({"Name": "evil-checks", "Version": "6.6"}), Shadow))
    with pytest.raises(InputError, match=r"check type 'container-running' is given by two installed packages, "
                                         r"remediate \S+ and evil-checks 6.6; refusing to choose one"):
        load_checks()


def test_a_broken_check_plugin_is_named_where_it_is_used(installed: Callable[..., None]) -> None:
    installed(FakeEntry("broken-check", "broken:Check", FakeDist({"Name": "broken-checks", "Version": "1.0"}),
                        ModuleNotFoundError("No module named 'broken'")),
              FakeEntry("not-a-check", "odd:Thing", FakeDist({"Name": "odd", "Version": "2"}), dict))
    load_checks()
    assert "log-signature" in REGISTRY  # the others load
    with pytest.raises(InputError, match=r"check type 'broken-check' \(broken:Check, from broken-checks 1.0\) cannot "
                                         r"be loaded: No module named 'broken'"):
        REGISTRY["broken-check"]
    with pytest.raises(InputError, match=r"check type 'not-a-check' \(odd:Thing, from odd 2\) is not a CheckType "
                                         r"subclass whose name is 'not-a-check'"):
        REGISTRY["not-a-check"]
