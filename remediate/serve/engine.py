"""What happens to an incident, from the alert that opens it to the `resolved` that closes it.

    firing alert ─ no rule / unknown host / paused / rate-limited ─> ignored
        │ rule matched
        ├─ approval: required ─> pending (plan made, diff stored) ─ deny ─> denied
        │                           │ approve
        └─ approval: auto ──────> running: apply exactly the plan ─ host changed since ─> pending, fresh plan
                                    │ applied and verified              ─ a step failed ─> rolled_back
                                    v
                              waiting_resolved ─ Alertmanager sends resolved ─> resolved
                                    │ still firing at resolve_timeout
                                    └─> rolled back (on_unresolved: rollback) or kept (keep) ─> failed

Every decision is committed to the store before it is acted on; jobs for one host run one at a time.

The pause stops every change serve would make, whenever the decision to make it was taken: an apply (approved,
automatic, or resumed after a restart) asks once more just before its first change and, paused, goes back to
pending with its plan; a rollback at the deadline waits for the resume (see docs/serve.md)."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from remediate.engine import journal as journal_mod
from remediate.errors import RemediateError
from remediate.inputs import inventory as inventory_mod
from remediate.serve.models import Alert, Webhook
from remediate.serve.notify import Notifier
from remediate.serve.rules import Rule, Rules
from remediate.serve.runs import SessionRuns
from remediate.serve.store import Incident, Store

LOG = logging.getLogger(__name__)


#: What each kind of job does, as serve names it when it stops with jobs in flight.
JOBS: Final = {"_plan": "planning", "_run": "applying", "_unresolved": "past its deadline (rollback, or keep)"}


class NotFound(Exception):
    """No such incident."""


class Refused(Exception):
    """The action does not apply to the incident in its state."""


@dataclass
class Metrics:
    """Hooks for /metrics; the app fills them in (prometheus-client), tests may leave them."""

    run: Callable[[str, str, str, float], None] = lambda playbook, mode, outcome, seconds: None


def host_of(value: str) -> str:
    """A label's host with its port stripped: 'mx1:9154' -> 'mx1', '[2001:db8::1]:9100' -> '2001:db8::1'."""
    value = value.strip()
    if value.startswith("["):
        return value[1:value.index("]")] if "]" in value else value
    try:
        ipaddress.ip_address(value)
        return value  # a bare IPv6 address keeps its colons
    except ValueError:
        pass
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Engine:
    def __init__(self, store: Store, rules: Rules, inventory: Path, runs: SessionRuns, notifier: Notifier, *,
                 clock: Callable[[], float] = time.time, host_runs_per_hour: int = 6, workers: int = 4,
                 tick: float = 1.0, metrics: Metrics | None = None) -> None:
        self.store = store
        self.rules = rules
        self.inventory = inventory
        self.runs = runs
        self.notifier = notifier
        self.clock = clock
        self.host_runs_per_hour = host_runs_per_hour
        self.metrics = metrics or Metrics()
        self.tick_seconds = tick
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="incident")
        self._host_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._receiving = threading.Lock()
        self._futures: list[Future[Any]] = []
        self._jobs: dict[Future[Any], tuple[int, str]] = {}  # each job's incident and what it does, until it is done
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None
        self._held: set[int] = set()  # incidents whose rollback the pause holds, said once each
        #: serve's own lines that concern no one incident (pause, resume): serve prints them to stderr.
        self.announce: Callable[[str], None] = lambda line: None

    # --- life ----------------------------------------------------------------------------------------------------

    def start(self) -> list[str]:
        """Take up what a previous serve left in flight, then watch the deadlines. Returns what recovery did."""
        done = self.recover()
        self._ticker = threading.Thread(target=self._tick_loop, name="deadlines", daemon=True)
        self._ticker.start()
        return done

    def stop(self) -> None:
        """No more deadline checks; every job already handed to the workers runs to its end (an apply is never
        abandoned half-way)."""
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=False)

    def in_flight(self) -> list[str]:
        """The jobs not finished yet, one line each: the incident, what the job does, its state and host."""
        with self._guard:
            jobs = [(f, *job) for f, job in self._jobs.items() if not f.done()]
        lines = []
        for future, incident_id, what in sorted(jobs, key=lambda j: j[1]):
            try:
                incident = self.get(incident_id)
            except NotFound:
                lines.append(f"incident {incident_id}: {what}")
                continue
            run = f", run {incident.run_id}" if incident.run_id else ""
            lines.append(f"incident {incident_id}: {what} on {incident.host} ({'started' if future.running() else 'queued'}"
                         f"; {incident.state}{run})")
        return lines

    def idle(self, timeout: float = 300.0) -> None:
        """Wait until every queued job has finished (tests and shutdown)."""
        end = time.monotonic() + timeout
        while True:
            with self._guard:
                pending = [f for f in self._futures if not f.done()]
                self._futures = pending
            if not pending:
                return
            pending[0].result(timeout=max(0.0, end - time.monotonic()))

    @property
    def paused(self) -> bool:
        return self.store.setting("paused") == "1"

    def pause(self, by: str, reason: str = "") -> str:
        """The kill switch on; returns who paused it, when and why, as incidents ignored meanwhile name it."""
        when = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.clock()))
        self.store.set_setting("paused", "1")
        self.store.set_setting("paused_by", f"{by} at {when}{': ' + reason if reason else ''}")
        self.announce(f"serve: paused by {by}{': ' + reason if reason else ''}; no host is changed until resumed")
        return str(self.store.setting("paused_by"))

    def resume(self, by: str) -> None:
        self.store.set_setting("paused", "0")
        self.store.set_setting("paused_by", "")
        self._held.clear()
        self.announce(f"serve: resumed by {by}")

    def _running(self) -> bool:
        """What every apply and rollback asks last, just before its first change."""
        return not self.paused

    # --- alerts --------------------------------------------------------------------------------------------------

    def receive(self, payload: Webhook) -> list[dict[str, Any]]:
        """Each alert of a (grouped) payload on its own; what became of each."""
        with self._receiving:  # one alert at a time: the rate limits count what the previous one decided
            return [self._alert(alert, payload.receiver) for alert in payload.alerts]

    def _alert(self, alert: Alert, receiver: str) -> dict[str, Any]:
        key = {"fingerprint": alert.fingerprint, "starts_at": alert.starts_at}
        if alert.status == "resolved":
            found = self.store.find(**key)
            if found is None:
                found, _ = self.store.create(**key, alertname=alert.labels.get("alertname"), labels=alert.labels,
                                             host=None, rule=None, playbook=None, state="ignored",
                                             reason="resolved before serve saw it firing", what="received",
                                             detail=f"resolved, from {receiver or 'Alertmanager'}; never seen firing")
                return {"id": found.id, "state": found.state, "new": True}
            self._resolved(found)
            return {"id": found.id, "state": self.store.get(found.id).state, "new": False}
        state, reason, rule, host = self._route(alert)
        detail = f"firing, from {receiver or 'Alertmanager'}"
        incident, new = self.store.create(**key, alertname=alert.labels.get("alertname"), labels=alert.labels,
                                          host=host, rule=rule.name if rule else None,
                                          playbook=rule.playbook if rule else None, state=state, reason=reason,
                                          what="received", detail=detail + (f"; ignored: {reason}" if reason else ""))
        if not new:
            self.store.log(incident.id, "repeat", f"{detail} again (same fingerprint and startsAt): attached, "
                                                  "nothing run")
            return {"id": incident.id, "state": incident.state, "new": False}
        if rule is not None and host is not None and state != "ignored":
            self.store.log(incident.id, "matched", f"rule {rule.name!r} ({rule.where}): playbook {Path(rule.playbook).stem} "
                                                   f"on {host}, approval {rule.approval}")
            self._submit(host, self._plan if state == "pending" else self._run, incident.id)
        return {"id": incident.id, "state": incident.state, "new": True}

    def _route(self, alert: Alert) -> tuple[str, str | None, Rule | None, str | None]:
        """(state, reason, rule, host) for a new firing."""
        rule = self.rules.route(alert.labels)
        if rule is None:
            return "ignored", "no rule matches its labels", None, None
        value = alert.labels.get(rule.host_label)
        if not value:
            return "ignored", f"rule {rule.name!r}: the alert has no {rule.host_label!r} label", rule, None
        wanted = host_of(value)
        try:
            inventory = inventory_mod.load(self.inventory)
        except RemediateError as e:
            return "ignored", f"the inventory cannot be read: {e.message}", rule, None
        host = wanted if wanted in inventory.hosts else None
        if host is None:
            by_address = [h.name for h in inventory.hosts.values() if h.address == wanted]
            host = by_address[0] if len(by_address) == 1 else None
        if host is None:
            return "ignored", f"host {wanted!r} (label {rule.host_label}={value!r}) is not in {self.inventory}", rule, None
        if self.paused:
            return "ignored", f"serve is paused ({self.store.setting('paused_by')}); nothing is run", rule, host
        hour_ago = self.clock() - 3600
        ran = self.store.runs_since(hour_ago, rule=rule.name, host=host)
        if ran >= rule.max_runs_per_hour:
            return "ignored", (f"rate-limited: rule {rule.name!r} already has {ran} incident(s) on {host} in the last "
                               f"hour (max_runs_per_hour: {rule.max_runs_per_hour})"), rule, host
        ran = self.store.runs_since(hour_ago, host=host)
        if ran >= self.host_runs_per_hour:
            return "ignored", (f"rate-limited: {host} already has {ran} incident(s) in the last hour (serve "
                               f"--host-runs-per-hour {self.host_runs_per_hour})"), rule, host
        return ("pending" if rule.approval == "required" else "running"), None, rule, host

    def _resolved(self, incident: Incident) -> None:
        now = self.clock()
        if incident.state == "waiting_resolved":
            done = self.store.transition(incident.id, ["waiting_resolved"], "resolved", "resolved",
                                         "Alertmanager sent resolved: the fix worked", alert_resolved=now, reason=None)
            if done is not None:
                self._notify(done)
        elif incident.state == "running":
            self.store.update(incident.id, "alert resolved", "Alertmanager sent resolved while the run was in flight; "
                              "it counts once the run has applied and verified", alert_resolved=now)
        elif incident.state == "pending":
            done = self.store.transition(incident.id, ["pending"], "ignored", "alert resolved",
                                         "the alert resolved before anyone approved the plan; nothing was run",
                                         reason="the alert resolved on its own before approval; nothing was run",
                                         alert_resolved=now)
            if done is not None:
                self._notify(done)
        else:
            self.store.update(incident.id, "alert resolved", f"Alertmanager sent resolved (incident is {incident.state})",
                              alert_resolved=now)

    # --- people --------------------------------------------------------------------------------------------------

    def get(self, incident_id: int) -> Incident:
        try:
            return self.store.get(incident_id)
        except KeyError:
            raise NotFound(f"no incident {incident_id}") from None

    def approve(self, incident_id: int, by: str) -> Incident:
        incident = self.get(incident_id)
        if incident.state != "pending":
            raise Refused(f"incident {incident_id} is {incident.state}, not pending: nothing to approve")
        if incident.plan is None:
            raise Refused(f"incident {incident_id}: its plan is not ready yet; approve once it shows a diff")
        if self.paused:
            raise Refused(f"serve is paused ({self.store.setting('paused_by')}): resume it before approving")
        done = self.store.transition(incident_id, ["pending"], "running", "approved", f"by {by}", approved_by=by,
                                     reason=None)
        if done is None:
            raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        self._submit(str(done.host), self._run, incident_id)
        return done

    def deny(self, incident_id: int, by: str, reason: str) -> Incident:
        incident = self.get(incident_id)
        if incident.state != "pending":
            raise Refused(f"incident {incident_id} is {incident.state}, not pending: nothing to deny")
        done = self.store.transition(incident_id, ["pending"], "denied", "denied", f"by {by}: {reason}",
                                     reason=f"denied by {by}: {reason}")
        if done is None:
            raise Refused(f"incident {incident_id} changed state meanwhile; look again")
        self._notify(done)
        return done

    # --- jobs ----------------------------------------------------------------------------------------------------

    def _submit(self, host: str, job: Callable[[int], object], incident_id: int) -> None:
        future = self._pool.submit(self._serially, host, job, incident_id)
        with self._guard:
            self._futures.append(future)
            self._jobs[future] = (incident_id, JOBS.get(getattr(job, "__name__", ""), "a job"))
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[Any]) -> None:
        with self._guard:
            self._jobs.pop(future, None)

    def _serially(self, host: str, job: Callable[[int], object], incident_id: int) -> None:
        with self._guard:
            lock = self._host_locks.setdefault(host, threading.Lock())
        with lock:
            try:
                job(incident_id)
            except Exception as e:  # noqa: BLE001 - a bug must not leave an incident running forever
                self.store.transition(incident_id, ["pending", "running", "waiting_resolved"], "failed", "error",
                                      f"{type(e).__name__}: {e}", reason=f"internal error: {e}")

    def _emit_for(self, incident_id: int) -> Callable[[dict[str, Any]], None]:
        announced: dict[str, Any] = {}

        def emit(event: dict[str, Any]) -> None:
            name = event.get("event")
            if name == "run_started" and event.get("mode") == "apply":
                announced["run_id"] = event.get("run_id")  # the checks before an apply: no journal yet
            elif name == "step_started" and announced.get("run_id"):
                # the first step: the run's journal exists from here on, so a restart must find this id
                self.store.update(incident_id, "run started", f"run {announced['run_id']}",
                                  run_id=announced.pop("run_id"))
            elif name == "run_started" and event.get("mode") == "rollback":
                self.store.log(incident_id, "rollback started", f"run {event.get('run_id')}")
            elif name in ("step_applied", "step_verified", "step_failed", "step_rolled_back"):
                why = event.get("error") or event.get("message") or ""
                self.store.log(incident_id, name.replace("_", " "), f"{event.get('step')}{': ' + why if why else ''}")
        return emit

    def _plan(self, incident_id: int) -> bool:
        """Make and store the plan; True when it has changes to approve or apply."""
        incident = self.store.get(incident_id)
        rule = self.rules.named(str(incident.rule))
        if rule is None:
            self._finish(incident_id, "failed", f"rule {incident.rule!r} is no longer in {self.rules.path}")
            return False
        started = time.monotonic()
        planned = self.runs.plan(rule, str(incident.host), self._emit_for(incident_id))
        self.metrics.run(rule.playbook, "plan", planned.status, time.monotonic() - started)
        if planned.status == "error":
            self._finish(incident_id, "failed", f"the plan failed: {planned.message}")
            return False
        if planned.status == "nothing" and planned.fixed_by:  # another incident's run (or a person's) fixed it
            self.store.transition(incident_id, ["pending", "running"], "waiting_resolved", "already fixed",
                                  f"nothing to do: run {planned.fixed_by} already fixed {incident.host}; waiting up to "
                                  f"{int(rule.resolve_timeout)} s for resolved (this incident ran nothing, so it rolls "
                                  f"nothing back)", deadline=self.clock() + rule.resolve_timeout, plan=None,
                                  plan_diff=None)
            return False
        if planned.status == "nothing":
            self._finish(incident_id, "failed", "nothing to do: the host is already as the playbook leaves it, so the "
                                                "alert has another cause; escalate")
            return False
        self.store.update(incident_id, "planned", planned.message.replace("the host", str(incident.host)),
                          plan_diff=planned.diff, plan=planned.plan)
        return True

    def _run(self, incident_id: int) -> None:
        incident = self.store.get(incident_id)
        if incident.state != "running":
            return
        if incident.plan is None and incident.approved_by is not None:
            # approved on a plan an older serve kept without the playbook's text: never applied, planned again
            self.store.transition(incident_id, ["running"], "pending", "planning again",
                                  "the approved plan was stored by an older serve without the playbook's text and "
                                  "variables; a fresh plan waits for approval", approved_by=None, plan_diff=None)
            self._plan(incident_id)
            return
        if incident.plan is None:  # approval: auto (or a recovered run that never planned)
            if not self._plan(incident_id):
                return
            incident = self.store.get(incident_id)
        rule = self.rules.named(str(incident.rule))
        if rule is None:
            self._finish(incident_id, "failed", f"rule {incident.rule!r} is no longer in {self.rules.path}")
            return
        if self.paused:
            self._hold(incident_id, "before the apply began")
            return
        self.store.update(incident_id, "applying", f"exactly the plan of {time.strftime('%H:%M:%S', time.gmtime(incident.updated))} "
                                                   f"on {incident.host}", started=self.clock())
        began = time.monotonic()
        applied = self.runs.apply(rule, dict(incident.plan or {}), self._emit_for(incident_id), self._running)
        self.metrics.run(rule.playbook, "apply", applied.status, time.monotonic() - began)
        if applied.status == "applied":
            now = self.clock()
            current = self.store.get(incident_id)
            if current.alert_resolved is not None and current.started is not None and current.alert_resolved >= current.started:
                done = self.store.transition(incident_id, ["running"], "resolved", "resolved",
                                             f"run {applied.run_id} applied and verified, and the alert resolved",
                                             run_id=applied.run_id, reason=None)
            else:
                done = self.store.transition(incident_id, ["running"], "waiting_resolved", "applied",
                                             f"run {applied.run_id}: {applied.message}; waiting up to "
                                             f"{int(rule.resolve_timeout)} s for Alertmanager's resolved",
                                             run_id=applied.run_id, deadline=now + rule.resolve_timeout)
            if done is not None and done.state == "resolved":
                self._notify(done)
        elif applied.status == "stale":
            self.store.transition(incident_id, ["running"], "pending", "changed underfoot",
                                  f"{applied.message}; a fresh plan waits for approval", plan=None, plan_diff=None,
                                  approved_by=None, run_id=None)
            self._plan(incident_id)
        elif applied.status == "held":
            self._hold(incident_id, applied.message)
        elif applied.status == "rolled_back":
            self._finish(incident_id, "rolled_back", applied.message, run_id=applied.run_id)
        else:
            prefix = "ROLLBACK INCOMPLETE: " if applied.status == "incomplete" else ""
            self._finish(incident_id, "failed", prefix + applied.message, run_id=applied.run_id)

    def _hold(self, incident_id: int, when: str) -> None:
        """Paused: an accepted incident is not applied. Back to pending with its plan, for a person once resumed."""
        by = self.store.setting("paused_by")
        self.store.transition(incident_id, ["running"], "pending", "paused",
                              f"serve is paused ({by}); not applied ({when}): nothing was changed. The plan waits "
                              "for approval once serve is resumed",
                              reason=f"held: serve was paused ({by}) before the apply; approve it again after "
                                     "POST /resume", approved_by=None)

    def _hold_rollback(self, incident: Incident) -> None:
        """Paused at the deadline: the rollback waits for the resume. Said once per incident."""
        if incident.id in self._held:
            return
        self._held.add(incident.id)
        self.store.log(incident.id, "rollback held",
                       f"the deadline passed while serve is paused ({self.store.setting('paused_by')}): run "
                       f"{incident.run_id} is rolled back once serve is resumed, unless the alert resolves first (or "
                       f"now by hand: remediate rollback --host {incident.host} --run {incident.run_id})")

    def _finish(self, incident_id: int, state: str, reason: str, **columns: Any) -> None:
        done = self.store.transition(incident_id, ["pending", "running", "waiting_resolved"], state, state.replace("_", " "),
                                     reason, reason=reason, **columns)
        if done is not None:
            self._notify(done)

    def _notify(self, incident: Incident) -> None:
        self.notifier.send(incident.id, {
            "incident": incident.id, "state": incident.state, "outcome": incident.state, "reason": incident.reason,
            "run_id": incident.run_id, "host": incident.host, "alertname": incident.alertname,
            "fingerprint": incident.fingerprint, "starts_at": incident.starts_at, "rule": incident.rule,
            "playbook": Path(incident.playbook).stem if incident.playbook else None})

    # --- deadlines -----------------------------------------------------------------------------------------------

    def _tick_loop(self) -> None:
        while not self._stopping.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception:
                LOG.exception("serve: checking the deadlines failed; trying again in %s s", self.tick_seconds)

    def tick(self) -> None:
        """Incidents still firing at their deadline: rolled back (or kept), and failed."""
        now = self.clock()
        for incident in self.store.all(["waiting_resolved"]):
            if incident.deadline is not None and incident.deadline <= now:
                if self.paused and self._rolls_back(incident):
                    self._hold_rollback(incident)
                    continue
                self._submit(str(incident.host), self._unresolved, incident.id)

    def _rolls_back(self, incident: Incident) -> bool:
        """At its deadline, this incident's fix is rolled back (it ran one, and its rule does not keep it)."""
        rule = self.rules.named(str(incident.rule))
        return incident.run_id is not None and not (rule is not None and rule.on_unresolved == "keep")

    def _unresolved(self, incident_id: int) -> None:
        incident = self.store.get(incident_id)
        if incident.state != "waiting_resolved" or incident.deadline is None or incident.deadline > self.clock():
            return
        rule = self.rules.named(str(incident.rule))
        waited = "the alert was still firing at the deadline"
        if incident.run_id is None:
            self._finish(incident_id, "failed", f"{waited}; this incident ran nothing (the host was already fixed), "
                                                "so nothing was rolled back: escalate")
            return
        if rule is not None and rule.on_unresolved == "keep":
            self._finish(incident_id, "failed", f"{waited}; the fix was kept (on_unresolved: keep): escalate")
            return
        if self.paused:
            self._hold_rollback(incident)
            return
        if self.store.transition(incident_id, ["waiting_resolved"], "running", "rolling back",
                                 f"{waited}; rolling back run {incident.run_id}") is None:
            return
        began = time.monotonic()
        undone = self.runs.rollback(str(incident.host), str(incident.run_id), self._emit_for(incident_id),
                                    self._running)
        if undone.status == "held":
            self.store.transition(incident_id, ["running"], "waiting_resolved", "paused", undone.message)
            self._hold_rollback(self.store.get(incident_id))
            return
        ok, message = undone.status == "done", undone.message
        self.metrics.run(incident.playbook or "", "rollback", "ok" if ok else "failed", time.monotonic() - began)
        if ok:
            self._finish(incident_id, "failed", f"{waited}; run {incident.run_id} was rolled back: {message}")
        else:
            self._finish(incident_id, "failed", f"{waited}; ROLLBACK FAILED for run {incident.run_id}: {message}")

    # --- restart -------------------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """After a restart (a SIGKILL included): nothing runs twice. A run the journal shows finished takes its state
        from the journal; one that never began is resumed; one cut off mid-way is reported, not guessed at."""
        said = []
        for incident in self.store.all(["pending", "running"]):
            if incident.state == "pending":
                if incident.plan is None:
                    self.store.log(incident.id, "resumed", "serve restarted before the plan was made (or an older "
                                                           "serve kept it without the playbook's text); planning again")
                    self._submit(str(incident.host), self._plan, incident.id)
                    said.append(f"incident {incident.id}: planning again")
                continue
            record = self._record(incident)
            if record is None and self.paused:
                self._hold(incident.id, "serve restarted paused before the run began")
                if incident.plan is None:
                    self._submit(str(incident.host), self._plan, incident.id)
                said.append(f"incident {incident.id}: not started (paused): pending")
                continue
            if record is None:
                self.store.log(incident.id, "resumed", "serve restarted before the run began (the host's journal has "
                                                       "no run for it); starting it now")
                self._submit(str(incident.host), self._run, incident.id)
                said.append(f"incident {incident.id}: run resumed")
                continue
            outcome = journal_mod.live_outcome(record)
            run_id = record["run_id"]
            rule = self.rules.named(str(incident.rule))
            if outcome == "applied" and rule is not None:
                self.store.transition(incident.id, ["running"], "waiting_resolved", "recovered",
                                      f"serve restarted; the journal says run {run_id} applied: waiting for resolved",
                                      run_id=run_id, deadline=self.clock() + rule.resolve_timeout)
            elif outcome == "rolled-back":
                self._finish(incident.id, "rolled_back", f"serve restarted; the journal says run {run_id} was rolled back",
                             run_id=run_id)
            elif outcome == "running":
                self.store.log(incident.id, "in flight", f"run {run_id} is still running in another process")
                continue
            else:
                self._finish(incident.id, "failed", f"serve was stopped while run {run_id} was in flight; its journal "
                             f"says {outcome}. Nothing was run again: see `remediate runs show {run_id}`, and "
                             f"`remediate rollback --host {incident.host} --run {run_id}` to undo it", run_id=run_id)
            said.append(f"incident {incident.id}: run {run_id} {outcome}")
        return said

    def _record(self, incident: Incident) -> dict[str, Any] | None:
        """The journal record of this incident's apply: by run id, else the first apply of its playbook on its host
        since the run began (the id is stored as the run starts, a SIGKILL may come first)."""
        records = journal_mod.history(incident.host)
        if incident.run_id:
            return next((r for r in records if r.get("run_id") == incident.run_id), None)
        if incident.started is None:
            return None
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(incident.started - 1))
        books = {str(Path(str(incident.playbook)).resolve())}
        if incident.plan is not None:  # the apply read the saved text, from a copy when the file had changed
            books.add(str(Path(self.runs.playbook(incident.plan)).resolve()))
        later = [r for r in records if str(r.get("started") or "") >= since
                 and str(Path(str(r.get("playbook_path") or "")).resolve()) in books]
        return later[-1] if later else None
