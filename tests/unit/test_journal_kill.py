"""A process killed (SIGKILL) while it writes its journal leaves a journal that reads whole: the one written last, or
the one before it, never a torn one; what the kill leaves behind is never taken for a journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remediate.engine import journal, runrecord

WRITER = """
import sys
from remediate.engine import journal, runrecord
j = journal.Journal.start(run_id="20261206T120000Z-abcdef", host="h1", address="127.0.0.1", playbook="p",
                          playbook_path="/p.yml", variables={},
                          steps=[journal.StepRecord(f"s{n}", "file", "host", {}, "planned", diffs=["x" * 5000])
                                 for n in range(8)])
j.save(remote=False)
n = 0
while True:  # killed by the test
    n += 1
    if n % 2:  # a step begun, saved with its record (Journal.begin), or a record alone
        j.begin(f"s{n % 8}", state="applying", count=n)
        j.update_step(f"s{n % 8}", note="y" * (n % 3000))
    else:
        j.update_step(f"s{n % 8}", state="applying", count=n, note="y" * (n % 3000))
"""


@pytest.mark.parametrize("writes", [1, 50, 400])
def test_a_journal_killed_mid_write_reads_whole(writes: int) -> None:
    path = journal.runs_dir() / "20261206T120000Z-abcdef.h1.json"
    child = subprocess.Popen([sys.executable, "-c", WRITER], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while True:  # until the writer has written at least `writes` records
            assert time.monotonic() < deadline, "the writer never got going"
            assert child.poll() is None, "the writer died"
            try:
                counts = [s.get("count", 0) for s in runrecord.read(path)["steps"]]
            except (OSError, ValueError):
                counts = [0]
            if max(counts) >= writes:
                break
            time.sleep(0.002)  # a pause between looks: the writer's progress decides, not this
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    record = journal.Journal.load(path).record  # whole: it parses and passes the record's checks
    assert path.stat().st_size <= (journal.APPENDED + 2) * len(path.read_bytes().splitlines()[0])  # kept small
    assert record["outcome"] == "running" and max(s.get("count", 0) for s in record["steps"]) >= writes
    assert [r["run_id"] for r in journal.history("h1")] == ["20261206T120000Z-abcdef"]
    assert journal.summaries("h1")[0]["outcome"] == "interrupted"
    assert all(not p.name.endswith(".json") for p in path.parent.iterdir() if p != path)


def test_the_scratch_file_a_kill_leaves_is_not_a_journal(tmp_path: Path) -> None:
    folder = journal.runs_dir()
    (folder / ".20261206T120000Z-abcdef.h1.json.123-deadbeef").write_bytes(b'{"run_id": "x", "steps": [')
    assert journal.history() == [] and journal.count() == 0
