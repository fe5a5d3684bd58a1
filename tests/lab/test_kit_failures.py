"""The test kit's assertions fail when the runbook is wrong, each saying the command, its exit code and output: a
step that runs on every apply, an undo that leaves a trace, a plan with nothing to do, a diagnose that finds
nothing, a forced failure after a step the playbook does not have."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediate.testkit import Lab

FOLDER = Path("/opt/remediate-testkit/kit-failures")

#: Two flaws the kit must catch: `log` runs on every apply (no creates/unless), and its undo appends instead of
#: taking its line back, so a rollback that exits 0 still leaves the file changed.
LEAKY = f"""\
name: leaky
description: A runbook with flaws, for the test kit's own tests.
vars:
  dir: {FOLDER}
steps:
  - id: marker
    kind: file
    params: {{path: "{{{{ dir }}}}/marker", content: "fixed\\n"}}
  - id: log
    kind: command
    params:
      command: ["sh", "-c", "echo applied >> {FOLDER}/log"]
      undo: ["sh", "-c", "echo undone >> {FOLDER}/log"]
diagnose:
  - id: postfix-up
    check: container-running
    fix: ./leaky.yml
    params: {{container: mailserver-postfix}}
"""


@pytest.fixture
def leaky(tmp_path: Path) -> Iterator[Path]:
    FOLDER.mkdir(parents=True, exist_ok=True)
    FOLDER.chmod(0o755)
    playbook = tmp_path / "leaky.yml"
    playbook.write_text(LEAKY)
    yield playbook
    shutil.rmtree(FOLDER)


def test_a_rerun_that_acts_an_undo_that_leaves_a_trace_and_nothing_to_do_are_caught(remediate_lab: Lab,
                                                                                      leaky: Path) -> None:
    run = remediate_lab.runbook(leaky, remediate_lab.host("ec2-mx"), watch=[str(FOLDER / "log")])
    with pytest.raises(AssertionError, match="should find the fault: expected exit code 3, got 0") as found:
        run.diagnose_finds_it()
    assert f"command: remediate diagnose --host ec2-mx -p {leaky}" in str(found.value)
    run.apply_fixes()

    with pytest.raises(AssertionError, match="the rerun was no no-op") as rerun:
        run.rerun_is_noop()
    message = str(rerun.value)
    assert "'log': 'change'" in message and f"command: remediate apply --host ec2-mx -p {leaky} --yes" in message
    assert "exit code: 0" in message
    assert f"{FOLDER}/log: its bytes differ from before the run" in message  # what the rerun did to the host

    with pytest.raises(AssertionError, match="after rollback") as rollback:
        run.rollback_is_byte_identical()
    message = str(rollback.value)
    assert f"{FOLDER}/log: its bytes differ from before the run" in message and "did not exist before" in message
    assert not (FOLDER / "marker").exists()  # the file kind's own undo did its part

    with pytest.raises(AssertionError, match=r"has no step 'nope'; its steps: \['marker', 'log'\]"):
        run.forced_failure_rolls_back(step="nope")

    # A runbook with nothing to do (toy, its files already there): no plan to show, nothing to fix.
    toy = remediate_lab.runbook("toy", run.host, vars={"toy_dir": str(FOLDER / "toy")})
    (FOLDER / "toy").mkdir(mode=0o755)
    (FOLDER / "toy" / "marker.txt").write_text("hello from remediate\n")
    (FOLDER / "toy" / "marker.txt").chmod(0o640)
    (FOLDER / "toy" / "stamp.txt").write_text("stamped\n")
    with pytest.raises(AssertionError, match="should show changes: expected exit code 2, got 0") as plan:
        toy.plan_shows_change()
    assert f"command: remediate plan --host ec2-mx -p toy -e toy_dir={FOLDER}/toy -i " in str(plan.value)
    with pytest.raises(AssertionError, match="shows nothing to fix"):
        toy.apply_fixes()

