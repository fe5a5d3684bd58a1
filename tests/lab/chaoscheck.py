"""The chaos test's verdicts on what the journal watcher saw during one incident: no run started twice or beside
another, no step applied twice; and its summary table."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .chaoswatch import HOST, Seen

#: A step's states once its mutation has begun (runner.py, undo.py); before it: planned, to-check, no-op.
BEGUN = frozenset({"applying", "applied", "verified", "checked", "failed", "rolled-back", "rollback-failed",
                   "rollback-blocked", "rollback-skipped"})
#: States after the mutation: seeing `applying` again after one of these is the step applied a second time.
AFTER = BEGUN - {"applying", "failed"}


def changed_something(version: Seen) -> bool:
    return any(s.state in BEGUN for s in version.steps)


def starts(trace: list[Seen]) -> dict[str, set[tuple[int, str]]]:
    """Each run id's starts, as (pid, started) across every copy that changed something: one per run."""
    found: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for version in trace:
        if changed_something(version):
            found[version.run_id].add((version.pid, version.started))
    return found


def twice_started(trace: list[Seen]) -> list[str]:
    return [f"run {run_id} was started {len(made)} times: " + ", ".join(f"by pid {pid} at {at}" for pid, at in sorted(made))
            for run_id, made in starts(trace).items() if len(made) > 1]


def twice_applied(trace: list[Seen]) -> list[str]:
    """A step whose mutation began twice in one run: two start times for it in any copy, or `applying` again in the
    host's copy after it was done there. (A worker's own copy may step back: one cut off after writing it, before
    the command that carried it to the host, is replaced by the host's copy when that worker takes the run over.)"""
    problems = []
    began: dict[tuple[str, str], set[tuple[int, str | None]]] = defaultdict(set)
    done: set[tuple[str, str]] = set()
    for version in trace:
        for step in version.steps:
            if step.state in BEGUN:
                began[(version.run_id, step.id)].add((version.pid, step.started))
            if version.copy != HOST:
                continue
            if step.state == "applying" and (version.run_id, step.id) in done:
                problems.append(f"run {version.run_id}: step {step.id} is applying again in the host's journal after "
                                "it had been applied")
            if step.state in AFTER:
                done.add((version.run_id, step.id))
    problems += [f"run {run_id}: step {step_id} began {len(made)} times: {sorted(made, key=str)}"
                 for (run_id, step_id), made in began.items() if len(made) > 1]
    return problems


def intervals(trace: list[Seen]) -> list[tuple[str, str, str]]:
    """(started, finished, run id) of each run in the host's copies that changed something; a run never finished ends
    at "9999" (as ISO times compare, after any other)."""
    newest: dict[str, Seen] = {}
    for version in trace:
        if version.copy == HOST and changed_something(version):
            newest[version.run_id] = version
    return sorted((v.started, v.finished or "9999", v.run_id) for v in newest.values())


def overlapping(trace: list[Seen]) -> list[str]:
    """Two runs on the host at once: one started before the one before it finished (to the journal's second)."""
    spans = intervals(trace)
    return [f"run {b[2]} started at {b[0]} while run {a[2]} ran ({a[0]} to {a[1] if a[1] != '9999' else 'never finished'})"
            for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]


def final_outcomes(trace: list[Seen]) -> dict[str, str]:
    """Each run's last outcome in the host's copy."""
    found: dict[str, str] = {}
    for version in trace:
        if version.copy == HOST:
            found[version.run_id] = version.outcome
    return found


@dataclass(frozen=True)
class Kill:
    moment: str
    victim: str
    worker: bool  # the victim was running the incident's activity
    at: float
    detail: str = ""


@dataclass
class Tally:
    """What a chaos run did, for its summary table."""

    seed: int
    kills: list[Kill] = field(default_factory=list)
    missed: Counter[str] = field(default_factory=Counter)
    ends: Counter[str] = field(default_factory=Counter)
    #: per moment, after each kill of the activity's worker: seconds until a new attempt started on another worker
    #: (None: none was seen between two looks), and until the activity ended there
    takeovers: dict[str, list[tuple[float | None, float]]] = field(default_factory=lambda: defaultdict(list))
    incidents: list[str] = field(default_factory=list)
    temporal_downtime: float | None = None
    restarted_in: int | None = None  # the incident inside whose apply Temporal was restarted
    seconds: float = 0.0

    def table(self) -> str:
        lines = [f"chaos summary (seed {self.seed}, {self.seconds:.0f} s, {len(self.incidents)} incidents, "
                 f"{len(self.kills)} SIGKILLs)", f"{'moment':<28}{'kills':>6}{'of the worker':>15}{'missed':>8}"]
        moments = Counter(k.moment for k in self.kills)
        workers = Counter(k.moment for k in self.kills if k.worker)
        for moment in sorted(set(moments) | set(self.missed)):
            lines.append(f"{moment:<28}{moments[moment]:>6}{workers[moment]:>15}{self.missed[moment]:>8}")
        lines.append("incidents by end: " + ", ".join(f"{end} {n}" for end, n in sorted(self.ends.items())))
        for moment, times in sorted(self.takeovers.items()):
            retried = [r for r, _ in times if r is not None]
            lines.append(f"worker killed {moment} (n={len(times)}): a new attempt elsewhere after "
                         f"{spread(retried)}; done after {spread([d for _, d in times])}")
        if self.temporal_downtime is not None:
            lines.append(f"Temporal restarted mid-apply: its frontend was gone {self.temporal_downtime:.1f} s")
        lines += [f"  {line}" for line in self.incidents]
        return "\n".join(lines)


def spread(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    return f"{min(seconds):.1f}/{statistics.median(seconds):.1f}/{max(seconds):.1f} s (min/median/max)"
