"""Outgoing webhooks: every incident outcome POSTed as JSON, with bounded retries, never holding up a run; and a
rule's escalation, called with the evidence when one of its incidents ends failed or rolled back.

A redirect is not followed (it would carry the Authorization header, and the outcome, to another origin): a 3xx
is a failure like a 4xx. The URL is itself the secret of Slack-style hooks: the history shows scheme://host/… only."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Final

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from remediate import redact
from remediate.serve.models import State
from remediate.serve.rules import Notify, Rule, shown
from remediate.serve.store import Store

LOG = logging.getLogger(__name__)

ATTEMPTS: Final = 3


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every 3xx answered as it is, an HTTPError: never a second request elsewhere."""

    def redirect_request(self, *args: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)
#: What every outgoing call of serve's opens with (notify, escalation, Alertmanager, chat): no redirect followed.
OPENER: Final = _OPENER


def _worth_retrying(error: BaseException) -> bool:
    """A connection that failed, or the far end's 5xx; a 3xx or 4xx answers the same the next time."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500
    return isinstance(error, OSError)


class Notifier:
    """Each outcome POSTed to every target on a thread of its own; what became of each goes into the audit log."""

    def __init__(self, targets: tuple[Notify, ...], log: Callable[[int, str, str], None], timeout: float = 5.0) -> None:
        self.targets = targets
        self.log = log  # (incident id, what, detail) into the incident's audit log
        self.timeout = timeout
        self._threads: list[threading.Thread] = []

    def send(self, incident_id: int, body: dict[str, Any]) -> None:
        for target in self.targets:
            thread = threading.Thread(target=self._post, args=(incident_id, target, body), daemon=True,
                                      name=f"notify-{incident_id}")
            thread.start()
            self._threads.append(thread)
        self._threads = [t for t in self._threads if t.is_alive()]

    def wait(self, timeout: float = 30.0) -> None:
        for thread in list(self._threads):
            thread.join(timeout)

    def _post(self, incident_id: int, target: Notify, body: dict[str, Any],
              words: tuple[str, str] = ("notified", "notify failed"), to: str = "") -> None:
        """POST body to target, retried; what became of it into the incident's history, in `words` (done, failed)."""
        headers = {"Content-Type": "application/json", "User-Agent": "remediate-serve",
                   "Idempotency-Key": idempotency_key(body)}
        token = os.environ.get(target.token_env) if target.token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode()
        where = to + shown(target.url)
        try:
            for attempt in Retrying(stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=0.5, max=5),
                                    retry=retry_if_exception(_worth_retrying), reraise=True):
                with attempt:
                    request = urllib.request.Request(target.url, data=data, headers=headers, method="POST")
                    with _OPENER.open(request, timeout=self.timeout) as response:
                        status = response.status
            self.log(incident_id, words[0], f"{where}: HTTP {status}")
        except urllib.error.HTTPError as e:
            moved = " (a redirect: not followed)" if 300 <= e.code < 400 else ""
            self.log(incident_id, words[1], f"{where}: HTTP {e.code}{moved}")
        except OSError as e:
            self.log(incident_id, words[1], f"{where}: {redact.text(str(e))} (after {ATTEMPTS} attempts)")
        except Exception as e:  # a bug, or a URL urllib cannot take: logged, noted, and the next outcome is sent
            LOG.exception("incident %d: notifying %s failed", incident_id, where, extra={"incident": incident_id})
            self.log(incident_id, words[1], f"{where}: {type(e).__name__} (see serve's log)")


#: How an incident ends that its rule's escalate: targets are called for.
ESCALATED: Final = frozenset({State.FAILED, State.ROLLED_BACK})
_STATES: Final = {s.value: s for s in State}


def moved_to(what: str) -> State | None:
    """The state a decision the store told its watchers moved an incident to: "failed" (a state as the audit log
    words it) or "applied -> waiting_resolved"; None for a line that moved nothing ("notify failed")."""
    before, arrow, after = what.rpartition(" -> ")
    if arrow:
        return _STATES.get(after)
    return next((state for state in State if state.said == what), None)


def idempotency_key(body: dict[str, Any]) -> str:
    """The same for every POST of one outcome of one incident, whoever sends it and however often: a retry after a
    lost response, or a Temporal worker that died after posting and whose activity another worker ran again. A
    receiver that keeps the keys it saw drops the repeats (the Idempotency-Key header of the IETF draft)."""
    found = body.get("details")
    details: dict[str, Any] = found if isinstance(found, dict) else {}
    fields = [body.get("kind") or "outcome", body.get("incident"), body.get("state"), body.get("run_id"),
              body.get("fingerprint") or details.get("fingerprint"), body.get("starts_at") or details.get("starts_at")]
    return "remediate-" + hashlib.sha256(json.dumps(fields, default=str).encode()).hexdigest()[:32]


def escalation(incident: dict[str, Any]) -> dict[str, Any]:
    """What an escalation carries: the incident's public JSON (its history included) and, on top, what a pager reads
    first: the state, the reason, the run and the evidence. Every secret-looking value masked."""
    body = {"kind": "escalation", "incident": incident["id"], "state": incident["state"],
            "reason": incident["reason"], "run_id": incident["run_id"], "evidence": incident["evidence"],
            "host": incident["host"], "rule": incident["rule"], "alertname": incident["alertname"],
            "details": incident}
    masked = redact.data(body)
    assert isinstance(masked, dict)
    return masked


class Escalation:
    """Told each committed decision (a Store watcher): an incident that ends failed or rolled back is POSTed to its
    rule's escalate: targets, each on a thread of its own, with the evidence; the history says "escalated to
    scheme://host/…: HTTP 200" or why not. Once per incident."""

    def __init__(self, store: Store, rule: Callable[[str], Rule | None], timeout: float = 5.0) -> None:
        self.store = store
        self.rule = rule
        self.notifier = Notifier((), store.log, timeout)
        self._done: set[int] = set()
        self._lock = threading.Lock()

    def watch(self) -> Escalation:
        self.store.watchers.append(self.heard)
        return self

    def heard(self, incident_id: int, what: str, detail: str) -> None:
        if moved_to(what) not in ESCALATED:
            return
        incident = self.store.get(incident_id)
        rule = self.rule(str(incident.rule))
        if incident.state not in ESCALATED or rule is None or not rule.escalate:
            return
        with self._lock:
            if incident_id in self._done:
                return
            self._done.add(incident_id)
        body = escalation(incident.public())
        for target in rule.escalate:
            thread = threading.Thread(target=self.notifier._post, daemon=True, name=f"escalate-{incident_id}",
                                      args=(incident_id, target, body, ("escalated", "escalation failed"), "to "))
            thread.start()
            self.notifier._threads.append(thread)

    def wait(self, timeout: float = 30.0) -> None:
        self.notifier.wait(timeout)
