"""serve on Temporal under chaos, real parts only: a Temporal dev server, three `remediate serve --backend temporal`
replicas (three "machines": each its own XDG_STATE_HOME and --state-dir), a real Alertmanager whose receiver sends
every alert to all three, and the lab's gateway ec2-mx with the incident's fault. Incident after incident, a random
live replica is SIGKILLed at each moment (planning, pending, between two steps, inside a step, waiting for resolved,
rolling back; where an activity runs, its worker half of the time) and started again, and the Temporal server is
restarted once mid-apply. Every alert gives one incident,
every incident ends, the host's journal shows no run started twice or beside another and no step applied twice, the
compose file ends fixed (and mail is saved) or byte-identical to the broken original.

REMEDIATE_CHAOS_KILLS sets how many SIGKILLs at least (default 6, one a moment: about 2 minutes; the run goes on until
every moment has had one); REMEDIATE_CHAOS_SEED replays a run's choices; REMEDIATE_CHAOS_MOMENTS (a comma list
of chaosrun.MOMENTS) kills at those alone, to bisect a failure. `pytest -s` shows the summary table."""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import chaoscheck, labctl
from .chaoscheck import Tally
from .chaosctl import Alertmanager, Replica, TemporalServer, share_plan_key
from .chaosrun import MOMENTS, Chaos, rules
from .chaoswatch import HOST, JournalWatch, Seen, Step

KILLS = int(os.environ.get("REMEDIATE_CHAOS_KILLS", "6"))
#: The moments to kill at (default: all of chaosrun.MOMENTS), comma-separated: to bisect a failure.
CHOSEN = tuple(m.strip() for m in os.environ.get("REMEDIATE_CHAOS_MOMENTS", ",".join(MOMENTS)).split(",") if m.strip())
#: Seconds without a heartbeat before Temporal retries an activity elsewhere: a takeover in seconds, not a minute.
HEARTBEAT = "5"


@pytest.fixture
def chaos(broken_lab: None, tmp_path: Path) -> Iterator[Chaos]:
    tag = uuid.uuid4().hex[:8]
    token = os.urandom(18).hex()
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    (tmp_path / "rules.yml").write_text(rules())
    temporal = TemporalServer(tmp_path)
    argv = ["serve", "--rules", str(tmp_path / "rules.yml"), "-i", str(labctl.INVENTORY), "--token-file",
            str(token_file), "--backend", "temporal", "--temporal-address", temporal.address,
            "--temporal-task-queue", f"chaos-{tag}", "--host-runs-per-hour", "1000",
            "--temporal-heartbeat-timeout", HEARTBEAT]
    names = ("r1", "r2", "r3")
    person = one_person([tmp_path / name / "serve" for name in names])  # the approver: the shared token is no person
    replicas = [Replica(name, tmp_path / name, argv, person) for name in names]
    share_plan_key([r.home for r in replicas])
    alertmanager = Alertmanager(tmp_path, [r.url for r in replicas], token_file)
    watch = JournalWatch({r.name: r.home for r in replicas})
    seed = int(os.environ.get("REMEDIATE_CHAOS_SEED") or random.randrange(1 << 32))
    with contextlib.ExitStack() as stack:  # every part stopped, the last started first, whatever fails
        stack.callback(labctl.reset)
        stack.callback(show_logs, replicas, tmp_path)
        stack.callback(temporal.stop)
        temporal.start()
        for replica in replicas:
            stack.callback(replica.stop)
            replica.start()
        for replica in replicas:
            replica.ready()
        stack.callback(alertmanager.stop)
        alertmanager.start()
        watch.start()
        stack.callback(watch.stop)
        yield Chaos(temporal, alertmanager, replicas, watch, Tally(seed), tag, CHOSEN)


def one_person(state_dirs: list[Path]) -> str:
    """A named token (role admin) in every replica's --state-dir, the same tokens file in each, as an operator
    gives every serve machine the same people; the token."""
    from remediate.serve.identity import FILE, Tokens
    first, *others = state_dirs
    first.mkdir(parents=True, mode=0o700)
    token = Tokens(first).add("chaos", ["admin"])
    for folder in others:
        folder.mkdir(parents=True, mode=0o700)
        (folder / FILE).write_bytes((first / FILE).read_bytes())
        (folder / FILE).chmod(0o600)
    return token


def show_logs(replicas: list[Replica], folder: Path) -> None:
    """The end of each replica's log: pytest shows it when the test failed (and -s always)."""
    for replica in replicas:
        print(f"\n--- the end of {replica.name}'s log ({replica.starts} starts) ---\n" + replica.log()[-4000:])
    print(f"\nchaos: logs in {folder}")


def test_serve_on_temporal_survives_sigkills_at_every_moment_and_a_temporal_restart(chaos: Chaos) -> None:
    assert set(CHOSEN) <= set(MOMENTS), f"REMEDIATE_CHAOS_MOMENTS: {CHOSEN}, not among {MOMENTS}"
    began = time.monotonic()
    try:
        chaos.run(KILLS)
    finally:
        chaos.tally.seconds = time.monotonic() - began
        print("\n" + chaos.tally.table())
    assert len(chaos.tally.kills) >= KILLS and chaos.temporal_restarted
    assert set(CHOSEN) <= {k.moment for k in chaos.tally.kills}, chaos.tally.table()


def version(run_id: str, pid: int, started: str, outcome: str, *steps: tuple[str, str, str | None],
            copy: str = HOST, finished: str | None = None) -> Seen:
    return Seen(0.0, copy, run_id, pid, started, finished, outcome, tuple(Step(*s) for s in steps))


def test_the_journal_verdicts_see_a_second_start_a_step_applied_twice_and_runs_side_by_side() -> None:
    """The verdicts the chaos test gives each incident, on journals written by hand: each can fail."""
    first = ("backup", "applying", "10:00:01"), ("restart", "planned", None)
    begun = ("backup", "verified", "10:00:01"), ("restart", "applying", "10:00:02")
    clean = [version("A", 1, "10:00:00", "running", *first),
             version("A", 1, "10:00:00", "running", *begun, copy="r1"),  # r1's newest record, never sent: killed
             version("A", 1, "10:00:00", "running", *first, copy="r1"),  # r1 again, taking the host's copy back
             version("A", 1, "10:00:00", "rolled-back", ("backup", "rolled-back", "10:00:01"), ("restart", "planned", None),
                     finished="10:00:09")]
    assert chaoscheck.twice_started(clean) == chaoscheck.twice_applied(clean) == chaoscheck.overlapping(clean) == []
    assert chaoscheck.final_outcomes(clean) == {"A": "rolled-back"}
    beside = [*clean, version("A", 2, "10:00:05", "running", ("backup", "applying", "10:00:05"), copy="r3")]
    assert chaoscheck.twice_started(beside) == ["run A was started 2 times: by pid 1 at 10:00:00, by pid 2 at 10:00:05"]
    again = [version("A", 1, "10:00:00", "running", *begun),
             version("A", 1, "10:00:00", "running", ("backup", "applying", "10:00:04"), ("restart", "applying", "10:00:02"))]
    assert chaoscheck.twice_applied(again) == [
        "run A: step backup is applying again in the host's journal after it had been applied",
        "run A: step backup began 2 times: [(1, '10:00:01'), (1, '10:00:04')]"]
    second = version("B", 3, "10:00:05", "applied", ("backup", "verified", "10:00:06"), finished="10:00:12")
    assert chaoscheck.overlapping([*clean, second]) == [
        "run B started at 10:00:05 while run A ran (10:00:00 to 10:00:09)"]
    assert chaoscheck.overlapping([*clean[:3], second]) == [
        "run B started at 10:00:05 while run A ran (10:00:00 to never finished)"]
