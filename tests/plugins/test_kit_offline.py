"""The test kit's parts that need no lab: how pytest finds it (its pytest11 entry point), where it looks for the lab
and what it says when the lab is not there, its failure messages, its faults, its snapshots and the forced failure's
copy of a playbook."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from ruamel.yaml import YAML

from remediate.testkit import Edit, LabHost, Result, Write
from remediate.testkit.faults import inject
from remediate.testkit.host import Container
from remediate.testkit.lab import LAB_ENV, Lab, find_lab, why_not_up
from remediate.testkit.plugin import remediate_lab_folder
from remediate.testkit.result import executable
from remediate.testkit.run import FORCED
from remediate.testkit.snapshot import FileState, Snapshot

pytest_plugins = ["pytester"]

AUTHOR_TEST = """
def test_my_runbook(remediate_lab):
    remediate_lab.host("ec2-mx")
"""


def test_pytest_finds_the_kit_by_its_entry_point_and_says_when_the_lab_is_missing(
        pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a fresh pytest process (no conftest, no -p: only the installed entry point), an author's test gets the
    fixture and the lab mark; with no lab it fails in CI, naming what is missing (and is skipped elsewhere: below)."""
    pytester.makepyfile(AUTHOR_TEST)
    nowhere = tmp_path / "no-lab"
    nowhere.mkdir()
    monkeypatch.setenv(LAB_ENV, str(nowhere))  # pytester's subprocess inherits the environment
    monkeypatch.setenv("CI", "true")
    in_ci = pytester.runpytest_subprocess("-rA", "-m", "lab")  # selected by the mark the kit puts on it
    in_ci.assert_outcomes(errors=1)
    in_ci.stdout.fnmatch_lines([f"*the lab is not up in CI: no lab at {nowhere}*{LAB_ENV}*"])


def test_the_lab_is_found_by_the_variable_or_above_the_tests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LAB_ENV, raising=False)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "inventory.yml").write_text("all: {hosts: {}}\n")
    nested = tmp_path / "tests" / "deep"
    nested.mkdir(parents=True)
    assert find_lab(nested) is None  # no reset script: not the lab
    (tmp_path / "lab" / "reset").write_text("")
    assert find_lab(nested) == tmp_path / "lab"
    monkeypatch.setenv(LAB_ENV, "/elsewhere/lab")
    assert find_lab(nested) == Path("/elsewhere/lab")
    assert why_not_up(None) is not None and LAB_ENV in str(why_not_up(None))


def test_without_the_lab_the_fixture_skips_outside_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LAB_ENV, str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    request = SimpleNamespace(config=SimpleNamespace(rootpath=tmp_path))  # what the fixture reads of pytest's
    with pytest.raises(pytest.skip.Exception, match=f"no lab at {tmp_path}"):
        remediate_lab_folder.__wrapped__(request)  # the function under pytest's fixture decorator


def test_a_failure_names_the_command_its_exit_code_and_the_end_of_its_output() -> None:
    result = Result(("remediate", "plan", "--host", "mx 1", "--json"), 0, (), "x" * 10000 + "the end\n")
    with pytest.raises(AssertionError) as failed:
        result.expect(2, "plan should show changes")
    message = str(failed.value)
    assert message.startswith("plan should show changes: expected exit code 2, got 0\n")
    assert "  command: remediate plan --host 'mx 1' --json\n  exit code: 0\n" in message
    assert message.endswith("the end") and len(message) < 6500
    assert result.expect(0, "fine") is result


def test_faults_edit_write_call_or_name_a_lab_fault(tmp_path: Path) -> None:
    host = LabHost("h", {"ansible_host": "127.0.0.10"})
    path = tmp_path / "f.conf"
    inject(Write(str(path), "relay = smtp\n"), host)
    host.inject(Edit(str(path), "smtp", "lmtp"))
    assert path.read_text() == "relay = lmtp\n"
    with pytest.raises(AssertionError, match="'smtp' is not in the file, so nothing was broken"):
        host.inject(Edit(str(path), "smtp", "x"))
    seen: list[str] = []
    host.inject(lambda h: seen.append(h.name))
    assert seen == ["h"]
    with pytest.raises(AssertionError, match="no lab fault named 'nope'; the lab's faults: queue-stuck, relay-access-denied, "):
        host.inject("nope")


def test_a_snapshot_tells_bytes_mode_rewrites_and_containers_apart(tmp_path: Path) -> None:
    path = str(tmp_path / "a")
    old = {path: FileState(b"one\n", 0o644, 0, 0, 1)}
    box = Container("c", "id1", "t1", True)
    assert Snapshot(old, {"c": box}).changes(Snapshot(dict(old), {"c": box})) == []
    changes = Snapshot(old, {"c": box}).changes(Snapshot({path: FileState(b"two\n", 0o644, 0, 0, 2)},
                                                         {"c": Container("c", "id2", "t2", True)}))
    assert f"{path}: its bytes differ from before the run:" in changes[0] and "-one" in changes[0] and "+two" in changes[0]
    assert changes[1] == "container c: re-created (id id1 -> id2)"
    assert Snapshot(old, {}).changes(Snapshot({path: FileState(b"one\n", 0o600, 0, 0, 1)}, {})) == \
        [f"{path}: was mode 0644, owner 0:0, is mode 0600, owner 0:0"]
    assert Snapshot(old, {}).changes(Snapshot({path: FileState(b"one\n", 0o644, 0, 0, 9)}, {})) == \
        [f"{path}: rewritten (its mtime changed) with the same bytes"]


def test_the_forced_failure_goes_right_after_the_step_in_a_copy(tmp_path: Path) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "inventory.yml").write_text("all:\n  hosts:\n    mx: {ansible_host: 127.0.0.10}\n")
    lab = Lab(tmp_path / "lab", tmp_path / "work")
    playbook = tmp_path / "fix.yml"
    playbook.write_text("name: fix\nsteps:\n  - {id: a, kind: file}\n  - {id: b, kind: file}\n"
                        "diagnose:\n  - {id: c, check: x, fix: ./fix.yml}\n")
    run = lab.runbook(playbook, LabHost("mx", {}))
    copy = YAML(typ="safe").load(run._with_failure_after("a").read_text())
    assert [s["id"] for s in copy["steps"]] == ["a", FORCED, "b"] and "diagnose" not in copy
    assert copy["steps"][1]["kind"] == "command" and run.name() == "fix"
    with pytest.raises(AssertionError, match=r"has no step 'z'; its steps: \['a', 'b'\]"):
        run.forced_failure_rolls_back("z")
    assert "mx:" in lab.inventory.read_text()  # the test's own inventory, written from the lab's


def test_the_cli_is_the_one_beside_pytests_python_even_off_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert executable() == str(Path(sys.executable).parent / "remediate")
