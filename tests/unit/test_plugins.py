"""Step kinds as plug-ins: a kind from another installed package works in a playbook with no change to remediate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediate import kinds as steps
from remediate.contract.plan import Plan
from remediate.engine.context import TransportPool
from remediate.engine.runner import Runner
from remediate.errors import InputError
from remediate.inputs import playbook
from remediate.inputs.inventory import Host
from remediate.kinds import ORIGIN, REGISTRY, Param, Step, load_kinds
from remediate.kinds.file import FileContent

from .fakes import FakeTransport

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "remediate-example-kind"


@contextmanager
def fresh_registry() -> Iterator[None]:
    """The kind registry as if no kind were loaded yet; as it was, afterwards."""
    kinds, origins, broken = dict(REGISTRY), dict(ORIGIN), dict(steps.BROKEN)
    for table in (REGISTRY, ORIGIN, steps.BROKEN):
        table.clear()
    try:
        yield
    finally:
        for table in (REGISTRY, ORIGIN, steps.BROKEN):
            table.clear()
        REGISTRY.update(kinds)
        ORIGIN.update(origins)
        steps.BROKEN.update(broken)


@pytest.fixture
def example_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """tests/plugins/remediate-example-kind installed for this test alone, as pip would make it visible: its package
    on the path and its metadata (name, version, the entry points of its pyproject.toml) in a throw-away site folder.
    It is not installed for everyone, so it never shows in an operator's `remediate kinds`. Gives the environment a
    subprocess needs to see it too."""
    import tomllib
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
                                                   for group, points in project["entry-points"].items()))
    for folder in (PLUGIN, info.parent):
        monkeypatch.syspath_prepend(str(folder))
    with fresh_registry():
        yield {**os.environ, "PYTHONPATH": os.pathsep.join([str(info.parent), str(PLUGIN)])}


def test_a_kind_from_another_package_is_found_through_its_entry_point(example_kind: dict[str, str]) -> None:
    load_kinds()
    assert REGISTRY["example-greeting"].__module__ == "remediate_example_kind"
    assert ORIGIN["example-greeting"].startswith("remediate-example-kind ")
    assert ORIGIN["file"].startswith("remediate")  # the shipped kinds register the same way


def test_a_playbook_uses_the_plugin_kind_with_diff_journal_and_rollback(tmp_path: Path,
                                                                       example_kind: dict[str, str]) -> None:
    book = tmp_path / "book.yml"
    book.write_text("name: hello\nsteps:\n  - id: greet\n    kind: example-greeting\n"
                    "    params: {path: /etc/greeting, name: operator}\n")
    fake = FakeTransport(name="h1")
    fake.put("/etc/greeting", "hi\n")
    events: list[dict] = []
    runner = Runner(playbook=playbook.load(book), pool=TransportPool(None, lambda h: fake), emit=events.append)
    bound = runner.bind(Host(name="h1", address="127.0.0.1"), {})
    assert runner.run(bound, mode="apply").exit_code == 2
    assert "+hello, operator" in bound.plans[0].files[0].diff()
    assert runner.apply(bound).exit_code == 0
    assert fake.files["/etc/greeting"].content == b"hello, operator\n"


def test_remediate_kinds_lists_the_plugin_and_shows_one_with_an_example(example_kind: dict[str, str]) -> None:
    done = subprocess.run(["remediate", "kinds", "--json"], capture_output=True, text=True, timeout=60, check=False,
                          env=example_kind)
    kinds = {e["kind"]: e for e in map(json.loads, done.stdout.splitlines())}
    assert {"file", "relay-transport", "example-greeting"} <= set(kinds)
    assert kinds["example-greeting"]["package"].startswith("remediate-example-kind")
    assert kinds["example-greeting"]["plugin"] and not kinds["file"]["plugin"]
    done = subprocess.run(["remediate", "kinds", "example-greeting"], capture_output=True, text=True, timeout=60,
                          check=False, env=example_kind)
    assert done.returncode == 0 and "kind: example-greeting" in done.stdout and "name: <string>" in done.stdout
    assert "from remediate-example-kind 0.1.0, a plug-in" in done.stdout


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

    def install(*fakes: FakeEntry) -> None:
        monkeypatch.setattr(steps, "entry_points", lambda group: [*real, *fakes])

    with fresh_registry():
        yield install


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


class Buggy(Step):
    """A plug-in's kind with a bug where its `where:` says: validate, ahead (what its plan will read), check or
    apply."""

    kind = "buggy"
    params = {"where": Param(str, required=True)}

    def validate(self) -> None:
        if self.p["where"] == "validate":
            raise ValueError("bad where")

    def reads_ahead(self) -> list[tuple[str, ...]]:
        if self.p["where"] == "ahead":
            return [["read", "/etc/hosts"]]  # type: ignore[list-item]  # the bug: a list, not a tuple
        return []

    def plan(self, ctx: Any) -> Plan:
        if self.p["where"] == "check":
            return self.helper.plan()  # type: ignore[attr-defined,no-any-return]  # the bug: no such attribute
        return self.planned("would do it", commands=("do it",))

    def apply(self, ctx: Any, plan: Plan) -> None:
        raise KeyError("missing")


@pytest.fixture
def buggy(installed: Callable[..., None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    """remediate with the buggy-kinds plug-in installed: run a command on h1 (a fake host) with a one-step playbook
    whose step fails where asked."""
    from click.testing import CliRunner

    from remediate import api as session
    from remediate.cli import main as cli
    installed(FakeEntry("buggy", "buggy_kinds:Buggy", FakeDist({"Name": "buggy-kinds", "Version": "2.0"}), Buggy))
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    fake = FakeTransport(name="h1")
    monkeypatch.setattr(session, "ssh_factory", lambda opts, emit, pw: (lambda host: fake))

    def run(command: str, where: str, *more: str) -> tuple[int, str]:
        book = tmp_path / "book.yml"
        book.write_text(f"name: b\nsteps:\n  - id: oops\n    kind: buggy\n    params: {{where: {where}}}\n")
        result = CliRunner().invoke(cli.cli, [command, "--host", "h1", "-i", str(inv), "-p", str(book), *more])
        assert all(w.startswith(("mkdir /var/lib/remediate/", "/var/lib/remediate/", "rm /var/lib/remediate/"))
                   for w in fake.writes), fake.writes  # its journal and lock, nothing else
        return result.exit_code, result.output
    return run


@pytest.mark.parametrize(("where", "raised"), [("validate", "ValueError: bad where"),
                                               ("ahead", "TypeError: reads_ahead() gave ['read', '/etc/hosts']"),
                                               ("check", "AttributeError: 'Buggy' object has no attribute 'helper'")])
def test_a_plugins_bug_in_plan_is_blamed_on_the_plugin_not_remediate(buggy: Callable[..., tuple[int, str]],
                                                                     where: str, raised: str) -> None:
    code, out = buggy("plan", where)
    assert code == 1, out
    assert f"step 'oops': kind buggy, from the plug-in buggy-kinds 2.0, raised {raised}" in out, out
    assert "a bug in that plug-in, not in remediate" in out and "bug in remediate;" not in out, out
    assert "internal error" not in out and "Traceback" not in out
    code, out = buggy("plan", where, "-vv")
    assert "Traceback (most recent call last)" in out, out
    assert "test_plugins.py" in out or where == "ahead", out  # ahead: what it gave is refused where it is read


def test_a_plugins_bug_in_apply_names_the_exception_not_just_its_text(buggy: Callable[..., tuple[int, str]]) -> None:
    code, out = buggy("apply", "apply", "--yes")
    assert code == 1, out
    assert "oops failed: kind buggy, from the plug-in buggy-kinds 2.0, raised KeyError: 'missing'" in out, out
    assert "a bug in that plug-in, not in remediate" in out and "bug in remediate;" not in out
    code, out = buggy("apply", "apply", "--yes", "-vv")
    assert "Traceback (most recent call last)" in out and 'raise KeyError("missing")' in out, out


def test_a_shipped_kinds_bug_is_still_remediates(buggy: Callable[..., tuple[int, str]],
                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from remediate.cli import main as cli

    def broken(self: Any, ctx: Any, current: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(FileContent, "edit", broken)
    book = tmp_path / "file.yml"
    book.write_text("name: f\nsteps:\n  - id: conf\n    kind: file\n    params: {path: /etc/x, content: x}\n")
    out = CliRunner().invoke(cli.cli, ["plan", "--host", "h1", "-i", str(tmp_path / "inventory.yml"), "-p", str(book)]).output
    assert "step 'conf': kind file (remediate" in out and "raised ZeroDivisionError" in out, out
    assert "a bug in remediate; report it" in out


def test_a_kind_written_for_0_1_still_loads_and_is_told_what_to_rename() -> None:
    import warnings

    from remediate.kinds import Step, StepSpec

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        import remediate.steps as old_api

        base = old_api.Step  # the 0.1 import path: a DeprecationWarning naming the new one

        class Old(base):  # type: ignore[misc, valid-type]
            kind = "old-style"
            checks_only = True

            def check(self, ctx: object) -> object:
                return self.plan("read the host the 0.1 way")  # 0.1's helper had this name

            def apply(self, ctx: object, plan: object) -> None:
                return None

    said = [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning)]
    assert any("remediate.steps is now remediate.kinds" in s for s in said), said
    assert any("rename check(ctx) to plan(ctx)" in s for s in said) and any("proves_only" in s for s in said), said
    assert base is Step
    step = Old(StepSpec(id="s", kind="old-style", target="host", params={}))
    assert step.plan(None).reason == "read the host the 0.1 way" and Old.proves_only  # type: ignore[arg-type]


@pytest.mark.parametrize("group, module, loader", [("remediate.kinds", "remediate.kinds", "load_kinds"),
                                                   ("remediate.checks", "remediate.diagnostics", "load_checks")])
def test_a_source_tree_that_is_not_installed_has_every_shipped_plug_in(group: str, module: str, loader: str) -> None:
    """With no entry points at all (remediate on PYTHONPATH, not installed), SHIPPED names every module the
    pyproject declares: a renamed module left in SHIPPED, or a new one left out, fails here."""
    import tomllib

    declared = sorted(tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
                      ["project"]["entry-points"][group])
    probe = ("import importlib.metadata as m\nm.entry_points = lambda **k: []\nimport importlib\n"
             "import remediate.contract.entrypoints as e\ne.entry_points = lambda group: []\n"
             f"mod = importlib.import_module({module!r})\nmod.{loader}()\nprint(' '.join(sorted(mod.REGISTRY)))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == declared


def test_a_plug_in_importing_the_0_1_module_paths_gets_the_same_classes_and_no_second_registration() -> None:
    """`from remediate.steps.file import FileEdit`, `remediate.plan`, `remediate.context`: the 0.1 paths give the very
    classes of the new ones (a second copy of kinds/file.py would register `file` again, replacing the real one)."""
    probe = ("import warnings\nwarnings.simplefilter('error')\n"  # a warning is an error, until caught below
             "import remediate.kinds.file as real\nfrom remediate.kinds import REGISTRY, load_kinds\nload_kinds()\n"
             "before = REGISTRY['file']\nsaid = []\n"
             "with warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n"
             "    from remediate.steps.file import FileEdit\n    import remediate.steps.file as old\n"
             "    from remediate.plan import Applied\n    from remediate.context import Context\n"
             "    said = [str(x.message) for x in w if x.category is DeprecationWarning]\n"
             "from remediate.contract.plan import Applied as A\nfrom remediate.engine.context import Context as C\n"
             "print(old is real, FileEdit is real.FileEdit, REGISTRY['file'] is before, Applied is A, Context is C,\n"
             "      real.__spec__.name, len(said) >= 3)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"] * 5 + ["remediate.kinds.file", "True"], done.stdout + done.stderr
