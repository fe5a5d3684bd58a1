"""Alertmanager's API v2, as serve uses it: a silence while a fix runs (made, expired), the look at one alert (is it
still there?), and how long Alertmanager has been up (a restarted one forgets every alert until Prometheus sends
them again). urllib, a timeout on every call, a bound on every answer read, and no redirect followed."""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from remediate.serve.models import FINAL, State
from remediate.serve.notify import OPENER, moved_to
from remediate.serve.rules import Rule, shown
from remediate.serve.store import Incident, Store

if TYPE_CHECKING:
    from remediate.serve.engine import Engine

LOG = logging.getLogger(__name__)

#: The most of one answer read: a silence, an alert or the status is a few KiB (the status holds the config).
MAX_ANSWER: Final = 4 << 20
CREATED_BY: Final = "remediate serve"
_FRACTION: Final = re.compile(r"\.(\d{6})\d*")


class Unreachable(Exception):
    """Alertmanager did not answer, or answered with an error: the message says which, without the URL's secrets."""


@dataclass(frozen=True)
class Look:
    """Alertmanager's word on one alert: firing (listed), absent (not listed, and Alertmanager has been up at least
    the grace), or unknown (unreachable, or up too short a time for absent to mean anything)."""

    state: Literal["firing", "absent", "unknown"]
    said: str  # for the history and the evidence: "absent from Alertmanager (up 3m12s) at 2026-...Z"
    at: float
    reached: bool = True  # False: Alertmanager did not answer


def since(seconds: float) -> str:
    """A duration as the history says it: 45s, 3m12s, 2h05m."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(value: str) -> float:
    """Alertmanager's RFC 3339 time (nanoseconds and all) as seconds since the epoch."""
    text = _FRACTION.sub(r".\1", value.strip()).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def matcher(name: str, value: str) -> str:
    """One filter matcher for GET /api/v2/alerts: name="value", the value quoted as Alertmanager parses it."""
    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{quoted}"'


class Alertmanager:
    """One Alertmanager, at `url` (http://host:9093, or behind a path prefix)."""

    def __init__(self, url: str, timeout: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.clock = clock
        self.shown = shown(self.url)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/api/v2/{path}", data=data, method=method, headers={
            "Content-Type": "application/json", "Accept": "application/json", "User-Agent": "remediate-serve"})
        try:
            with OPENER.open(request, timeout=self.timeout) as response:
                raw = response.read(MAX_ANSWER + 1)
        except urllib.error.HTTPError as e:
            moved = " (a redirect: not followed)" if 300 <= e.code < 400 else ""
            said = e.read(512).decode(errors="replace").strip().replace("\n", " ")
            raise Unreachable(f"Alertmanager at {self.shown}: {method} {path.split('?')[0]}: HTTP {e.code}{moved}"
                              f"{': ' + said if said and not moved else ''}") from None
        except (OSError, ValueError) as e:
            raise Unreachable(f"Alertmanager at {self.shown} did not answer: {getattr(e, 'reason', e)}") from None
        if len(raw) > MAX_ANSWER:
            raise Unreachable(f"Alertmanager at {self.shown}: {path.split('?')[0]}'s answer is over {MAX_ANSWER} bytes")
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError:
            raise Unreachable(f"Alertmanager at {self.shown}: {path.split('?')[0]} did not answer JSON") from None

    def silence(self, labels: Mapping[str, str], ends_at: float, comment: str) -> str:
        """A silence of exactly this alert (every label, equal) from now until `ends_at`; its id."""
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in
                             sorted(labels.items())],
                "startsAt": stamp(self.clock()), "endsAt": stamp(ends_at), "createdBy": CREATED_BY,
                "comment": comment}
        answer = self._call("POST", "silences", body)
        if not isinstance(answer, dict) or not isinstance(answer.get("silenceID"), str):
            raise Unreachable(f"Alertmanager at {self.shown}: POST silences answered no silenceID")
        return str(answer["silenceID"])

    def reend(self, silence_id: str, ends_at: float) -> str:
        """The silence made to end at `ends_at` instead; its id (Alertmanager keeps it when it can update the silence
        in place, else expires it and makes another)."""
        found = self.silence_of(silence_id)
        body = {key: found.get(key) for key in ("matchers", "startsAt", "createdBy", "comment")}
        answer = self._call("POST", "silences", {**body, "id": silence_id, "endsAt": stamp(ends_at)})
        if not isinstance(answer, dict) or not isinstance(answer.get("silenceID"), str):
            raise Unreachable(f"Alertmanager at {self.shown}: POST silences answered no silenceID")
        return str(answer["silenceID"])

    def expire(self, silence_id: str) -> None:
        """The silence ends now (Alertmanager keeps it, expired)."""
        self._call("DELETE", f"silence/{urllib.parse.quote(silence_id, safe='')}")

    def silences(self) -> list[dict[str, Any]]:
        """Every silence Alertmanager holds (active, pending and expired ones it still keeps)."""
        found = self._call("GET", "silences")
        if not isinstance(found, list):
            raise Unreachable(f"Alertmanager at {self.shown}: GET silences did not answer a list")
        return [s for s in found if isinstance(s, dict)]

    def silence_of(self, silence_id: str) -> dict[str, Any]:
        """The silence as Alertmanager has it: status.state is active, expired or pending."""
        found = self._call("GET", f"silence/{urllib.parse.quote(silence_id, safe='')}")
        if not isinstance(found, dict):
            raise Unreachable(f"Alertmanager at {self.shown}: silence {silence_id} is not a JSON object")
        return found

    def uptime(self) -> float:
        """Seconds since Alertmanager started (GET status: uptime is its start time)."""
        status = self._call("GET", "status")
        try:
            return max(0.0, self.clock() - epoch(str(status["uptime"])))
        except (TypeError, KeyError, ValueError):
            raise Unreachable(f"Alertmanager at {self.shown}: its status has no start time") from None

    def alert(self, fingerprint: str, labels: Mapping[str, str]) -> dict[str, Any] | None:
        """The alert with this fingerprint, firing, silenced, inhibited or not yet processed; None when Alertmanager
        lists none (its API leaves out an alert whose endsAt has passed: a resolved one)."""
        query = [("active", "true"), ("silenced", "true"), ("inhibited", "true"), ("unprocessed", "true"),
                 *(("filter", matcher(k, v)) for k, v in sorted(labels.items()))]
        found = self._call("GET", f"alerts?{urllib.parse.urlencode(query)}")
        if not isinstance(found, list):
            raise Unreachable(f"Alertmanager at {self.shown}: GET alerts did not answer a list")
        now = self.clock()
        for alert in found:
            if isinstance(alert, dict) and alert.get("fingerprint") == fingerprint:
                ends = alert.get("endsAt")
                if isinstance(ends, str) and ends and epoch(ends) <= now:
                    return None
                return alert
        return None

    def look(self, fingerprint: str, labels: Mapping[str, str], grace: float) -> Look:
        """Is the alert still there? Absent counts only once Alertmanager has been up `grace` seconds: a restarted
        one lists nothing until Prometheus sends its alerts again."""
        now = self.clock()
        try:
            up = self.uptime()
            found = self.alert(fingerprint, labels)
        except Unreachable as e:
            return Look("unknown", f"{e} at {stamp(now)}", now, reached=False)
        if found is not None:
            state = (found.get("status") or {}).get("state", "active")
            return Look("firing", f"listed by Alertmanager ({state}, up {since(up)}) at {stamp(now)}", now)
        if up < grace:
            return Look("unknown", f"absent from Alertmanager, but it has been up only {since(up)} (grace "
                                   f"{since(grace)}: Prometheus may not have sent it again yet) at {stamp(now)}", now)
        return Look("absent", f"absent from Alertmanager (up {since(up)}) at {stamp(now)}", now)


#: A silence made when the apply starts lasts the rule's resolve_timeout and this (the apply's own time, unknown yet).
MARGIN: Final = 600.0
#: Once the apply is done the silence ends this long after the deadline; once the fix is proven, this long after that
#: (Alertmanager's default group_interval: the resolved alert leaves its group, muted, before the silence ends). A
#: relapse after that pages as usual.
LAPSE: Final = 300.0
EXPIRED: Final = "silence expired"
LAPSES: Final = "silence left to lapse"
#: The moves the silence loop acts on (and the apply's start): every end, back to pending, and the apply done.
_MOVES: Final = frozenset({*FINAL, State.PENDING, State.WAITING_RESOLVED})
#: How far back a restarted serve looks for a silence whose expiry it owes: past that, every silence has lapsed.
CATCH_UP: Final = 86400.0


def fixing(number: int, link: str, rule: str, host: str | None) -> str:
    """The comment of the silence serve makes while it fixes incident `number` (its page's `link` in it)."""
    return (f"remediate serve is fixing this: incident {number}, {link} (rule {rule}, host {host}); expired at once "
            "if the fix fails")


class Silences:
    """The silence loop (a Store watcher): when a fix starts and its rule has `silence: true`, the alert is silenced
    in Alertmanager until the deadline and a margin, the incident's URL in the comment; when the incident ends failed
    or rolled back the silence is expired at once, so the page goes out; when it ends resolved the silence is left to
    lapse. An incident sent back to pending (paused, changed underfoot) has its silence expired too: nothing is fixing
    the alert while it waits for a person. Alertmanager's calls run on one thread of their own, in the order the
    decisions were made: an apply never waits for Alertmanager, and Alertmanager unreachable is said in the history
    while the fix goes on."""

    def __init__(self, store: Store, rule: Callable[[str], Rule | None], client: Alertmanager,
                 link: Callable[[int], str], after: Callable[[Incident], None] = lambda incident: None) -> None:
        self.store = store
        self.rule = rule
        self.client = client
        self.link = link
        self.after = after  # told each incident that ended resolved, once its silence is dealt with (the evidence)
        self._queue: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alertmanager-silences", daemon=True)

    def watch(self) -> Silences:
        self.store.watchers.append(self.heard)
        self._thread.start()
        return self

    def catch_up(self) -> Silences:
        """After a restart: every silence whose expiry a previous serve owed (it stopped between the decision and the
        call) is expired now."""
        since = self.store.clock() - CATCH_UP
        for incident in self.store.all([State.FAILED, State.ROLLED_BACK, State.PENDING]):
            if incident.silence_id and incident.updated >= since and not expired(incident):
                self._queue.put((incident.id, "catching up"))
        return self

    def stop(self) -> None:
        self._queue.put(None)

    def idle(self) -> None:
        """Until every decision heard so far has been acted on (tests)."""
        self._queue.join()

    def heard(self, incident_id: int, what: str, detail: str) -> None:
        if what == "applying" or moved_to(what) in _MOVES:
            self._queue.put((incident_id, what))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self.act(self.store.get(item[0]), item[1])
            except Exception:  # a bug here must not end the loop: logged with the incident, the next one is acted on
                LOG.exception("incident %s: the silence loop failed", item and item[0],
                              extra={"incident": item and item[0]})
            finally:
                self._queue.task_done()

    def act(self, incident: Incident, what: str) -> None:
        """What the decision `what`, and the incident's state now, ask of its silence: made, expired, left, or
        nothing."""
        if what == "applying":
            rule = self.rule(str(incident.rule))
            if incident.state == State.RUNNING and incident.silence_id is None and rule is not None and rule.silence:
                self._silence(incident, rule)
        elif incident.state in (State.FAILED, State.ROLLED_BACK, State.PENDING) and incident.silence_id \
                and not expired(incident):
            self._expire(incident)
        elif incident.state == State.WAITING_RESOLVED and incident.silence_id and incident.deadline is not None:
            self._reend(incident, incident.deadline + LAPSE, "silence until the deadline", "the fix is applied",
                        longer=True)
        elif incident.state == State.RESOLVED and what != "catching up":
            if incident.silence_id and LAPSES not in {h["what"] for h in incident.history}:
                self._reend(incident, self.store.clock() + LAPSE, LAPSES,
                            "the fix is proven: not expired early (a relapse after it pages as usual)")
            self.after(self.store.get(incident.id))

    def _silence(self, incident: Incident, rule: Rule) -> None:
        until = self.store.clock() + rule.resolve_timeout + MARGIN
        comment = fixing(incident.id, self.link(incident.id), rule.name, incident.host)
        try:
            silence_id = self.client.silence(incident.labels, until, comment)
        except Unreachable as e:
            self.store.log(incident.id, "silence failed", f"{e}; the fix goes on without a silence (it is a "
                                                          "courtesy, never a gate)")
            return
        self.store.update(incident.id, "silenced", f"in Alertmanager until {stamp(until)}: {silence_id}",
                          silence_id=silence_id)

    def _expire(self, incident: Incident) -> None:
        """Expired, tried three times (the page waits on it); what failed is said, with the way to do it by hand."""
        try:
            for attempt in Retrying(stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.5, max=4),
                                    retry=retry_if_exception_type(Unreachable), reraise=True):
                with attempt:
                    self.client.expire(str(incident.silence_id))
        except Unreachable as e:
            self.store.log(incident.id, "silence expiry failed", f"{e}: silence {incident.silence_id} mutes the alert "
                                                                 "until it lapses; expire it by hand (amtool silence "
                                                                 f"expire {incident.silence_id})")
            return
        detail = f"the page goes out: silence {incident.silence_id} expired, the incident is {incident.state.said}"
        if incident.state == State.PENDING:  # a later apply makes a silence of its own
            self.store.update(incident.id, EXPIRED, f"{detail} (nothing is fixing it while it waits for a person)",
                              silence_id=None)
        else:
            self.store.log(incident.id, EXPIRED, detail)

    def _reend(self, incident: Incident, until: float, what: str, why: str, longer: bool = False) -> None:
        """The silence made to end at `until` (never sooner than a minute from now) when it ends later, or sooner
        with `longer`; said in the history either way."""
        silence_id = str(incident.silence_id)
        until = max(until, self.store.clock() + 60)
        try:
            ends = epoch(str(self.client.silence_of(silence_id).get("endsAt")))
            if until < ends or (longer and abs(until - ends) > 1):
                silence_id, ends = self.client.reend(silence_id, until), until
        except (Unreachable, ValueError) as e:
            self.store.log(incident.id, what, f"{why}; silence {silence_id}: its end could not be set ({e})")
            return
        self.store.update(incident.id, what, f"{why}; silence {silence_id} lapses at {stamp(ends)}",
                          silence_id=silence_id)


def expired(incident: Incident) -> bool:
    """The incident's silence was expired by serve (its history says so, naming it)."""
    return any(h["what"] == EXPIRED and str(incident.silence_id) in str(h["detail"]) for h in incident.history)


def wire(engine: Engine, url: str | None, grace: float, public_url: str) -> Silences | None:
    """serve --alertmanager URL: the silence loop on the engine's store, and "resolved" asked of the API at each of
    the deadlines' ticks. `public_url` is serve's address as people reach it (the silence's comment links there)."""
    if not url:
        return None
    client = Alertmanager(url)
    engine.deadlines.alertmanager, engine.deadlines.grace = client, grace
    base = public_url.rstrip("/")
    return Silences(engine.store, lambda name: engine.rules.named(name), client, lambda n: f"{base}/incidents/{n}",
                    engine.deadlines.webhook_resolved).watch().catch_up()
