"""Approving from chat: a rule's pending incident posted to its Slack (or Mattermost) incoming webhook once planned (a
Store watcher), and POST /slack/actions, Slack's interactivity request URL, where its Approve and Deny buttons land.

The callback is not behind the bearer Guard: Slack's signature proves it (slack.verify), and without one nothing else
is read (401). A signed callback is answered at once; what it decides happens on a thread (Slack wants its answer
within 3 s): the Slack user mapped to a person (`serve tokens add NAME --role R --slack UID`), that person's role,
the plan the message showed against the one the incident holds, then the backend's approve or deny. Each refusal
changes nothing, is written to the incident's history, and the message is replaced (its response_url) with what
happened; the same signed callback refused again within slack.SAID seconds is only logged. A click signed before this
serve started is refused: the serve before may have taken it, and its replay guard went with it."""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from remediate import redact
from remediate.errors import InputError
from remediate.serve import slack
from remediate.serve.backend import Backend, plan_identity
from remediate.serve.bodies import Bad, bounded
from remediate.serve.engine import NotFound, Refused
from remediate.serve.identity import Person, Tokens
from remediate.serve.models import State
from remediate.serve.roles import Roles
from remediate.serve.rules import Rule, Rules, shown
from remediate.serve.store import Incident, Store

__all__ = ["PATH", "Slack", "actions", "check", "check_webhooks", "wire"]

LOG = logging.getLogger(__name__)

PATH: Final = "/slack/actions"
Note = Callable[[int, str, str], None]


@dataclass(frozen=True)
class Deciders:
    """Who decides a click, as the app has them when it arrives."""

    backend: Backend
    tokens: Tokens | None
    roles: Roles


@dataclass
class Slack:
    """Approving from chat: the signing secret (None: messages without buttons), the replay guard, the rules (their
    chat targets and approvals needed), where people see an incident's page, and the history to write to."""

    secret: bytes | None
    rules: Rules
    note: Note  # (incident id, what, detail) into its history
    get: Callable[[int], Incident]
    public_url: str | None = None
    clock: Callable[[], float] = time.time
    replays: slack.Replays = field(default_factory=slack.Replays)
    #: When this serve started, by `clock`: a click signed in an earlier second may have been taken by the serve
    #: before (its replay guard is gone with it), so it is refused.
    started: float = field(default_factory=time.time)
    #: The refused callbacks said (history, message) already: a captured one sent again is only logged.
    said: slack.Replays = field(default_factory=lambda: slack.Replays(window=slack.SAID))
    timeout: float = 5.0
    _threads: list[threading.Thread] = field(default_factory=list)

    def spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=self._guarded, args=(target, *args), daemon=True, name="slack")
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except Exception:  # a bug: logged with its traceback; the next click and post go on
            LOG.exception("a Slack job failed")

    def wait(self, timeout: float = 30.0) -> None:
        """Until every post and decision started so far is done (tests, and a clean stop)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def before_start(self, timestamp: int) -> str | None:
        """Why a click signed at `timestamp` is refused for being older than this serve (None: it is not)."""
        if timestamp >= int(self.started):
            return None
        return (f"it was signed {int(self.started) - timestamp} s before this serve started: the serve before may "
                "have taken it, so it is refused (click again)")

    def view(self, incident: Incident, note: str | None = None) -> slack.View:
        rule = self.rules.named(str(incident.rule))
        identity = plan_identity(incident)
        needed, expires = (rule.approvals, rule.approval_expires) if rule else (1, 3600.0)
        link = f"{self.public_url.rstrip('/')}/incidents/{incident.id}" if self.public_url else None
        return slack.View(needed, slack.approvers(incident, identity, expires, self.clock()), identity, link,
                          self.secret is not None, note)

    # --- the post of a pending incident ------------------------------------------------------------------------

    def watch(self, incident_id: int, what: str, detail: str) -> None:
        """A Store watcher: a pending incident of a rule with chat: just planned is posted (on a thread)."""
        if what != "planned":
            return
        incident = self.get(incident_id)
        rule = self.rules.named(str(incident.rule))
        if rule is not None and rule.chat is not None and incident.state == State.PENDING:
            self.spawn(self._post, incident, rule)

    def _post(self, incident: Incident, rule: Rule) -> None:
        assert rule.chat is not None
        url = os.environ.get(rule.chat.webhook_env, "")
        where = shown(url)
        try:
            status = slack.post(url, slack.message(incident, self.view(incident)), self.timeout)
            self.note(incident.id, "posted to chat", f"{where}: HTTP {status}")
        except urllib.error.HTTPError as e:
            moved = " (a redirect: not followed)" if 300 <= e.code < 400 else ""
            self.note(incident.id, "chat post failed", f"{where}: HTTP {e.code}{moved}")
        except urllib.error.URLError as e:
            self.note(incident.id, "chat post failed", f"{where}: {redact.text(str(e.reason))}")
        except (OSError, ValueError) as e:  # ValueError: a URL urllib cannot take; its text would show the URL
            self.note(incident.id, "chat post failed", f"{where}: {type(e).__name__}")

    # --- a click ---------------------------------------------------------------------------------------------------

    def decide(self, click: slack.Click, refused: str | None, deciders: Deciders) -> None:
        """A click from Slack, decided: approved or denied, or refused and said; the message replaced either way."""
        word = "approval" if click.action == "approve" else "denial"
        backend = deciders.backend
        try:
            incident = backend.get(click.incident_id)
        except NotFound:
            self.update(click, None, f"Incident {click.incident_id} is not known to this serve: nothing changed.")
            return
        person = None
        if refused is None:
            refused, person = self._judge(click, incident, deciders)
        if refused is None and person is not None:
            try:
                if click.action == "approve":
                    incident = backend.approve(incident.id, person, click.identity)
                else:
                    incident = backend.deny(incident.id, person, "denied in Slack")
                self.update(click, incident, f"{'Approved' if click.action == 'approve' else 'Denied'} by "
                                             f"{person.said}, Slack user {click.user}.")
                return
            except (Refused, NotFound) as e:
                refused = f"{click.user} ({person.name}): {e}"
        detail = refused or "refused"
        self.note(incident.id, f"Slack {word} refused", detail)
        self.update(click, backend.get(incident.id), f"Slack {word} refused: {detail}. Nothing changed.")

    def _judge(self, click: slack.Click, incident: Incident, deciders: Deciders) -> tuple[str | None, Person | None]:
        """Why this click may not decide (None: it may), and the person it is."""
        person = deciders.tokens.chat_person("slack", click.user) if deciders.tokens is not None else None
        if person is None:
            return (f"{click.user} is not mapped to anyone (remediate serve tokens add NAME --role ROLE "
                    f"--slack {click.user})"), None
        if not deciders.roles.allows(person, click.action, incident.rule, incident.host):
            return f"{click.user}: {deciders.roles.refusal(person, click.action, incident.rule, incident.host)}", person
        held = plan_identity(incident)
        if held != click.identity:
            now = f"holds plan {held[:12]}… now" if held else "holds no plan now"
            return (f"{click.user} ({person.name}): stale plan: the message showed plan {click.identity[:12]}…, the "
                    f"incident {now}; look at the newest message or the incident's page"), person
        return None, person

    def update(self, click: slack.Click, incident: Incident | None, note: str) -> None:
        """The clicked message replaced (its response_url) by the incident as it is now, and what happened."""
        if click.response_url is None:
            return
        doc = slack.message(incident, self.view(incident, note)) if incident is not None else {"text": slack.escape(note)}
        where = shown(click.response_url)
        try:
            slack.post(click.response_url, {**doc, "replace_original": True}, self.timeout)
        except (OSError, ValueError) as e:
            LOG.warning("incident %d: updating the Slack message at %s failed: %s", click.incident_id, where,
                        type(e).__name__ if isinstance(e, ValueError) else redact.text(str(e)))


async def actions(request: Request) -> Response:
    """POST /slack/actions: 401 unless Slack signed it (nothing else read); a signed click is decided on a thread."""
    site = request.app.state.web
    chat: Slack | None = getattr(request.app.state, "slack", None)
    if chat is None or chat.secret is None:
        raise Bad(404, "approving from Slack is not set up: serve --slack-signing-secret-file FILE")
    timestamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not timestamp or not signature:
        raise Bad(401, "not from Slack: no X-Slack-Signature and X-Slack-Request-Timestamp")
    body = await bounded(request, site.max_body)
    now = chat.clock()
    late = slack.verify(chat.secret, timestamp, body, signature, now)
    if late is not None and not slack.signed(chat.secret, timestamp, body, signature):
        address = request.client.host if request.client else "-"
        LOG.warning("POST %s from %s refused: %s", PATH, address, late)
        raise Bad(401, f"not from Slack: {late}")
    refused = late or chat.replays.first(signature, int(timestamp), now) or chat.before_start(int(timestamp))
    try:
        click = slack.parse(body)
    except ValueError as e:
        raise Bad(400, str(e)) from None
    deciders = Deciders(site.backend, site.tokens, site.roles)
    if refused is None:
        chat.spawn(chat.decide, click, None, deciders)
        return Response(status_code=200)
    if chat.said.first(signature, int(now), now) is None:  # said once: the same callback again is only logged
        chat.spawn(chat.decide, click, f"{click.user}'s callback: {refused}", deciders)
    else:
        LOG.warning("POST %s: incident %d: %s's callback refused again (said before): %s", PATH, click.incident_id,
                    click.user, refused)
    return JSONResponse({"error": f"refused: {refused}"}, status_code=401 if late else 409)


def check_webhooks(rules: Rules) -> None:
    """Refused (InputError) when a rule's chat: names an environment variable that is unset or not an http(s) URL."""
    for rule in rules.rules:
        if rule.chat is None:
            continue
        url = os.environ.get(rule.chat.webhook_env, "")
        hint = f"export {rule.chat.webhook_env}=https://hooks.slack.com/services/… (the incoming webhook's URL)"
        if not url:
            raise InputError(f"{rule.where}: rule {rule.name!r}: chat: webhook_env {rule.chat.webhook_env} is not set "
                             "in serve's environment", hint=hint)
        if not url.startswith(("http://", "https://")):
            raise InputError(f"{rule.where}: rule {rule.name!r}: ${rule.chat.webhook_env} ({shown(url)}) is not an "
                             "http(s) URL", hint=hint)


def check(secret_file: Path | None, rules: Rules) -> None:
    """Refused (InputError) before anything is written: a rule's chat webhook unset, or the signing secret file missing
    or empty."""
    check_webhooks(rules)
    if secret_file is not None:
        slack.read_secret(secret_file)


def wire(secret_file: Path | None, public_url: str | None, rules: Rules, store: Store) -> Slack | None:
    """Approving from chat for this serve, watching `store` (None when no rule posts to chat and no signing secret
    is given); refused (InputError) before serve listens when a webhook is unset or the secret file is bad."""
    check_webhooks(rules)
    secret = slack.read_secret(secret_file) if secret_file is not None else None
    if secret is None and not any(rule.chat for rule in rules.rules):
        return None
    chat = Slack(secret, rules, store.log, store.get, public_url, started=store.clock())
    store.watchers.append(chat.watch)
    return chat
