"""What 10,000 past runs cost plan, a no-op apply, `runs` and rollback (issue #28): each command timed with hyperfine
against the lab host ec2-mx, paired, with a state home holding only the bench's own runs ("empty") and one holding
the same plus 10,000 older seeded journals ("10k"). Prints the figures (wall time, and the CPU time hyperfine
measures, user+sys, steadier than the wall on a shared machine); asserts nothing.

    python bench/history.py [RUNS] [JOURNALS]     (defaults: 48 timed runs of each command in each home, in 6
                                                   rounds that swap the homes' order; 10,000 journals)

It takes /tmp/remediate-lab.lock itself (do not wrap it in flock), resets the lab (lab/reset), applies the fix once
(the lab is then fixed, so plan and apply have nothing to do), measures, rolls that run back (so that rollback has
nothing left to do: "already rolled back"), measures rollback, and resets the lab again."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.unit.history_seed import seed  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 48
JOURNALS = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
#: hyperfine runs per command, the homes' order swapped each time.
ROUNDS = 6
REMEDIATE = str(Path(sys.executable).with_name("remediate"))
LAB = ["-i", str(ROOT / "lab" / "inventory.yml"), "--host", "ec2-mx"]
COMMANDS = {"plan": ["plan", *LAB], "apply (no-op)": ["apply", *LAB, "--yes"], "runs": ["runs"]}


@contextmanager
def lab_lock() -> Iterator[None]:
    with open("/tmp/remediate-lab.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def remediate(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([REMEDIATE, *args], env={**os.environ, "XDG_STATE_HOME": str(home), "CI": "true"},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise SystemExit(f"remediate {' '.join(args)} in {home}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def reset_lab() -> None:
    done = subprocess.run(["bash", str(ROOT / "lab" / "reset")], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"lab/reset failed:\n{done.stdout}{done.stderr}")


def copy_runs(real: Path, *homes: Path) -> None:
    """The bench's own journals (and plan key) into each home, as they are in `real`."""
    for home in homes:
        (home / "remediate" / "runs").mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in (real / "remediate" / "runs").glob("*.json"):
            copy = home / "remediate" / "runs" / f".{path.name}.copy"
            shutil.copy2(path, copy)
            copy.replace(copy.with_name(path.name))  # renamed into place, as remediate writes journals
        shutil.copy2(real / "remediate" / "plan.key", home / "remediate" / "plan.key")


def settle(*homes: Path) -> None:
    """Past the index's racy window (2 s after the runs folder last changed), then one `runs` in each home, so
    that every timed run finds a current index, as a user's second command does."""
    time.sleep(2.5)
    for home in homes:
        remediate(home, "runs")


def hyperfine(args: list[str], homes: dict[str, Path], out: Path) -> dict[str, float]:
    """The command in each home, in ROUNDS hyperfine runs of RUNS // ROUNDS each, the homes' order swapped every
    round (hyperfine times one command's runs, then the other's: a machine shared with other work must not favour
    one home); mean, median, spread and CPU time (user+sys, the rounds' mean) in seconds per home."""
    times: dict[str, list[float]] = {label: [] for label in homes}
    cpu: dict[str, list[float]] = {label: [] for label in homes}
    for n in range(ROUNDS):
        argv = ["hyperfine", "-N", "--warmup", "2", "--runs", str(max(RUNS // ROUNDS, 2)), "--export-json", str(out)]
        for label, home in (list(homes.items()) if n % 2 == 0 else list(reversed(homes.items()))):
            argv += ["-n", label, " ".join(["env", f"XDG_STATE_HOME={home}", "CI=true", REMEDIATE, *args])]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for r in json.loads(out.read_text())["results"]:
            times[r["command"]] += r["times"]
            cpu[r["command"]].append(r["user"] + r["system"])
    found: dict[str, float] = {}
    for label in homes:
        found |= {f"{label} mean": statistics.mean(times[label]), f"{label} median": statistics.median(times[label]),
                  f"{label} stddev": statistics.stdev(times[label]), f"{label} cpu": statistics.mean(cpu[label])}
    return found


def line(name: str, figures: dict[str, float]) -> str:
    mean = figures["10k mean"] / figures["empty mean"]
    median = figures["10k median"] / figures["empty median"]
    cpu = figures["10k cpu"] / figures["empty cpu"]
    return (f"{name:14} empty {figures['empty mean'] * 1000:6.1f} ms ± {figures['empty stddev'] * 1000:5.1f} "
            f"(cpu {figures['empty cpu'] * 1000:5.1f})   10k {figures['10k mean'] * 1000:6.1f} ms ± "
            f"{figures['10k stddev'] * 1000:5.1f} (cpu {figures['10k cpu'] * 1000:5.1f})   10k/empty: "
            f"means {mean:.3f}, medians {median:.3f}, cpu (user+sys) {cpu:.3f}")


def in_process(home: Path) -> list[str]:
    """What the index saves and costs, in this process: every journal read, the index read when current, a
    refresh after one new journal, a rebuild from nothing."""
    os.environ["XDG_STATE_HOME"] = str(home)
    from remediate.engine import journal, runindex

    def timed(work: object) -> float:
        began = time.perf_counter()
        for _ in range(5):
            work()  # type: ignore[operator]
        return (time.perf_counter() - began) / 5 * 1000

    runs, path = journal.runs_dir(), journal.state_home() / runindex.NAME
    every = timed(journal.history)
    current = timed(lambda: journal.index().close())
    old = runindex.read(path)
    refresh = timed(lambda: runindex.scan(runs, old, journal.summary))
    rebuild = timed(lambda: runindex.scan(runs, None, journal.summary))
    size, count = path.stat().st_size, len(old or ())
    if old is not None:
        old.close()
    return [f"in process, {count} journals: every journal read {every:.1f} ms; the index, current "
            f"{current:.2f} ms; refreshed (one lstat each, rows kept) {refresh:.1f} ms; rebuilt from nothing "
            f"{rebuild:.1f} ms; index file {size / 1e6:.2f} MB"]


def questions(homes: dict[str, Path]) -> list[str]:
    """The history's own share of each command, in this process (no start-up, no host): the questions plan and a
    no-op apply ask (the run that fixed ec2-mx), rollback's (its newest run that changed something), `runs`' (the
    newest 50 rows and the count), each the median of 200, in each home."""
    from remediate import api
    from remediate.engine import journal

    asked = {"plan, apply": lambda: api.fixed_by("smtp-to-lmtp", ["ec2-mx"]),
             "rollback": lambda: api.already_rolled_back("ec2-mx"),
             "runs": lambda: (journal.summaries(limit=50), journal.count())}
    lines = []
    for name, question in asked.items():
        said = []
        for label, home in homes.items():
            os.environ["XDG_STATE_HOME"] = str(home)
            question()  # the index current
            times = []
            for _ in range(200):
                began = time.perf_counter()
                question()
                times.append(time.perf_counter() - began)
            said.append(f"{label} {statistics.median(times) * 1000:.2f} ms")
        lines.append(f"history's share of {name}: {', '.join(said)}")
    return lines


def measure(work: Path) -> list[str]:
    real, empty, full = work / "real", work / "empty", work / "10k"
    for home in (real, empty, full):
        home.mkdir(mode=0o700)
    seed(full, JOURNALS, hosts=20, host_names=("ec2-mx",))
    reset_lab()
    remediate(real, "apply", *LAB, "--yes")  # the lab fixed: plan and apply have nothing left to do
    copy_runs(real, empty, full)
    settle(empty, full)
    homes = {"empty": empty, "10k": full}
    lines = [line(name, hyperfine(args, homes, work / f"{name.split()[0]}.json")) for name, args in COMMANDS.items()]
    remediate(real, "rollback", *LAB, "--yes")  # the lab as lab/reset leaves it; this run now rolled back
    copy_runs(real, empty, full)
    settle(empty, full)
    rollback = ["rollback", *LAB, "--yes"]
    lines.append(line("rollback", hyperfine(rollback, homes, work / "rollback.json")))
    said = remediate(full, *rollback).stdout.strip().splitlines()
    lines.append(f"(rollback with nothing left to do says: {said[-1] if said else '?'})")
    return [*lines, *questions(homes), *in_process(full)]


def main() -> None:
    with lab_lock(), tempfile.TemporaryDirectory(prefix="remediate-history-") as folder:
        work = Path(folder)
        work.chmod(0o700)
        try:
            lines = measure(work)
        finally:
            reset_lab()
    print(f"history bench: {JOURNALS} seeded journals, {RUNS} runs of each command in each home, in {ROUNDS} "
          "hyperfine -N rounds that swap the homes' order")
    print("\n".join(lines))
    print("goal (#28): 10k / empty at most 1.05 for each command")


if __name__ == "__main__":
    main()
