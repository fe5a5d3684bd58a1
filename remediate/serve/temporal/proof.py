"""The incident workflow's proof activities, as the embedded backend does them (alertmanager.py, deadlines.py,
notify.py, slack_actions.py), in the same words: the alert's silence in Alertmanager (made when the apply starts,
expired when the fix fails or waits for a person again, left to lapse once proven), the look at Alertmanager's API
(and the playbook's verify again) while the incident waits for resolved, the escalation of a failed end, and the
pending plan posted to chat. Each may run twice (a worker that dies): a silence is looked for before one is made."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Final

from temporalio import activity
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from remediate import redact
from remediate.serve.alertmanager import (
    CREATED_BY,
    EXPIRED,
    LAPSE,
    LAPSES,
    MARGIN,
    Alertmanager,
    Unreachable,
    epoch,
    fixing,
    stamp,
)
from remediate.serve.models import State
from remediate.serve.notify import ESCALATED, Notifier, escalation
from remediate.serve.rules import Rules
from remediate.serve.runs import LibraryRuns
from remediate.serve.slack_actions import Slack
from remediate.serve.store import Incident
from remediate.serve.temporal import shared
from remediate.serve.temporal.shared import Hush, Hushed, Looked, LookInput, Told

__all__ = ["ProofActivities", "Proofing", "escalate", "incident_of"]

_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Incident))


@dataclass(frozen=True)
class Proofing:
    """This replica's proof options: serve --alertmanager (and its grace), where people reach serve (the silence's
    comment and the chat message link there), how often the API is looked at, and Slack's signing secret (buttons)."""

    alertmanager: str | None = None
    grace: float = 120.0
    public_url: str = ""
    every: float = 5.0
    slack_secret: bytes | None = field(default=None, repr=False)

    def link(self, number: int) -> str:
        return f"{self.public_url.rstrip('/')}/incidents/{number}"


def incident_of(record: dict[str, Any]) -> Incident:
    """A workflow's record as the Incident the embedded code reads."""
    data = {key: value for key, value in record.items() if key in _FIELDS}
    data["state"] = State(data["state"])
    return Incident(**data)


def escalate(rules: Rules, record: dict[str, Any] | None) -> list[list[str]]:
    """An incident that ended failed or rolled back POSTed to its rule's escalate: targets with the evidence
    (notify.escalation's body); what became of each, for the history."""
    if record is None:
        return []
    incident = incident_of(record)
    rule = rules.named(str(incident.rule))
    if incident.state not in ESCALATED or rule is None or not rule.escalate:
        return []
    said: list[list[str]] = []
    notifier = Notifier((), lambda number, what, detail: said.append([what, detail]))
    body = escalation(incident.public())
    for target in rule.escalate:
        notifier._post(incident.id, target, body, ("escalated", "escalation failed"), "to ")
    return said


class ProofActivities:
    """The silence, look and chat activities of one replica (its Proofing)."""

    def __init__(self, runs: LibraryRuns, rules: Rules, proofing: Proofing) -> None:
        self.runs = runs
        self.rules = rules
        self.proofing = proofing
        self.client = Alertmanager(proofing.alertmanager) if proofing.alertmanager else None

    def all(self) -> list[Any]:
        return [self.silence, self.look, self.chat]

    @activity.defn(name=shared.SILENCE, no_thread_cancel_exception=True)
    def silence(self, given: Hush) -> Hushed:
        if self.client is None:
            return Hushed(given.silence_id, [["silence failed", "this replica has no --alertmanager: nothing was "
                                                                "asked of Alertmanager"]])
        if given.action == "make":
            return self._make(self.client, given)
        if given.action == "expire":
            return self._expire(self.client, given)
        if given.action == "until":
            return self._reend(self.client, given, given.deadline + LAPSE, "silence until the deadline",
                               "the fix is applied", longer=True)
        return self._reend(self.client, given, time.time() + LAPSE, LAPSES,
                           "the fix is proven: not expired early (a relapse after it pages as usual)")

    def _make(self, client: Alertmanager, given: Hush) -> Hushed:
        """The incident's silence: the active one an earlier attempt made (its comment names the incident), or a new
        one until the rule's resolve_timeout and a margin."""
        rule = self.rules.named(given.rule)
        until = time.time() + (rule.resolve_timeout if rule else 600.0) + MARGIN
        mine = f": incident {given.number}, "
        try:
            found = next((s for s in client.silences() if s.get("createdBy") == CREATED_BY
                          and mine in str(s.get("comment")) and (s.get("status") or {}).get("state") == "active"), None)
            if found is not None:
                silence_id, until = str(found.get("id")), epoch(str(found.get("endsAt")))
            else:
                silence_id = client.silence(given.labels, until, fixing(given.number, self.proofing.link(given.number),
                                                                        given.rule, given.host))
        except (Unreachable, ValueError) as e:
            return Hushed(None, [["silence failed", f"{e}; the fix goes on without a silence (it is a courtesy, "
                                                    "never a gate)"]])
        return Hushed(silence_id, [["silenced", f"in Alertmanager until {stamp(until)}: {silence_id}"]])

    def _expire(self, client: Alertmanager, given: Hush) -> Hushed:
        """Expired, tried three times (the page waits on it); what failed is said, with the way to do it by hand."""
        silence_id = str(given.silence_id)
        try:
            for attempt in Retrying(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.5, max=4),
                                    retry=retry_if_exception_type(Unreachable), reraise=True):
                with attempt:
                    client.expire(silence_id)
        except Unreachable as e:
            return Hushed(silence_id, [["silence expiry failed", f"{e}: silence {silence_id} mutes the alert until "
                                                                 f"it lapses; expire it by hand (amtool silence expire "
                                                                 f"{silence_id})"]])
        detail = f"the page goes out: silence {silence_id} expired, the incident is {State(given.state).said}"
        if given.state == State.PENDING.value:  # a later apply makes a silence of its own
            return Hushed(None, [[EXPIRED, f"{detail} (nothing is fixing it while it waits for a person)"]])
        return Hushed(silence_id, [[EXPIRED, detail]])

    def _reend(self, client: Alertmanager, given: Hush, until: float, what: str, why: str,
               longer: bool = False) -> Hushed:
        """The silence made to end at `until` (never sooner than a minute from now) when it ends later, or sooner
        with `longer`; said in the history either way."""
        silence_id = str(given.silence_id)
        until = max(until, time.time() + 60)
        try:
            ends = epoch(str(client.silence_of(silence_id).get("endsAt")))
            if until < ends or (longer and abs(until - ends) > 1):
                silence_id, ends = client.reend(silence_id, until), until
        except (Unreachable, ValueError) as e:
            return Hushed(given.silence_id, [[what, f"{why}; silence {silence_id}: its end could not be set ({e})"]])
        return Hushed(silence_id, [[what, f"{why}; silence {silence_id} lapses at {stamp(ends)}"]])

    @activity.defn(name=shared.LOOK, no_thread_cancel_exception=True)
    def look(self, given: LookInput) -> Looked:
        """Alertmanager's word on the alert (deadlines.py's look), and the verify once the alert is gone."""
        now = time.time()
        if given.look and self.client is None:
            return Looked("unknown", "this replica has no --alertmanager to ask", now, reached=False)
        look = self.client.look(given.fingerprint, given.labels, self.proofing.grace) if given.look and self.client \
            else None
        gone = look is None or look.state == "absent" or (given.webhook is not None and look.state != "firing")
        verify = self._verify(given) if given.verify and gone else None
        if look is None:
            return Looked("none", None, now, True, verify)
        return Looked(look.state, look.said, look.at, look.reached, verify)

    def _verify(self, given: LookInput) -> str:
        """The playbook's plan made again on the host: a no-op plan is the fix still in place ("verified ...")."""
        rule = self.rules.named(given.rule)
        if rule is None:
            return f"not verified: rule {given.rule!r} is no longer in {self.rules.path}"
        planned = self.runs.plan(rule, given.host, lambda event: None)
        at = stamp(time.time())
        if planned.status == "nothing":
            return f"verified at {at}: the playbook's plan on {given.host} is a no-op"
        if planned.status == "error":
            return f"not verified at {at}: the plan failed: {redact.text(planned.message)}"
        return f"not verified at {at}: the playbook's plan on {given.host} has changes"

    @activity.defn(name=shared.CHAT, no_thread_cancel_exception=True)
    def chat(self, given: Told) -> list[list[str]]:
        """The pending incident posted to its rule's chat webhook (slack_actions' message), as the embedded backend
        posts it once planned; what became of it, for the history."""
        incident = incident_of(given.record or {})
        rule = self.rules.named(str(incident.rule))
        if rule is None or rule.chat is None:
            return [["chat post failed", f"rule {incident.rule!r} has no chat: on this replica"]]
        said: list[list[str]] = []
        poster = Slack(self.proofing.slack_secret, self.rules, lambda number, what, detail: said.append([what, detail]),
                       lambda number: incident, self.proofing.public_url or None)
        poster._post(incident, rule)
        return said
