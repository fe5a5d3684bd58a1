"""Alerts in: each alert of a payload routed on its own to a rule and an inventory host, or ignored with the reason
(no rule, unknown host, paused, rate-limited); a repeat attached to its incident; a `resolved` closing one."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remediate.errors import RemediateError
from remediate.inputs import inventory as inventory_mod
from remediate.serve.jobs import APPLYING, PLANNING
from remediate.serve.models import Alert, State, Webhook
from remediate.serve.rules import Rule
from remediate.serve.store import Incident

if TYPE_CHECKING:
    from remediate.serve.engine import Engine

Route = tuple[State, str | None, Rule | None, str | None]


def host_of(value: str) -> str:
    """A label's host with its port stripped: 'mx1:9154' -> 'mx1', '[2001:db8::1]:9100' -> '2001:db8::1'."""
    value = value.strip()
    if value.startswith("["):
        return value[1:value.index("]")] if "]" in value else value
    if _is_address(value):
        return value  # a bare IPv6 address keeps its colons
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@dataclass
class _Ticket:
    """A payload waiting to be recorded, then what became of its alerts (or the error that stopped it)."""

    payload: Webhook
    answers: list[dict[str, Any]] | None = None
    error: Exception | None = None

    @property
    def sender(self) -> str:
        return self.payload.receiver or "Alertmanager"


class Intake:
    #: The inventory as last read, and its file's stat when read: read again only once the file has changed. None
    #: here too, for a subclass that does not call __init__ (serve on Temporal's Router).
    _inventory: tuple[tuple[int, int, int, int], inventory_mod.Inventory] | None = None

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self._receiving = threading.Lock()
        self._inventory = None
        #: Payloads received and not yet recorded: the next to hold _receiving records them all in one transaction.
        self._waiting: list[_Ticket] = []
        self._guard = threading.Lock()
        try:  # parsed now, at serve's start, not by a storm's first alert (as each later edit is: by the next alert)
            self._read_inventory(engine.inventory)
        except RemediateError:
            pass  # each alert that needs it says why it cannot be read

    def receive(self, payload: Webhook) -> list[dict[str, Any]]:
        """Each alert of a (grouped) payload on its own, in order; what became of each. The firing ones (new and
        repeats) are committed before the answer, and before their plans and runs start: in one transaction with
        those of every payload that arrived meanwhile (one fsync for them all); each resolved one after them, on its
        own (its end may ask Alertmanager, or tell chat)."""
        self.engine.jobs.arriving(len(payload.alerts))  # in a storm, the plans wait while alerts come in
        ticket = _Ticket(payload)
        with self._guard:
            self._waiting.append(ticket)
        with self._receiving:  # one alert at a time: the rate limits count what the previous one decided
            if ticket.answers is None and ticket.error is None:  # not taken by the payload before it: take them all
                with self._guard:
                    taken, self._waiting = self._waiting, []
                self._take(taken)
        if ticket.error is not None:
            raise ticket.error
        assert ticket.answers is not None
        return ticket.answers

    def _take(self, tickets: list[_Ticket]) -> None:
        """Every waiting payload, together; should that fail (and roll back whole), each again in its own
        transaction, so one payload's error is its alone."""
        try:
            try:
                self._record(tickets)
            except Exception as e:  # noqa: BLE001 - raised again in the thread of the payload it concerns
                if len(tickets) == 1:
                    tickets[0].error = e
                    return
                for ticket in tickets:
                    try:
                        self._record([ticket])
                    except Exception as e:  # noqa: BLE001 - raised again in its payload's thread
                        ticket.error = e
        finally:
            for ticket in tickets:  # a BaseException half-way: each waiting sender is answered
                if ticket.answers is None and ticket.error is None:
                    ticket.error = RuntimeError("serve stopped while recording this payload")

    def _record(self, tickets: list[_Ticket]) -> None:
        jobs: list[tuple[str, int, str, Callable[[int], object]]] = []
        with self.store.batch():
            answers = [{i: self._firing(alert, f"firing, from {t.sender}", jobs)
                        for i, alert in enumerate(t.payload.alerts) if alert.status != "resolved"} for t in tickets]
        for job in jobs:  # committed: now acted on, once the alerts stop coming in
            self.engine.jobs.submit(*job, yielding=True)
        for ticket, said in zip(tickets, answers):
            try:
                for i, alert in enumerate(ticket.payload.alerts):
                    if i not in said:
                        said[i] = self._resolved_alert(alert, ticket.sender)
            except Exception as e:  # noqa: BLE001 - raised again in its payload's thread
                ticket.error = e
                continue
            ticket.answers = [said[i] for i in range(len(ticket.payload.alerts))]

    def _resolved_alert(self, alert: Alert, sender: str) -> dict[str, Any]:
        key = {"fingerprint": alert.fingerprint, "starts_at": alert.starts_at}
        found = self.store.find(**key)
        if found is None:
            found, _ = self.store.create(**key, alertname=alert.labels.get("alertname"), labels=alert.labels,
                                         host=None, rule=None, playbook=None, state=State.IGNORED,
                                         reason="resolved before serve saw it firing", what="received",
                                         detail=f"resolved, from {sender}; never seen firing")
            return {"id": found.id, "state": found.state, "new": True}
        self._resolved(found)
        return {"id": found.id, "state": self.store.get(found.id).state, "new": False}

    def _firing(self, alert: Alert, detail: str, jobs: list[tuple[str, int, str, Callable[[int], object]]]
                ) -> dict[str, Any]:
        """A firing recorded (in the caller's batch); the job it needs, if any, added to `jobs` for after the
        commit."""
        key = {"fingerprint": alert.fingerprint, "starts_at": alert.starts_at}
        known = self.store.known(**key)  # a repeat is attached before anything is routed: a storm's duplicates
        if known is not None:            # cost a lookup, not the inventory read and the rate limits' counts
            return self._repeat(*known, detail)
        state, reason, rule, host = self._route(alert)
        incident, new = self.store.create(**key, alertname=alert.labels.get("alertname"), labels=alert.labels,
                                          host=host, rule=rule.name if rule else None,
                                          playbook=rule.playbook if rule else None, state=state, reason=reason,
                                          what="received", detail=detail + (f"; ignored: {reason}" if reason else ""))
        if not new:
            return self._repeat(incident.id, incident.state, detail)
        if rule is not None and host is not None and state != State.IGNORED:
            self.store.log(incident.id, "matched", f"rule {rule.name!r} ({rule.where}): playbook "
                                                   f"{Path(rule.playbook).stem} on {host}, approval {rule.approval}")
            execution = self.engine.execution
            if state == State.PENDING:
                jobs.append((host, incident.id, PLANNING, execution.plan))
            else:
                jobs.append((host, incident.id, APPLYING, execution.run))
        return {"id": incident.id, "state": incident.state, "new": True}

    def _repeat(self, incident_id: int, state: State, detail: str) -> dict[str, Any]:
        self.store.log(incident_id, "repeat", f"{detail} again (same fingerprint and startsAt): attached, nothing run")
        return {"id": incident_id, "state": state, "new": False}

    def _read_inventory(self, path: Path) -> inventory_mod.Inventory:
        """The inventory, parsed again only when its file has changed (inode, size, mtime or ctime): an edit counts
        from the next alert on, and a burst of alerts parses it once, not once per alert."""
        try:
            st = path.stat()
        except OSError:
            return inventory_mod.load(path)  # its own words for a missing or unreadable file
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if self._inventory is None or self._inventory[0] != stamp:
            self._inventory = (stamp, inventory_mod.load(path))
        return self._inventory[1]

    def _route(self, alert: Alert) -> Route:
        """(state, reason, rule, host) for a new firing."""
        rule = self.engine.rules.route(alert.labels)
        if rule is None:
            return State.IGNORED, "no rule matches its labels", None, None
        value = alert.labels.get(rule.host_label)
        if not value:
            return State.IGNORED, f"rule {rule.name!r}: the alert has no {rule.host_label!r} label", rule, None
        wanted = host_of(value)
        inventory_path = self.engine.inventory
        try:
            inventory = self._read_inventory(inventory_path)
        except RemediateError as e:
            return State.IGNORED, f"the inventory cannot be read: {e.message}", rule, None
        host = wanted if wanted in inventory.hosts else None
        if host is None:
            by_address = [h.name for h in inventory.hosts.values() if h.address == wanted]
            host = by_address[0] if len(by_address) == 1 else None
        if host is None:
            return (State.IGNORED, f"host {wanted!r} (label {rule.host_label}={value!r}) is not in {inventory_path}",
                    rule, None)
        if self.engine.paused:
            return State.IGNORED, f"serve is paused ({self.store.setting('paused_by')}); nothing is run", rule, host
        return self._limited(rule, host) or ((State.PENDING if rule.approval == "required" else State.RUNNING),
                                             None, rule, host)

    def _limited(self, rule: Rule, host: str) -> Route | None:
        """Ignored as rate-limited, by the rule's limit or serve's per host; None when neither is reached."""
        hour_ago = self.engine.clock() - 3600
        ran = self.store.runs_since(hour_ago, rule=rule.name, host=host)
        if ran >= rule.max_runs_per_hour:
            return State.IGNORED, (f"rate-limited: rule {rule.name!r} already has {ran} incident(s) on {host} in the "
                                   f"last hour (max_runs_per_hour: {rule.max_runs_per_hour})"), rule, host
        ran = self.store.runs_since(hour_ago, host=host)
        limit = self.engine.host_runs_per_hour
        if ran >= limit:
            return State.IGNORED, (f"rate-limited: {host} already has {ran} incident(s) in the last hour (serve "
                                   f"--host-runs-per-hour {limit})"), rule, host
        return None

    def _resolved(self, incident: Incident) -> None:
        now = self.engine.clock()
        if incident.state == State.WAITING_RESOLVED:
            if not self.engine.deadlines.confirm(incident, now):  # the API (and verify_again) asked first
                return
            done = self.store.transition(incident.id, [State.WAITING_RESOLVED], State.RESOLVED, "resolved",
                                         "Alertmanager sent resolved: the fix worked", alert_resolved=now, reason=None)
            if done is not None:
                self.engine.execution.notify(done)
        elif incident.state == State.RUNNING:
            self.store.update(incident.id, "alert resolved", "Alertmanager sent resolved while the run was in flight; "
                              "it counts once the run has applied and verified", alert_resolved=now)
        elif incident.state == State.PENDING:
            done = self.store.transition(incident.id, [State.PENDING], State.IGNORED, "alert resolved",
                                         "the alert resolved before anyone approved the plan; nothing was run",
                                         reason="the alert resolved on its own before approval; nothing was run",
                                         alert_resolved=now)
            if done is not None:
                self.engine.execution.notify(done)
        else:
            self.store.update(incident.id, "alert resolved", f"Alertmanager sent resolved (incident is {incident.state})",
                              alert_resolved=now)
