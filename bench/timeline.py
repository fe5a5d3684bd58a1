"""Where a fleet run's wall time goes, on the fleet benchmark's lab (bench/fleet): one first run of remediate (human
output) and one of the paramiko script on N hosts, each timed from inside its own process, with the machine's busy
share meanwhile. Prints figures; asserts nothing.

    python bench/timeline.py [--hosts 20] [--rounds 3]

For each run: when the first and last TCP connections to the hosts began, when the process ended, and the machine's
busy share of both cores in 20 ms windows. For remediate also each phase's span over the hosts (the agent's start,
the plan, the apply) and its agent requests' latency: which part of the run is start-up, which is the hosts' work,
and whether the machine was saturated then (a saturated phase is bound by CPU, whoever spends it; one that is not is
bound by waits: round trips, the GIL, the disk). Uses the fleet benchmark's venvs (fleet.py makes them)."""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fleet"))

import fleet  # noqa: E402 - bench/fleet/fleet.py, beside this

#: Run inside the measured process, before the tool: every socket connect and (for remediate) each phase's span,
#: printed as one JSON line on stderr at exit. Wraps remediate's internals by name: a bench tool, not a contract.
PROBE = r"""
import atexit, json, runpy, socket, sys, time
t0 = time.perf_counter()
spans = {"connect": []}
connect = socket.socket.connect
def timed_connect(self, address):
    spans["connect"].append((time.perf_counter() - t0,) * 2)
    return connect(self, address)
socket.socket.connect = timed_connect
def wrap(owner, name, label):
    inner = getattr(owner, name)
    def timed(*args, **kwargs):
        began = time.perf_counter() - t0
        try:
            return inner(*args, **kwargs)
        finally:
            spans.setdefault(label, []).append((began, time.perf_counter() - t0))
    setattr(owner, name, timed)
def report():
    spans["end"] = [(time.perf_counter() - t0,) * 2]
    sys.stderr.write("TIMELINE " + json.dumps(spans) + "\n")
atexit.register(report)
tool, sys.argv = sys.argv[1], sys.argv[1:]
if tool == "remediate":
    from remediate.engine.runner import Runner
    from remediate.transport.agent import Agent
    wrap(Agent, "__init__", "agent start")
    wrap(Runner, "run", "plan")
    wrap(Runner, "apply", "apply")
    wrap(Agent, "run", "request")
    from remediate.cli.entry import main
    main()
else:
    runpy.run_path(tool, run_name="__main__")
"""


def busy() -> tuple[int, int]:
    """The machine's busy and total jiffies so far (every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4], sum(fields)


def run(argv: list[str], env: dict[str, str]) -> tuple[dict[str, list[list[float]]], list[tuple[float, float]]]:
    """The spans the probe saw, and the machine's busy share in 20 ms windows (start, share) from the process's start."""
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), *busy()))
            done.wait(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    finished = subprocess.run(argv, env=env, capture_output=True, text=True)
    done.set()
    sampler.join()
    lines = [line for line in finished.stderr.splitlines() if line.startswith("TIMELINE ")]
    if finished.returncode != 0 or not lines:
        raise SystemExit(f"{argv[0]} failed (exit {finished.returncode}): {(finished.stdout + finished.stderr)[-600:]}")
    shares = [(a - started, (b1 - b0) / max(1, t1 - t0))
              for (a, b0, t0), (_, b1, t1) in zip(samples, samples[1:])]
    return json.loads(lines[-1].removeprefix("TIMELINE ")), shares


def show(tool: str, spans: dict[str, list[list[float]]], shares: list[tuple[float, float]]) -> None:
    end = spans["end"][0][1]
    print(f"{tool}: ended at {end:.3f} s; connections began {min(s for s, _ in spans['connect']):.3f}-"
          f"{max(s for s, _ in spans['connect']):.3f} s")
    for label in ("agent start", "plan", "apply", "request"):
        if label in spans:
            began, ended = [s for s, _ in spans[label]], [e for _, e in spans[label]]
            took = sorted(e - s for s, e in spans[label])
            print(f"  {label:12} x{len(took):<4} began {min(began):.3f}-{max(began):.3f}  ended {min(ended):.3f}-"
                  f"{max(ended):.3f}  took median {statistics.median(took) * 1000:6.1f} ms, max {took[-1] * 1000:6.1f}")
    print("  machine busy: " + " ".join(f"{at:.2f}:{share:.0%}" for at, share in shares if at <= end + 0.02))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    fleet.venvs()
    probe = Path(tempfile.mkdtemp(prefix="remediate-timeline-")) / "probe.py"
    probe.write_text(PROBE)
    work = Path(tempfile.mkdtemp(prefix="remediate-bench-"))
    work.chmod(0o755)
    lab = fleet.Lab(args.hosts, work)
    lab.start()
    try:
        for _ in range(args.rounds):
            for tool in ("remediate", "paramiko"):
                lab.reset()
                argv, env = lab.command(tool)
                if tool == "remediate":
                    argv = [str(fleet.VENVS / "remediate" / "bin" / "python"), str(probe), "remediate", *argv[1:]]
                else:
                    argv = [argv[0], str(probe), *argv[1:]]
                shutil.rmtree(work / "state", ignore_errors=True)
                show(tool, *run(argv, env))
                problem = lab.check(first=True)
                if problem:
                    print(f"  ! {tool} left a host wrong: {problem}")
    finally:
        lab.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(probe.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
