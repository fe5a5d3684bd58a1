"""The takeover of bench/serve_backends.py: two Temporal replicas on one task queue; an incident whose second step
waits on the host for a file nobody writes; once that step runs (its shell has written its pid to `inside`), SIGKILL
to the replica running the apply (the pid in the run's journal), and the time until the other replica brings the
incident to a final state. Never a sleep that picks the moment: the kill waits for the step's own mark."""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import serve_lab as lab

from remediate.engine import runrecord


@dataclass
class Takeover:
    shown: float  # SIGKILL -> the other replica's API shows a final state
    recorded: float | None  # SIGKILL -> the workflow sets that state (its search attribute, in Temporal's history)
    picked_up: float | None  # SIGKILL -> the first write to the run's journal after it (the retried attempt)
    slowest_get: float  # the longest GET /incidents/N on the other replica meanwhile
    state: str
    victim: str
    orphan: bool  # the killed worker's command still ran on the host when the incident ended
    files: str  # the host's files then: as before the run, fixed, or what they are
    history: list[str]  # serve's history of the incident from the apply on
    timeline: list[str]  # Temporal's events from the kill on, each at its time after the kill


@dataclass
class Armed:
    """An apply inside its slow step: which replica runs it (victim), which is left, and the run's local journal."""

    number: int
    journal: Path
    victim: lab.Serve
    survivor: lab.Serve


def seconds(at: str) -> float:
    """An ISO 8601 time (Temporal's, to the nanosecond: Python keeps the microseconds) as seconds since the epoch."""
    return datetime.fromisoformat(at).timestamp()


def pid_of(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def still_runs(pid: int | None, folder: Path) -> bool:
    try:
        return pid is not None and str(folder).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class FirstWrite(threading.Thread):
    """When a file is first written after start(), polled every 5 ms on its own thread: a GET that blocks (a query
    waiting for a dead worker) does not delay what this sees."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.before, self.began = path, path.stat().st_mtime_ns, time.monotonic()
        self.at: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and self.at is None:
            if self.path.stat().st_mtime_ns != self.before:
                self.at = time.monotonic() - self.began
            time.sleep(0.005)


def arm(host: lab.Host, replicas: list[lab.Serve], work: Path) -> Armed:
    """An alert to both replicas, approved on the first; back once the apply is inside its slow step."""
    host.reset()
    fingerprint, starts = uuid.uuid4().hex, lab.now_iso()
    firing = lab.payload("ServeBenchSlow", fingerprint, starts)
    answers = [s.call("POST", "/alertmanager", firing) for s in replicas]
    number = int(answers[0][1]["incidents"][0]["id"])
    first = replicas[0]
    pending = first.wait(number, "pending with a plan", lambda i: i["state"] == "pending" and bool(i["plan_diff"]))
    status, said = first.call("POST", f"/incidents/{number}/approve",
                              {"by": "bench", "plan_identity": pending["plan_identity"]})
    if status != 200:
        raise SystemExit(f"serve_backends: takeover: approve answered {status}: {said}")
    lab.until(lambda: pid_of(host.mark("inside")) is not None, 120, "the slow step running on the host")
    run_id = first.wait(number, "given its run id", lambda i: bool(i["run_id"]))["run_id"]
    journal = work / "state" / "remediate" / "runs" / f"{run_id}.{lab.HOST}.json"
    pid = runrecord.read(journal)["pid"]
    victims = [s for s in replicas if s.process is not None and s.process.pid == pid]
    if not victims:
        raise SystemExit(f"serve_backends: run {run_id} runs in pid {pid}, none of the replicas")
    return Armed(number, journal, victims[0], next(s for s in replicas if s is not victims[0]))


def takeover(host: lab.Host, replicas: list[lab.Serve], work: Path, temporal: lab.Temporal) -> Takeover:
    armed = arm(host, replicas, work)
    watch = FirstWrite(armed.journal)
    watch.start()
    killed, wall = time.monotonic(), time.time()
    armed.victim.kill()
    slowest, found = 0.0, None
    while True:
        asked = time.monotonic()
        status, found = armed.survivor.call("GET", f"/incidents/{armed.number}")
        slowest = max(slowest, time.monotonic() - asked)
        if status == 200 and found["state"] in lab.FINAL:
            break
        if time.monotonic() > killed + 600:
            raise SystemExit(f"serve_backends: incident {armed.number} not final 600 s after the kill: {found}")
        time.sleep(armed.survivor.poll)
    shown = time.monotonic() - killed
    watch.done.set()
    if armed.victim.process is None or armed.victim.process.poll() is None:
        raise SystemExit(f"serve_backends: {armed.victim.name} still runs: this was no takeover")
    inside = host.mark("inside")
    orphan = still_runs(pid_of(inside), host.folder)
    host.mark("abort").touch()  # the orphaned step, if it still runs, gives up without changing anything
    lab.until(lambda: not still_runs(pid_of(inside), host.folder), 30, "the killed worker's step ending on abort")
    whats = [h["what"] for h in found["history"]]
    since = len(whats) - whats[::-1].index("applying") if "applying" in whats else 0
    recorded, lines = timeline(temporal.events(f"remediate-incident-{armed.number}"), wall)
    return Takeover(shown, recorded, watch.at, slowest, found["state"], armed.victim.name, orphan, _files(host),
                    [f"{h['what']}: {h['detail']}" for h in found["history"][since:]], lines)


def timeline(events: list[dict[str, Any]], wall: float) -> tuple[float | None, list[str]]:
    """When the workflow set its final state, and its events from the kill on, each at its time after the kill."""
    names = {e["eventId"]: _attributes(e).get("activityType", {}).get("name") for e in events}
    final: float | None = None
    lines = []
    for event in events:
        at, kind, given = seconds(event["eventTime"]) - wall, event["eventType"].removeprefix("EVENT_TYPE_"), _attributes(event)
        if at < 0:
            continue
        detail = ""
        if kind == "ACTIVITY_TASK_STARTED":
            failed = (given.get("lastFailure") or {}).get("message")
            detail = (f"{names.get(given.get('scheduledEventId'))} attempt {given.get('attempt')}"
                      + (f" (the attempt before: {failed})" if failed else ""))
        elif kind == "WORKFLOW_TASK_SCHEDULED":
            detail = f"on {given.get('taskQueue', {}).get('kind', '?').removeprefix('TASK_QUEUE_KIND_').lower()} queue"
        elif kind == "WORKFLOW_TASK_TIMED_OUT":
            detail = given.get("timeoutType", "").removeprefix("TIMEOUT_TYPE_").lower()
        elif kind == "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES":
            field = given.get("searchAttributes", {}).get("indexedFields", {}).get("RemediateState")
            state = json.loads(base64.b64decode(field["data"])) if field else None
            detail = f"RemediateState {state}" if state else ""
            final = at if final is None and state in lab.FINAL else final
        lines.append(f"+{at:6.3f} s {kind.lower()} {detail}".rstrip())
    return final, lines


def _attributes(event: dict[str, Any]) -> dict[str, Any]:
    return next((v for k, v in event.items() if k.endswith("Attributes") and isinstance(v, dict)), {})


def _files(host: lab.Host) -> str:
    files = host.files()
    if files == lab.BROKEN and not host.mark("done").exists():
        return "as before the run"
    return "fixed" if files == lab.FIXED else f"changed: {files}"


def report(pair: list[lab.Serve], count: int, host: lab.Host, work: Path, temporal: lab.Temporal, said: str) -> None:
    """`count` takeovers, the killed replica started again after each; each printed with its history, then the
    median and spread."""
    seen: list[Takeover] = []
    for index in range(count):
        seen.append(takeover(host, pair, work, temporal))
        for serve in pair:
            if index < count - 1 and serve.process is not None and serve.process.poll() is not None:
                serve.start(host)  # the killed replica back, for the next kill
    print(f"\ntakeover: SIGKILL of the replica running an apply inside a step; two replicas, {said}:")
    for n, one in enumerate(seen, 1):
        picked = f"{one.picked_up:.2f} s" if one.picked_up is not None else "never"
        recorded = f"{one.recorded:.2f} s" if one.recorded is not None else "(not in Temporal's history)"
        print(f"  {n}. killed {one.victim}: {one.state}, set {recorded} after the kill and shown by the other "
              f"replica after {one.shown:.2f} s (its slowest GET meanwhile {one.slowest_get:.2f} s); the run's journal "
              f"first written again after {picked}; the killed worker's step {'still ran' if one.orphan else 'had stopped'}"
              f" on the host then; the files {one.files}")
        print("     Temporal: " + "".join(f"\n       {line}" for line in one.timeline))
        print("     serve's history: " + "".join(f"\n       {line[:200]}" for line in one.history))
    for what, values in (("shown", [t.shown for t in seen]), ("set", [t.recorded for t in seen if t.recorded]),
                         ("journal written", [t.picked_up for t in seen if t.picked_up])):
        if values:
            print(f"  kill -> {what}: median {statistics.median(values):.2f} s (min {min(values):.2f}, max "
                  f"{max(values):.2f}, {len(values)} of {len(seen)} kills)")
