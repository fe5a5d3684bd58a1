"""The chaos test's driver: incidents one after another, each from an alert posted to Alertmanager (which sends it to
every replica), approved on one replica and followed on another, with a random live replica SIGKILLed (and started
again, same state) at each moment the incident reaches; once, the Temporal server is restarted mid-apply. Moments are
seen in the incident's record, the host's journal and the compose file, never guessed from time."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from remediate.serve.models import Alert
from remediate.serve.temporal import shared

from . import chaoscheck, labctl
from .chaoscheck import Kill, Tally
from .chaosctl import Alertmanager, Replica, TemporalServer, stamp, until
from .chaoswatch import Activity, JournalWatch, Seen, View, activity, container_starts, describe, stuck

T = TypeVar("T")
FINAL = frozenset({"denied", "resolved", "rolled_back", "failed", "ignored"})
#: The moments a replica is killed at, in an incident's order.
MOMENTS = ("planning", "pending", "mid-apply between", "mid-apply inside", "waiting for resolved", "rolling back")
ALERTNAME = "RemediateChaos"
#: The mid-apply moments of incidents 1, 2, 3, 4, 5 ...: none (the apply left alone, so that the later moments come:
#: killing the applier rolls the run back), between two steps (then inside one, unless the applier was killed), inside.
ROTATION = ("none", "none", "between", "inside")
#: Incidents a run may take to reach every moment (a moment is missed when its window passes unseen).
MAX_INCIDENTS = 12
#: How long an incident may take from one of its moments to the next (a takeover waits for Temporal's timeouts).
STEP_SECONDS = 300.0


def rules(fixed_timeout: str = "5m", rollback_timeout: str = "20s") -> str:
    """Two rules for the lab's incident playbook on ec2-mx, approval required: one whose incidents the test resolves
    once fixed, one whose alert is left firing, so that its deadline rolls the fix back; no run limit (a run makes
    dozens of incidents on one host within the hour)."""
    def rule(end: str, timeout: str) -> str:
        return (f"  - name: chaos-{end}\n    match: {{alertname: {ALERTNAME}, end: {end}}}\n    playbook: smtp-to-lmtp\n"
                f"    host_label: instance\n    approval: required\n    resolve_timeout: {timeout}\n"
                "    on_unresolved: rollback\n    max_runs_per_hour: 1000\n")
    return "rules:\n" + rule("fixed", fixed_timeout) + rule("rollback", rollback_timeout)


def between(view: View, pids: list[int]) -> tuple[Seen, str] | None:
    """A step of the run done on the host and the next not begun (its journal says planned)."""
    run = view.running(pids)
    if run is None:
        return None
    if view.compose == "transport" and run.state("relay-domains") == "planned":
        return run, "between relay-transport and relay-domains"
    if view.compose == "fixed" and run.state("restart") == "planned":
        return run, "between relay-domains and restart"
    return None


def inside(view: View, pids: list[int]) -> tuple[Seen, str] | None:
    """Inside the restart step: its journal entry says applying (compose down, up, waiting for SMTP)."""
    run = view.running(pids)
    return (run, "inside restart (compose down/up)") if run is not None and run.state("restart") == "applying" else None


@dataclass(frozen=True)
class Scenario:
    seq: int
    end: str  # fixed (resolved by the test once applied) or rollback (left to its deadline)
    apply_moment: str  # none, between (then inside, unless the applier died) or inside
    temporal_restart: bool  # restart Temporal inside the restart step instead of a kill


class Chaos:
    def __init__(self, temporal: TemporalServer, alertmanager: Alertmanager, replicas: list[Replica],
                 watch: JournalWatch, tally: Tally, tag: str, moments: tuple[str, ...] = MOMENTS) -> None:
        self.temporal = temporal
        self.am = alertmanager
        self.replicas = replicas
        self.watch = watch
        self.tally = tally
        self.rng = random.Random(tally.seed)
        self.tag = tag
        self.moments = moments
        self.watcher: Replica | None = None
        self.temporal_restarted = False

    # --- replicas ------------------------------------------------------------------------------------------------

    def up(self, exclude: tuple[Replica, ...] = ()) -> list[Replica]:
        """The replicas answering /healthz (one started again after a kill joins once it does)."""
        for replica in self.replicas:
            if replica.alive and not replica.up:
                try:
                    replica.ready(0)
                except AssertionError:
                    pass  # still starting
        return [r for r in self.replicas if r.up and r not in exclude]

    def some(self, exclude: tuple[Replica, ...] = ()) -> Replica:
        return self.rng.choice(until(lambda: self.up(exclude), 60, "a replica answering /healthz", every=0.1))

    def kill(self, moment: str, worker_pid: int | None = None, detail: str = "") -> Kill | None:
        """SIGKILL a random live replica (the one running the incident's activity, when named, half of the time) and
        start it again with the same state; returns what was done (None: not a moment this run kills at)."""
        if moment not in self.moments:
            return None
        candidates = self.up()
        worker = next((r for r in candidates if r.pid == worker_pid), None)
        victim = worker if worker is not None and self.rng.random() < 0.5 else self.rng.choice(candidates)
        was = victim.pid
        victim.kill()
        done = Kill(moment, victim.name, was == worker_pid, time.time(), detail)
        victim.start()
        self.tally.kills.append(done)
        return done

    def takeover(self, number: int, kill: Kill, kind: str, pid: int) -> None:
        """After killing the worker of the incident's `kind` activity: until another worker has finished it (its run
        continued or undone); the summary gets how long until a new attempt started elsewhere, and until it ended."""
        first = self._activity(number)
        attempt = first.attempt if first is not None and first.type == kind else 0
        retried: list[float] = []

        def finished() -> bool:
            now = self._activity(number)
            if not retried and now is not None and now.type == kind and now.attempt > attempt and now.started \
                    and now.pid != pid:
                retried.append(time.time() - kill.at)
            return now is None or now.type != kind
        try:
            until(finished, STEP_SECONDS, f"another worker to take incident {number}'s {kind} over", every=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}: {kill.victim} (pid {pid}) was SIGKILLed {kill.moment} while running it, and "
                                 f"{STEP_SECONDS:g} s later {stuck(self.temporal.address, number)}") from None
        self.tally.takeovers[kill.moment].append((retried[0] if retried else None, time.time() - kill.at))

    def _activity(self, number: int) -> Activity | None:
        found: list[Activity | None] = []

        def asked() -> bool:
            try:
                found.append(activity(self.temporal.address, number))
            except RuntimeError:  # Temporal did not answer (restarting): ask again
                return False
            return True
        until(asked, 60, f"Temporal to describe incident {number}", every=0.2)
        return found[0]

    # --- the incident, as any replica shows it -------------------------------------------------------------------

    def record(self, number: int) -> dict[str, Any] | None:
        readers = ([self.watcher] if self.watcher is not None and self.watcher.up else []) + self.up()
        for replica in readers:
            status, found = replica.call("GET", f"/incidents/{number}")
            if status == 200:
                return dict(found)
        return None

    def follow(self, number: int, wanted: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The incident's record once wanted(record) holds, or once it is final."""
        def found() -> dict[str, Any] | None:
            record = self.record(number)
            return record if record is not None and (wanted(record) or record["state"] in FINAL) else None
        return self.until(number, found, STEP_SECONDS, f"incident {number} to be {what}", every=0.1)

    def until(self, number: int, ready: Callable[[], T | None], seconds: float, what: str, every: float) -> T:
        """chaosctl.until, and what Temporal says of the incident when it does not come."""
        try:
            return until(ready, seconds, what, every)
        except AssertionError as e:
            raise AssertionError(f"{e}; {stuck(self.temporal.address, number)}") from None

    def listed(self, replica: Replica, labels: dict[str, str]) -> int | None:
        """How many incidents the replica lists for the alert (None: it did not answer)."""
        status, found = replica.call("GET", "/incidents")
        return sum(1 for i in found if i["labels"].get("chaos") == labels["chaos"]) if status == 200 else None

    def number(self, labels: dict[str, str], starts_at: str) -> int:
        """The incident number serve gives the alert: from Alertmanager's fingerprint and its startsAt, as serve reads
        them (docs/serve.md: 48 bits of sha256 over both)."""
        fingerprint = until(lambda: [a["fingerprint"] for a in self.am.alerts(chaos=labels["chaos"])], 30,
                            "Alertmanager to list the alert")[0]
        alert = Alert(status="firing", labels=labels, startsAt=starts_at, fingerprint=fingerprint)  # type: ignore[arg-type]
        return shared.incident_number(fingerprint, alert.starts_at)

    def one_incident(self, labels: dict[str, str], everywhere: bool) -> None:
        """Every replica (answering, or all three) lists exactly one incident for the alert: never two, and one once
        visibility has caught up."""
        replicas = [r.ready() for r in self.replicas] if everywhere else self.up()
        counts: dict[str, int | None] = {}

        def one() -> bool:
            counts.update({r.name: self.listed(r, labels) for r in replicas})
            assert all((n or 0) <= 1 for n in counts.values()), f"alert {labels['chaos']}: listed per replica {counts}"
            return set(counts.values()) == {1}
        try:
            until(one, 30, f"every replica to list one incident for alert {labels['chaos']}", every=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; they list {counts}") from None

    # --- one incident ----------------------------------------------------------------------------------------------

    def incident(self, plan: Scenario) -> None:
        labctl.reset()
        self.watch.forget_host()
        begin = time.time()
        labels = {"alertname": ALERTNAME, "instance": "ec2-mx", "chaos": f"{self.tag}-{plan.seq}", "end": plan.end}
        starts_at = stamp(begin)
        self.am.post(labels, starts_at, stamp(begin + 3600))
        number = self.number(labels, starts_at)
        self.planning(number)
        record = self.follow(number, lambda r: r["state"] == "pending" and bool(r["plan_diff"]), "pending, planned")
        if record["state"] == "pending":
            self.one_incident(labels, everywhere=False)
            self.kill("pending")
            self.approve(number, record["plan_identity"])
            self.mid_apply(number, plan)
        record = self.follow(number, lambda r: r["state"] == "waiting_resolved", "waiting for resolved")
        resolved = False
        if record["state"] == "waiting_resolved":
            self.kill("waiting for resolved")
            if plan.end == "fixed":
                self.am.post(labels, starts_at, stamp(time.time() - 1))
                resolved = True
            else:
                self.rolling_back(number)
        record = self.follow(number, lambda r: False, "final")
        if not resolved:
            self.am.post(labels, starts_at, stamp(time.time() - 1))
        self.check(plan, record, labels, begin)

    def planning(self, number: int) -> None:
        """While a worker makes the incident's plan (Temporal shows it started): kill (the planner, half of the time)."""
        def seen() -> Activity | str | None:
            try:
                found = describe(self.temporal.address, number)
            except RuntimeError:  # Temporal did not answer: ask again
                return None
            if found is None:  # the alert is on its way
                return None
            if found.activity is not None and found.activity.type == shared.PLAN and found.activity.started:
                return found.activity
            summary = found.summary
            return "missed" if summary.get("plan_diff") is not None or summary.get("state") in FINAL else None
        found = self.until(number, seen, 60, f"incident {number} to open and plan", every=0.01)
        if not isinstance(found, Activity):
            self.tally.missed["planning"] += 1
            return
        pid = found.pid
        done = self.kill("planning", pid)
        if done is not None and done.worker and pid is not None:
            self.takeover(number, done, shared.PLAN, pid)

    def approve(self, number: int, identity: str) -> None:
        """Approve the plan seen, on one replica; follow the incident on another from now on."""
        approver = self.some()
        self.watcher = self.some(exclude=(approver,))
        status, done = approver.call("POST", f"/incidents/{number}/approve",
                                     {"by": f"chaos@{approver.name}", "plan_identity": identity})
        assert status == 200 and done["state"] == "running", (approver.name, status, done)

    def mid_apply(self, number: int, plan: Scenario) -> None:
        """Between two steps and inside one, as the host's journal and compose file show them: kill (the applier,
        half of the time); or, once, restart Temporal inside the restart step."""
        pids = [r.pid for r in self.replicas if r.alive]  # one started again after the last kill may apply too
        if plan.temporal_restart:
            if self.watch.wait_for(lambda view: inside(view, pids), STEP_SECONDS / 10) is None:
                self.tally.missed["temporal restart"] += 1
                return
            self.tally.temporal_downtime = self.temporal.restart()
            self.temporal_restarted = True
            self.tally.restarted_in = plan.seq
            return
        for moment in {"none": [], "between": ["between", "inside"], "inside": ["inside"]}[plan.apply_moment]:
            test = between if moment == "between" else inside
            found = self.watch.wait_for(lambda view, test=test: test(view, pids), STEP_SECONDS / 10)  # type: ignore[misc]
            if found is None:
                self.tally.missed[f"mid-apply {moment}"] += 1
                continue
            run, detail = found
            done = self.kill(f"mid-apply {moment}", run.pid, detail)
            if done is not None and done.worker:
                self.takeover(number, done, shared.APPLY, run.pid)
                return

    def rolling_back(self, number: int) -> None:
        record = self.follow(number, lambda r: any(h["what"] == "rolling back" for h in r["history"]), "rolling back")
        if record["state"] in FINAL:
            self.tally.missed["rolling back"] += 1
            return
        found = self._activity(number)
        pid = found.pid if found is not None and found.type == shared.ROLLBACK and found.started else None
        done = self.kill("rolling back", pid)
        if done is not None and done.worker and pid is not None:
            self.takeover(number, done, shared.ROLLBACK, pid)

    # --- verdicts ---------------------------------------------------------------------------------------------------

    def check(self, plan: Scenario, record: dict[str, Any], labels: dict[str, str], begin: float) -> None:
        end = time.time()
        trace = self.watch.since(begin)
        problems = chaoscheck.twice_started(trace) + chaoscheck.twice_applied(trace) + chaoscheck.overlapping(trace)
        outcomes = chaoscheck.final_outcomes(trace)
        restarts = container_starts(begin, end)
        compose = labctl.COMPOSE_FILE.read_bytes()
        state, reason = record["state"], record.get("reason") or ""
        if state == "resolved":
            problems += self.fixed(compose, outcomes, restarts)
        elif state == "rolled_back" or (state == "failed" and "was rolled back" in reason):
            if compose != labctl.pristine_compose():
                problems.append("rolled back, but the compose file differs from the broken original")
            if not outcomes or set(outcomes.values()) - {"rolled-back", "refused"}:
                problems.append(f"rolled back, but the host's journals say {outcomes}")
            if restarts > 2:
                problems.append(f"Postfix was started {restarts} times (an apply's restart and a rollback's at most)")
        else:
            problems.append(f"ended {state}: {reason}")
        self.one_incident(labels, everywhere=True)
        whats = [h["what"] for h in record["history"]]
        if whats.count("received") != 1 or whats.count("repeat") < 2:  # Alertmanager sent it to all three
            problems.append(f"the alert was received {whats.count('received')} time(s) and repeated "
                            f"{whats.count('repeat')} time(s): each replica's delivery but the first is a repeat")
        self.tally.ends[state] += 1
        kills = [k for k in self.tally.kills if k.at >= begin]
        restarted = ", Temporal restarted inside the restart step" if self.tally.restarted_in == plan.seq else ""
        self.tally.incidents.append(f"#{plan.seq:<3} {plan.end:<8} -> {state:<12} {end - begin:3.0f} s, kills: "
                                    + ", ".join(f"{k.moment} ({k.victim}{', its worker' if k.worker else ''})"
                                                for k in kills) + restarted)
        history = "\n".join(f"    {h['what']}: {h['detail']}" for h in record["history"])
        assert not problems, f"incident {plan} ({record['id']}):\n" + "\n".join(problems) + f"\n  history:\n{history}"

    def fixed(self, compose: bytes, outcomes: dict[str, str], restarts: int) -> list[str]:
        problems = []
        if compose != labctl.fixed_compose():
            problems.append("resolved, but the compose file is not the fixed one")
        if not outcomes or set(outcomes.values()) != {"applied"}:
            problems.append(f"resolved, but the host's journals say {outcomes}")
        if restarts != 1:
            problems.append(f"resolved after one apply, but Postfix was started {restarts} times")
        said = labctl.status_of(labctl.send_mail(), 60)
        if "Saved" not in said:
            problems.append(f"resolved, but a test mail was not saved: {said}")
        return problems

    def run(self, kills: int) -> None:
        """Incidents until `kills` SIGKILLs are done, at every moment chosen, and Temporal restarted once (at most
        MAX_INCIDENTS: the test then fails naming what was never reached)."""
        seq = 0
        while len(self.tally.kills) < kills or set(self.moments) - {k.moment for k in self.tally.kills} \
                or not self.temporal_restarted:
            seq += 1
            assert seq <= max(MAX_INCIDENTS, kills), f"{seq - 1} incidents and still short:\n{self.tally.table()}"
            self.incident(Scenario(seq, "fixed" if seq % 2 else "rollback", ROTATION[(seq - 1) % len(ROTATION)],
                                   not self.temporal_restarted))
