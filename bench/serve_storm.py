"""serve under an alert storm: a burst of Alertmanager webhooks, grouped and mostly duplicates, over many hosts.

    python bench/serve_storm.py [--alerts 1000] [--hosts 20] [--alertnames 5] [--group 5] [--senders 8] [--paused]
                                [--backend embedded|temporal]

The alerts: every host fires every alertname once (hosts x alertnames distinct firings: 100 incidents at the
defaults), and each firing is sent alerts / firings times (10 at the defaults: Alertmanager re-sends a group every
group_interval, and an HA pair of Alertmanagers sends each notification twice). Alertmanager groups by alertname and
cluster here (a cluster: `--group` hosts), so each POST carries `--group` alerts: 200 POSTs of 5 alerts at the
defaults, shuffled (a fixed seed) and sent by `--senders` threads at once, as fast as serve answers.

What it checks: every answer 200; each firing answered with one incident id, `new` exactly once; as many incidents as
firings; every incident `pending` with its plan (the playbook, two file edits, planned and never applied: the hosts'
files are checked unchanged). What it prints: the webhook's answer time p50 / p99 / max during the burst (the
client's clock: serve's work and the HTTP round trip), the ingest rate (alerts / the burst's length), the time from
an incident's first alert to its pending plan p50 / p99 / max (serve's own planned_at, from its database, against
when the first POST with that alert was sent), the time until the last incident was pending, and serve's peak
memory (VmHWM of the serve process). Goals (issue #28, embedded backend): webhook p99 <= 50 ms, every incident
pending within 30 s, memory < 300 MB. Nothing here asserts on time; it prints figures.

The hosts: two private sshds on 127.0.1.210-229 (OpenSSH takes at most 16 listen addresses), one address and one
folder per host, the fleet benchmark's login user; serve on 127.0.1.205 with its own --state-dir. On the embedded
backend the plans' times come from serve's database (the API shows whole seconds); `--backend temporal` runs serve
on Temporal's dev server (serve_lab.Temporal, on 127.0.0.1) and takes them from GET /incidents every 0.2 s (with the
person's token serve_lab makes), from before the burst. Needs root and the venv on PATH."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import serve_lab as lab
from serve_facts import load

from tests import sshd

FIRST_ADDRESS = 210  # 127.0.1.210 on
PER_SSHD = 10
SERVE_ADDRESS = "127.0.1.205"
STEPS = {"app.conf": ("mode = broken\n", "mode = fixed\n"), "site.conf": ("relay = smtp\n", "relay = lmtp\n")}


def address(i: int) -> str:
    return f"127.0.1.{FIRST_ADDRESS + i}"


@dataclass
class Fleet:
    """hosts hosts (h0, h1, ...): sshds, a folder each with its files broken, the inventory, playbook and rules."""

    work: Path
    hosts: int
    servers: list[sshd.Server] = field(default_factory=list)

    def folder(self, i: int) -> Path:
        return self.work / "hosts" / f"h{i}"

    def start(self) -> None:
        if self.hosts > 20:
            raise SystemExit("serve_storm: at most 20 hosts (127.0.1.210-229)")
        self.work.chmod(0o755)  # sshd reads the authorized keys as the login user
        sshd.ensure_user(lab.USER, sudo=None)
        known, inventory = [], ["all:\n  vars:\n", f"    ansible_user: {lab.USER}\n",
                                f"    ssh_known_hosts_file: {self.work}/known_hosts\n  hosts:\n"]
        for first in range(0, self.hosts, PER_SSHD):
            addresses = [address(i) for i in range(first, min(first + PER_SSHD, self.hosts))]
            server = sshd.start(self.work / f"sshd{first}", addresses[0], lab.free_port(addresses[0]), [lab.USER],
                                also=tuple(addresses[1:]))
            self.servers.append(server)
            for i, where in enumerate(addresses, start=first):
                known.append(f"[{where}]:{server.port} {server.host_public_key}\n")
                inventory.append(f"    h{i}:\n      ansible_host: {where}\n      ansible_port: {server.port}\n"
                                 f"      ansible_ssh_private_key_file: {server.client_key}\n"
                                 f"      dir: {self.folder(i)}\n      remediate_state_dir: {self.folder(i)}/.state\n")
        (self.work / "known_hosts").write_text("".join(known))
        (self.work / "inventory.yml").write_text("".join(inventory))
        steps = [{"id": name.split(".")[0], "kind": "file", "params": {"path": f"{{{{ dir }}}}/{name}", "content": fixed}}
                 for name, (_, fixed) in STEPS.items()]
        (self.work / "storm.yml").write_text(json.dumps({"name": "serve-storm", "steps": steps}))
        (self.work / "rules.yml").write_text(json.dumps({"rules": [
            {"name": "storm", "match": {"bench": "storm"}, "playbook": str(self.work / "storm.yml"),
             "host_label": "instance", "max_runs_per_hour": 100000, "resolve_timeout": "1h"}]}))
        for i in range(self.hosts):
            self.folder(i).mkdir(parents=True)
            for name, (broken, _) in STEPS.items():
                (self.folder(i) / name).write_text(broken)
        subprocess.run(["chown", "-R", f"{lab.USER}:{lab.USER}", str(self.work / "hosts")], check=True)

    def untouched(self) -> list[str]:
        """The hosts whose files are not as broken as they began (a plan never changes a host)."""
        return [f"h{i}" for i in range(self.hosts) for name, (broken, _) in STEPS.items()
                if (self.folder(i) / name).read_text() != broken]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@dataclass(frozen=True)
class Firing:
    alertname: str
    host: int
    cluster: int
    fingerprint: str
    starts_at: str

    def alert(self) -> dict[str, Any]:
        labels = {"alertname": self.alertname, "instance": f"h{self.host}:9100", "bench": "storm",
                  "cluster": f"c{self.cluster}", "severity": "page"}
        return {"status": "firing", "labels": labels, "annotations": {"summary": "serve storm benchmark"},
                "startsAt": self.starts_at, "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.1.250:9090/graph", "fingerprint": self.fingerprint}


def burst(hosts: int, alertnames: int, group: int, alerts: int, seed: int = 28) -> tuple[list[Firing], list[list[Firing]]]:
    """The firings, and the POSTs (each a group of firings: one alertname, one cluster) in the order they are sent."""
    started = lab.now_iso()
    firings = [Firing(f"Storm{a}", h, h // group, uuid.uuid4().hex[:16], started)
               for a in range(alertnames) for h in range(hosts)]
    groups: dict[tuple[str, int], list[Firing]] = {}
    for f in firings:
        groups.setdefault((f.alertname, f.cluster), []).append(f)
    copies = max(1, alerts // len(firings))
    posts = [g for g in groups.values() for _ in range(copies)]
    random.Random(seed).shuffle(posts)
    return firings, posts


def payload(alerts: list[Firing]) -> dict[str, Any]:
    """Alertmanager's webhook v4 for one group."""
    first = alerts[0]
    common = {"alertname": first.alertname, "bench": "storm", "cluster": f"c{first.cluster}", "severity": "page"}
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{first.alertname}", cluster="c{first.cluster}"}}',
            "truncatedAlerts": 0, "status": "firing", "receiver": "remediate",
            "groupLabels": {"alertname": first.alertname, "cluster": f"c{first.cluster}"}, "commonLabels": common,
            "commonAnnotations": {"summary": "serve storm benchmark"}, "externalURL": "http://127.0.1.250:9093",
            "alerts": [a.alert() for a in alerts]}


@dataclass
class Result:
    """What one storm showed: the checks' findings (empty when all held) and the figures."""

    problems: list[str]
    firings: int
    posts: int
    alerts: int
    incidents: int
    answer_ms: list[float]
    burst_s: float
    to_pending_s: list[float]
    all_pending_s: float
    peak_mb: float


#: Each POST's answer time (ms), when it was sent (s into the burst) and its rank in answering (diagnostics).
slowest: list[tuple[float, float, int]] = []


def send(serve: lab.Serve, posts: list[list[Firing]], senders: int) -> tuple[list[float], dict[Firing, float],
                                                                            dict[Firing, list[dict[str, Any]]], float]:
    """Every POST, senders at a time: each one's answer time (ms), each firing's first send (epoch), the answers
    about each firing, and the burst's length (s)."""
    first_sent: dict[Firing, float] = {}
    answers: dict[Firing, list[dict[str, Any]]] = {}
    guard = threading.Lock()
    times: list[float] = []
    slowest.clear()

    def one(group: list[Firing]) -> None:
        body = payload(group)
        with guard:
            now = time.time()
            for f in group:
                first_sent.setdefault(f, now)
        began = time.perf_counter()
        status, said = serve.call("POST", "/alertmanager", body)
        spent = (time.perf_counter() - began) * 1000
        if status != 200:
            raise SystemExit(f"serve_storm: the webhook answered {status}: {said}")
        with guard:
            times.append(spent)
            slowest.append((spent, began - start, len(times)))
            for f, answer in zip(group, said["incidents"]):
                answers.setdefault(f, []).append(answer)

    began = time.monotonic()
    start = time.perf_counter()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(one, posts))
    return times, first_sent, answers, time.monotonic() - began


def deduped(firings: list[Firing], answers: dict[Firing, list[dict[str, Any]]]) -> tuple[dict[Firing, int], list[str]]:
    """Each firing's incident id; and what is wrong: a firing given two ids, or `new` other than once, or two firings
    sharing one incident."""
    problems, ids = [], {}
    for f in firings:
        given = answers.get(f, [])
        numbers = {a["id"] for a in given}
        if len(numbers) != 1:
            problems.append(f"{f.alertname} on h{f.host}: answered with incidents {sorted(numbers)}")
            continue
        if sum(1 for a in given if a["new"]) != 1:
            problems.append(f"{f.alertname} on h{f.host}: new in {sum(1 for a in given if a['new'])} answers")
        ids[f] = numbers.pop()
    if len(set(ids.values())) != len(ids):
        problems.append("two firings were given one incident")
    return ids, problems


def database(work: Path) -> Path:
    return next(work.glob("serve-storm-*/incidents.db"))


def incidents(work: Path) -> list[dict[str, Any]]:
    """serve's incidents as its database holds them, read-only: GET /incidents wants a person's token, and the
    database has each plan's time to the microsecond (planned_at; the API shows whole seconds)."""
    with sqlite3.connect(f"file:{database(work)}?mode=ro", uri=True, timeout=30) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT id, state, reason, alertname, host, plan_diff IS NOT NULL AS "
                                            "planned, planned_at FROM incidents")]


def wait_pending(work: Path, count: int, within: float) -> list[dict[str, Any]]:
    """The incidents once count of them are each pending with a plan or in a final state (or time is up)."""
    deadline = time.monotonic() + within
    while True:
        found = incidents(work)
        done = [i for i in found if i["state"] in lab.FINAL or (i["state"] == "pending" and i["planned"])]
        if len(found) >= count and len(done) == len(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


class Watch(threading.Thread):
    """serve's incidents through its API (a person's token), every `every` s from before the burst: when each was
    first seen pending with its plan (the Temporal backend keeps no database here; each time is late by up to one
    look and one GET)."""

    def __init__(self, serve: lab.Serve, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.serve, self.every = serve, every
        self.seen: dict[int, float] = {}
        self.last: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            status, found = self.serve.call("GET", "/incidents")
            if status != 200:
                continue
            now = time.time()
            for i in found:
                if i["state"] == "pending" and i["plan_diff"]:
                    self.seen.setdefault(i["id"], now)
            self.last = [{"id": i["id"], "state": i["state"], "reason": i["reason"], "alertname": i["alertname"],
                          "host": i["host"], "planned": bool(i["plan_diff"]), "planned_at": self.seen.get(i["id"])}
                         for i in found]

    def wait(self, count: int, within: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            done = [i for i in self.last if i["state"] in lab.FINAL or (i["state"] == "pending" and i["planned"])]
            if len(self.last) >= count and len(done) == len(self.last):
                break
            time.sleep(self.every)
        self.halt.set()
        return self.last


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def started(work: Path, hosts: int, paused: bool = False, backend: str = "embedded") -> Iterator[tuple[Fleet, lab.Serve]]:
    """The fleet and one serve (and Temporal's dev server for that backend), stopped at the end (the serve first)."""
    with ExitStack() as stack:
        fleet = Fleet(work, hosts)
        stack.callback(fleet.stop)
        fleet.start()
        options: tuple[str, ...] = ("--paused",) if paused else ()
        if backend == "temporal":
            temporal = lab.Temporal(work)
            stack.callback(temporal.stop)
            temporal.start()
            options += ("--backend", "temporal", "--temporal-address", temporal.address, "--temporal-task-queue",
                        f"storm-{uuid.uuid4().hex[:6]}")
        serve = lab.Serve("storm", SERVE_ADDRESS, work, options, lab.serve_env(work))
        stack.callback(serve.stop)
        serve.start(fleet)  # type: ignore[arg-type]  # a Fleet has the work folder (rules, inventory) serve reads
        yield fleet, serve


def storm(work: Path, *, alerts: int, hosts: int, alertnames: int, group: int, senders: int,
          within: float = 300.0, paused: bool = False, backend: str = "embedded") -> Result:
    """One storm on a fresh fleet and serve: the checks and the figures."""
    with started(work, hosts, paused, backend) as (fleet, serve):
        firings, posts = burst(hosts, alertnames, group, alerts)
        watch = Watch(serve)
        if backend == "temporal":
            watch.start()
        times, first_sent, answers, length = send(serve, posts, senders)
        sent_alerts = sum(len(p) for p in posts)
        ids, problems = deduped(firings, answers)
        found = watch.wait(len(firings), within) if backend == "temporal" else wait_pending(work, len(firings), within)
        assert serve.process is not None
        memory = peak_mb(serve.process.pid)
    problems += [f"incident {i['id']} ({i['alertname']} on {i['host']}) is {i['state']}: {i['reason']}"
                 for i in found if i["state"] != "pending" or not i["planned"]]
    if len(found) != len(firings):
        problems.append(f"{len(found)} incidents for {len(firings)} firings")
    problems += [f"{h}: a file changed, though nothing was approved" for h in fleet.untouched()]
    planned = {i["id"]: i["planned_at"] for i in found if i["planned_at"]}
    to_pending = [planned[ids[f]] - first_sent[f] for f in firings if f in ids and ids[f] in planned]
    all_pending = max(planned.values()) - min(first_sent.values()) if planned else float("nan")
    return Result(problems, len(firings), len(posts), sent_alerts, len(found), times, length, to_pending,
                  all_pending, memory)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0-1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else float("nan")


def show(result: Result, backend: str) -> None:
    print(f"\n{backend}: {result.alerts} alerts in {result.posts} POSTs ({result.firings} firings), "
          f"{result.incidents} incidents")
    a = result.answer_ms
    print(f"  webhook answer, ms: p50 {statistics.median(a):.1f}  p99 {quantile(a, 0.99):.1f}  max {max(a):.1f}")
    print("  slowest answers (ms @ s into the burst): " + ", ".join(
        f"{ms:.0f} @ {at:.2f}" for ms, at, _ in sorted(slowest, reverse=True)[:5]))
    print(f"  burst: {result.burst_s:.2f} s, {result.alerts / result.burst_s:.0f} alerts/s")
    if result.to_pending_s:
        t = result.to_pending_s
        print(f"  first alert -> pending plan, s: p50 {statistics.median(t):.2f}  p99 {quantile(t, 0.99):.2f}  "
              f"max {max(t):.2f}; the last incident pending {result.all_pending_s:.2f} s after the first alert")
    print(f"  serve's peak memory (VmHWM): {result.peak_mb:.0f} MB")
    print("  checks: " + ("every firing one incident, new once; every incident pending with its plan; hosts "
                          "unchanged" if not result.problems else "FAILED\n    " + "\n    ".join(result.problems)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--alertnames", type=int, default=5)
    parser.add_argument("--group", type=int, default=5, help="hosts per cluster: alerts per POST")
    parser.add_argument("--senders", type=int, default=8, help="POSTs in flight at once")
    parser.add_argument("--backend", choices=("embedded", "temporal"), default="embedded",
                        help="temporal: Temporal's dev server (serve_lab.Temporal, on 127.0.0.1) and serve on it; the "
                             "plans' times from GET /incidents every 0.2 s")
    parser.add_argument("--paused", action="store_true",
                        help="serve paused: the intake alone (every incident ignored, nothing planned; the checks "
                             "that want plans fail)")
    parser.add_argument("--keep", action="store_true", help="keep the logs and state (kept anyway on a failure)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="remediate-serve-storm-"))
    result = storm(work, alerts=args.alerts, hosts=args.hosts, alertnames=args.alertnames, group=args.group,
                   senders=args.senders, paused=args.paused, backend=args.backend)
    show(result, args.backend)
    print(f"  load at the end: {load()}")
    if result.problems or args.keep:
        print(f"serve_storm: the logs and state are in {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if result.problems else 0)


if __name__ == "__main__":
    main()
