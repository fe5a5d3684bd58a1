"""`remediate apply --backend temporal` end to end: the plan made here, a rollout workflow on a real Temporal (the
`temporal` dev server), `remediate serve --backend temporal` processes as its workers, ten hosts behind the real
sshd (test_fleet.py's fleet). The process that started a rollout is SIGKILLed and the rollout completes; the worker
running the canary is SIGKILLed inside a step and the other finishes, no host applied twice (the journal); the
failure budget goes on within it and stops over it, rolling the fleet back byte for byte; a host changed after the
plan is refused as stale, changing nothing; `remediate rollouts` and `rollouts show` print it all."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from remediate.engine import journal, planfile, runrecord

from .conftest import SshLab
from .test_fleet import BOOK, HOSTS, fleet, snapshot
from .test_serve_temporal_cli import Serve, setup, start

#: fleet.yml with a step between the edit and the settle that waits for the host's `gate` file (two minutes at
#: most): a host held mid-apply, inside a step, until the test opens its gate.
GATED = BOOK.read_text().replace("  - id: settle\n", """\
  - id: hold
    kind: command
    params:
      command: ["sh", "-c", "i=0; while [ ! -e \\"$1\\" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; test -e \\"$1\\"", "sh", "{{ dir }}/gate"]
      undo: ["true"]
  - id: settle
""")
FIXED = "relay_transport=lmtp:[127.0.0.11]:2525\n"


def until(what: str, check: Callable[[], Any], within: float = 120) -> Any:
    """check() once it is truthy; a failure naming what was awaited after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not {what} within {within} s"
        time.sleep(0.2)


@dataclass
class Apply:
    """`remediate apply --backend temporal --json` running: its JSON events as they come."""

    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    said: list[str] = field(default_factory=list)  # anything else it printed (stderr comes here too)
    reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))
            else:
                self.said.append(line)

    def wait(self, within: float) -> int:
        """Its exit code, once everything it printed is read."""
        code = self.proc.wait(within)
        self.reader.join(30)
        return code

    def rollout_id(self) -> str:
        def said() -> str | None:
            for e in self.events:
                found = re.match(r"rollout (\S+) started on Temporal", e.get("message", ""))
                if found:
                    return found.group(1)
            assert self.proc.poll() is None, self.events
            return None
        return str(until("started", said, 180))

    def summaries(self) -> dict[str, dict[str, Any]]:
        return {e["host"]: e for e in self.events if e["event"] == "summary"}


@dataclass
class Fleet:
    temporal: tuple[str, ...]
    inventory: Path
    root: Path
    book: Path
    workers: list[Serve]

    def apply(self, *args: str) -> Apply:
        proc = subprocess.Popen(["remediate", "apply", "--yes", "--json", "-i", str(self.inventory), "-p",
                                 str(self.book), "--host", "all", "--backend", "temporal", *self.temporal, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                env={**os.environ, "CI": "true"})
        return Apply(proc)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["remediate", *args, *self.temporal], capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    def show(self, rollout_id: str) -> dict[str, Any]:
        done = self.cli("rollouts", "show", rollout_id, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        return dict(json.loads(done.stdout))

    def ended(self, rollout_id: str) -> dict[str, Any]:
        return dict(until(f"rollout {rollout_id} ended", lambda: (r := self.show(rollout_id))["ended"] and r, 180))

    def gate(self, *hosts: str) -> None:
        for host in hosts:
            (self.root / host / "gate").write_text("open\n")

    def mid_apply(self, host: str) -> None:
        """Wait until host's first step is done and its run is inside the held step."""
        until(f"{host} mid-apply", lambda: (self.root / host / "relay.conf").read_text() == FIXED)

    def holder(self, host: str) -> int:
        """The pid that holds host's lock (the serve process whose worker runs its apply)."""
        lock = self.root / host / ".state" / "lock"
        return int(until(f"{host}'s lock", lambda: lock.exists() and json.loads(lock.read_text() or "{}").get("pid")))


def make(ssh_lab: SshLab, temporal: str, tmp_path: Path, workers: int = 1, gated: bool = False,
         poisoned: tuple[str, ...] = (), machines: str | None = None) -> Fleet:
    """A fleet, its playbook, and serve workers on a task queue of their own. machines: each worker gets a state home
    of its own (journals, plan copies), as on a machine of its own, with this plan key ("same") or one of its own
    ("own"); by default they share the test's."""
    inventory, root = fleet(ssh_lab, tmp_path, poisoned)
    book = tmp_path / "fleet.yml"
    book.write_text(GATED if gated else BOOK.read_text())
    rules, _ = setup(tmp_path)
    queue = ("--temporal-address", temporal, "--temporal-task-queue", f"rollout-{uuid.uuid4().hex[:8]}",
             "--temporal-heartbeat-timeout", "3")
    made = Fleet(queue, inventory, root, book, [])
    for n in range(workers):
        with pytest.MonkeyPatch.context() as env:
            if machines is not None:
                env.setenv("XDG_STATE_HOME", str(state_home(tmp_path / f"machine{n}", machines == "same")))
            made.workers.append(start(f"127.0.0.{25 + n}", tmp_path / f"worker{n}", rules, inventory, *queue))
    return made


def state_home(base: Path, same_key: bool) -> Path:
    """A state home of another machine: empty, or holding this one's plan key (0600, in folders only we can write)."""
    (base / "remediate").mkdir(parents=True, mode=0o700)
    base.chmod(0o700)
    if same_key:
        key = base / "remediate" / planfile.KEY_NAME
        key.write_bytes(planfile.key())
        key.chmod(0o600)
    return base


@pytest.fixture
def fleets(ssh_lab: SshLab, temporal: str, tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def one(**given: Any) -> Fleet:
        made.append(make(ssh_lab, temporal, tmp_path, **given))
        return made[-1]
    yield one
    for f in made:
        for host in HOSTS:  # nothing left waiting on a gate
            f.gate(host)
        for worker in f.workers:
            worker.stop()


def runs(host: str) -> list[dict[str, Any]]:
    """host's recorded runs, oldest first (every process here shares one state home: the test's)."""
    return list(reversed(journal.history(host)))


def on_host(f: Fleet, host: str) -> list[dict[str, Any]]:
    """host's runs as the host's own journal copies tell them (what workers on any machine read), oldest first."""
    found = [runrecord.newest(p.read_bytes()) for p in (f.root / host / ".state").glob("*/journal.json")]
    return sorted(found, key=lambda r: (r["started"], r["run_id"]))


def test_a_rollout_of_ten_hosts_goes_on_after_the_process_that_started_it_is_killed(
        fleets: Callable[..., Fleet]) -> None:
    f = fleets(gated=True)
    f.gate(*(h for h in HOSTS if h != "h02"))
    started = f.apply("--serial", "1,3")
    rollout_id = started.rollout_id()
    f.mid_apply("h02")  # the canary is done; the second batch is inside its held step
    started.proc.kill()
    started.proc.wait(30)
    f.gate("h02")
    record = f.ended(rollout_id)
    assert record["state"] == "done" and record["batches"][0] == ["h01"] and len(record["batches"]) == 4, record
    assert {h: r["state"] for h, r in record["hosts"].items()} == {h: "applied" for h in HOSTS}
    for host in HOSTS:
        assert (f.root / host / "relay.conf").read_text() == FIXED and (f.root / host / "settled").exists()
        assert [r["outcome"] for r in runs(host)] == ["applied"], runs(host)
        assert record["hosts"][host]["run_id"] == runs(host)[0]["run_id"]
    listed = f.cli("rollouts")
    assert listed.returncode == 0 and re.search(rf"{rollout_id}\s.*fleet\s+10\s+done\s+10\s+0", listed.stdout), listed
    rows = [json.loads(line) for line in f.cli("rollouts", "--json").stdout.splitlines()]
    (row,) = [r for r in rows if r["id"] == rollout_id]
    assert row["state"] == "done" and row["applied"] == 10 and row["failed"] == 0 and row["hosts"] == 10, row
    shown = f.cli("rollouts", "show", rollout_id)
    assert shown.returncode == 0 and f"rollout {rollout_id}: fleet on 10 host(s)" in shown.stdout, shown
    assert "batches 1 then 3 then 3 then 3 (--serial 1,3)" in shown.stdout
    assert all(re.search(rf"^{h}\s+applied\s+\S+", shown.stdout, re.M) for h in HOSTS), shown.stdout
    followed = f.cli("rollouts", "show", rollout_id, "--follow", "--json")
    events = [json.loads(line) for line in followed.stdout.splitlines() if line.startswith("{")]
    assert followed.returncode == 0 and sorted(e["host"] for e in events if e["event"] == "summary") == HOSTS
    assert events[0]["event"] == "rollout_started" and events[0]["serial"] == "1,3" and events[0]["hosts"] == HOSTS
    assert events[-1]["event"] == "rollout_finished" and events[-1]["exit_code"] == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_a_closed_terminal_detaches_and_the_rollout_goes_on(fleets: Callable[..., Fleet],
                                                                      sig: signal.Signals) -> None:
    f = fleets(gated=True)
    f.gate(*HOSTS[1:])
    started = f.apply("--serial", "5")
    rollout_id = started.rollout_id()
    f.mid_apply("h01")
    started.proc.send_signal(sig)
    assert started.wait(60) == 128 + sig, (started.said, started.events)
    assert any(f"detached: rollout {rollout_id} goes on without this process; follow it with `remediate rollouts "
               f"show {rollout_id} --follow`" in line for line in started.said), started.said
    assert f.show(rollout_id)["state"] == "running"  # detached, not cancelled
    f.gate("h01")
    assert f.ended(rollout_id)["state"] == "done"
    assert all((f.root / h / "settled").exists() for h in HOSTS)


def test_the_worker_running_the_canary_is_killed_mid_step_and_the_other_finishes_no_host_applied_twice(
        fleets: Callable[..., Fleet]) -> None:
    f = fleets(gated=True, workers=2, machines="same")  # each its own journals: the host's copy is what they share
    f.gate(*HOSTS[1:])
    started = f.apply("--serial", "1,3")
    rollout_id = started.rollout_id()
    f.mid_apply("h01")
    pid = f.holder("h01")
    (victim,) = [w for w in f.workers if w.proc.pid == pid]
    victim.proc.kill()
    victim.proc.wait(30)  # reaped: its pid is gone, as on a machine that died
    f.gate("h01")
    assert started.wait(240) == 0, (started.said, started.events)
    assert {h: s["status"] for h, s in started.summaries().items()} == {h: "changed" for h in HOSTS}
    first, second = on_host(f, "h01")  # the cut-off run, undone; then one run from the same reviewed plan, applied
    assert first["outcome"] == "rolled-back" and second["outcome"] == "applied", on_host(f, "h01")
    assert first["finished"] <= second["started"]  # never two at once
    for host in HOSTS[1:]:
        assert [r["outcome"] for r in on_host(f, host)] == ["applied"], on_host(f, host)
    assert all((f.root / h / "relay.conf").read_text() == FIXED for h in HOSTS)
    log = [what for what, _ in f.show(rollout_id)["hosts"]["h01"]["log"]]
    assert "retried" in log and "restarted" in log, log


def test_a_failure_within_the_budget_goes_on(fleets: Callable[..., Fleet]) -> None:
    f = fleets(poisoned=("h03",))
    started = f.apply("--serial", "1,3", "--max-fail-percent", "20")
    assert started.wait(240) == 1, (started.said, started.events)
    result = started.summaries()
    assert result["h03"]["status"] == "rolled-back" and "verification" in result["h03"]["message"]
    assert {result[h]["status"] for h in HOSTS if h != "h03"} == {"changed"}
    assert not [e for e in started.events if e["event"] == "rollout_aborted"]


def test_over_the_budget_it_stops_and_rolls_the_fleet_back_byte_for_byte(fleets: Callable[..., Fleet]) -> None:
    f = fleets(poisoned=("h03", "h05"))
    before = snapshot(f.root)
    started = f.apply("--serial", "1,3", "--max-fail-percent", "20", "--rollback-fleet-on-abort")
    assert started.wait(240) == 6, (started.said, started.events)
    result = started.summaries()
    assert [h for h in HOSTS if result[h]["status"] == "skipped"] == HOSTS[7:]
    assert {result[h]["status"] for h in ("h01", "h02", "h04", "h06", "h07")} == {"rolled-back"}
    aborted = next(e for e in started.events if e["event"] == "rollout_aborted")
    assert "reaching --max-fail-percent 20" in aborted["reason"] and aborted["skipped"] == HOSTS[7:]
    assert snapshot(f.root) == before


def test_a_host_changed_after_the_plan_is_refused_as_stale_and_changes_nothing(fleets: Callable[..., Fleet]) -> None:
    f = fleets(gated=True)
    f.gate(*HOSTS[1:])
    started = f.apply("--serial", "1,3")
    rollout_id = started.rollout_id()
    f.mid_apply("h01")
    changed = "relayhost=[127.0.0.99]:2525\n"
    (f.root / "h03" / "relay.conf").write_text(changed)  # after the plan was reviewed, before h03's batch
    f.gate("h01")
    assert started.wait(240) == 5, (started.said, started.events)
    result = started.summaries()
    assert result["h03"]["status"] == "stale" and "not as the saved plan saw it" in result["h03"]["message"]
    assert (f.root / "h03" / "relay.conf").read_text() == changed and not runs("h03")
    assert f.show(rollout_id)["hosts"]["h03"]["state"] == "stale"


def test_a_worker_whose_plan_key_is_another_refuses_the_host_and_changes_nothing(fleets: Callable[..., Fleet]) -> None:
    f = fleets(machines="own")
    before = snapshot(f.root)
    started = f.apply("--serial", "1")
    assert started.wait(240) == 5, (started.said, started.events)
    result = started.summaries()
    assert result["h01"]["status"] == "error" and "plan key" in result["h01"]["message"], result["h01"]
    assert "is not the one the rollout was planned under" in result["h01"]["message"]
    assert {result[h]["status"] for h in HOSTS[1:]} == {"skipped"} and snapshot(f.root) == before
