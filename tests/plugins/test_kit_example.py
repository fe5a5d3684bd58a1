"""The test kit used from the outside, as a team shipping runbooks would: the example package installed, its playbook
(example-hello, under the remediate.playbooks entry point) proven on a lab host through the kit's public API alone."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.testkit import Lab, Write

PACKAGE = Path(__file__).resolve().parent / "remediate-example-kind"
#: On the lab's shared filesystem, where the lab's ssh user (through sudo) and this test both reach it.
FOLDER = Path("/opt/remediate-testkit/example-hello")
GREETING = str(FOLDER / "greeting")


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example package installed for this test alone, as pip makes it visible: its package and its metadata (the
    entry points of its pyproject.toml) on PYTHONPATH, which every `remediate` the kit runs inherits."""
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    info = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
                                                   for group, points in project["entry-points"].items()))
    monkeypatch.setenv("PYTHONPATH", f"{info.parent}:{PACKAGE}")


@pytest.fixture
def greeting_folder() -> Iterator[None]:
    FOLDER.mkdir(parents=True, exist_ok=True)
    FOLDER.chmod(0o755)
    yield
    shutil.rmtree(FOLDER)


def test_the_example_packages_playbook_through_the_whole_loop(remediate_lab: Lab, installed: None,
                                                              greeting_folder: None) -> None:
    host = remediate_lab.host("ec2-mx")
    host.inject(Write(GREETING, "hello, nobody\n"))
    run = remediate_lab.runbook("example-hello", host, vars={"greeting_path": GREETING, "greeting_name": "kit"})

    found = run.diagnose_finds_it("greeted")
    assert "says 'hello, nobody'" in next(c["evidence"] for c in found.of("check") if c["check"] == "greeted")
    plan = run.plan_shows_change("greet")
    assert "-hello, nobody\n+hello, kit\n" in plan.diff("greet")
    run.apply_fixes()
    assert Path(GREETING).read_text() == "hello, kit\n"
    run.rerun_is_noop()
    run.diagnose_is_clean()
    assert GREETING in run.rollback_is_byte_identical()
    assert Path(GREETING).read_text() == "hello, nobody\n"
    failed = run.forced_failure_rolls_back(step="greet")
    assert failed.steps("step_rolled_back")[-1] == "greet"
    assert Path(GREETING).read_text() == "hello, nobody\n"
