"""Step kinds as plug-ins: a kind from another installed package works in a playbook with no change to remediate."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from remediate import playbook
from remediate.context import TransportPool
from remediate.inventory import Host
from remediate.runner import Runner
from remediate.steps import ORIGIN, REGISTRY, load_kinds

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
    done = subprocess.run(["remediate", "kinds", "--json"], capture_output=True, text=True, timeout=60)
    kinds = {e["kind"]: e for e in map(json.loads, done.stdout.splitlines())}
    assert {"file", "relay-transport", "example-greeting"} <= set(kinds)
    assert kinds["example-greeting"]["package"].startswith("remediate-example-kind")
    done = subprocess.run(["remediate", "kinds", "example-greeting"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "kind: example-greeting" in done.stdout and "name: <string>" in done.stdout


def test_every_package_of_the_source_tree_is_in_the_wheel() -> None:
    """A package left out of pyproject's list works from a checkout and breaks every real install."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "remediate").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages"
