"""Slack's side of approving from chat: its request signing checked as Slack documents it (and a replayed request
refused), the interactive callback a button click sends read, and the message a pending incident is posted as.

Slack signs each request: `v0=` + hex HMAC-SHA256, under the app's signing secret, of `v0:{timestamp}:{body}`, sent as
X-Slack-Signature beside X-Slack-Request-Timestamp (https://api.slack.com/authentication/verifying-requests-from-slack).
The message is Slack's blocks, with a `text` that says it all again: Mattermost's incoming webhooks show that text
(and ignore the blocks), and Slack uses it for notifications."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from remediate import jsonin
from remediate.errors import InputError
from remediate.serve import approvals
from remediate.serve.bodies import one_line
from remediate.serve.models import State
from remediate.serve.notify import _OPENER  # a redirect is never followed: the URL's secret stays where it was sent
from remediate.serve.store import Incident

__all__ = ["ACTIONS", "MAX_SEEN", "SAID", "SECTION", "WINDOW", "Click", "Replays", "approvers", "message", "parse", "post",
           "read_secret", "signed", "verify"]

#: How far a request's timestamp may be from now, either way (Slack's documented five minutes).
WINDOW: Final = 300
#: Slack's limit on a section's text: the diff is cut to fit, saying so.
SECTION: Final = 3000
#: Signatures remembered at most (each for WINDOW seconds): past that, a callback is refused rather than forgotten.
MAX_SEEN: Final = 10_000
#: How long a refused callback, once said (history, message), is only logged when it comes again.
SAID: Final = 3600
#: The buttons' action_id, and the permission each needs.
ACTIONS: Final = ("approve", "deny")
CUT: Final = "\n… (cut to Slack's {limit} characters: the whole diff is {size} characters; see the incident's page)"


def read_secret(path: Path) -> bytes:
    """The signing secret in `path` (surrounding whitespace dropped); refused when missing or empty. Never shown."""
    try:
        secret = path.read_bytes().strip()
    except OSError as e:
        raise InputError(f"{path}: the Slack signing secret cannot be read ({e.strerror or e})",
                         hint="write the app's signing secret (Basic Information > App Credentials) there, mode 0600") from None
    if not secret:
        raise InputError(f"{path}: the Slack signing secret file is empty",
                         hint="write the app's signing secret (Basic Information > App Credentials) there, mode 0600")
    return secret


def signed(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether `signature` is Slack's v0 signature of this timestamp and body under `secret` (constant time)."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = b"v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, now: float) -> str | None:
    """Why this request is not Slack's, now; None when it is: the signature matches and its timestamp is within
    WINDOW seconds of `now`."""
    if not signed(secret, timestamp, body, signature):
        return "its signature does not match (forged, or not signed with this serve's Slack signing secret)"
    skew = now - int(timestamp)
    if abs(skew) > WINDOW:
        return (f"its timestamp is {int(abs(skew))} s {'old' if skew > 0 else 'ahead'}, more than {WINDOW} s from "
                "now (a replay, or a clock that is wrong)")
    return None


class Replays:
    """The signatures seen within the window: the same signed request a second time is refused. Bounded: past
    `most` unexpired signatures, a new one is refused too (never forgotten early, which would let it replay)."""

    def __init__(self, window: float = WINDOW, most: int = MAX_SEEN) -> None:
        self.window = window
        self.most = most
        self._seen: dict[str, float] = {}  # signature -> when it can no longer verify (its timestamp + window)
        self._lock = threading.Lock()

    def first(self, signature: str, timestamp: int, now: float) -> str | None:
        """None the first time this signature is seen (and remembered); why not, else."""
        with self._lock:
            if len(self._seen) >= self.most // 2:
                self._seen = {s: until for s, until in self._seen.items() if until >= now}
            if signature in self._seen:
                return "it was replayed: the same signed request was received before"
            if len(self._seen) >= self.most:
                return f"more than {self.most} callbacks within {int(self.window)} s: refused until some expire"
            self._seen[signature] = timestamp + self.window
            return None


@dataclass(frozen=True)
class Click:
    """A button click, from Slack's block_actions callback."""

    user: str  # Slack's user id, "U0123ABC"
    action: str  # "approve" or "deny"
    incident_id: int
    identity: str  # the plan's identity the message showed
    response_url: str | None
    channel: str | None


def _field(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def parse(body: bytes) -> Click:
    """The click in a callback's body (form-urlencoded `payload=` JSON, type block_actions); ValueError says why not."""
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=5, strict_parsing=True)
        doc = jsonin.loads(fields["payload"][0], what="the payload")
    except (UnicodeDecodeError, ValueError, KeyError, InputError) as e:
        raise ValueError(f"not a Slack interactive callback: {e}") from None
    if _field(doc, "type") != "block_actions":
        raise ValueError(f"a callback of type {one_line(str(_field(doc, 'type')), 40)!r}: only block_actions is taken")
    actions = _field(doc, "actions")
    first = actions[0] if isinstance(actions, list) and actions else None
    user, action, value = _field(doc, "user", "id"), _field(first, "action_id"), _field(first, "value")
    if not isinstance(user, str) or not user:
        raise ValueError("the callback names no user.id")
    if action not in ACTIONS or not isinstance(value, str):
        raise ValueError(f"the action {one_line(str(action), 40)!r} is not one of serve's buttons")
    number, _, identity = value.partition(":")
    if not number.isascii() or not number.isdigit() or not identity:
        raise ValueError(f"the button's value {one_line(value, 80)!r} is not INCIDENT:PLAN-IDENTITY")
    url = _field(doc, "response_url")
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        url = None
    channel = _field(doc, "channel", "id") or _field(doc, "container", "channel_id")
    return Click(one_line(user, 40), str(action), int(number), identity, url,
                 one_line(channel, 40) if isinstance(channel, str) else None)


def approvers(incident: Incident, identity: str | None, expires: float, now: float) -> list[str]:
    """Who approved the plan the incident holds, distinct, their approval not expired (approvals.held decides)."""
    kept, _ = approvals.held(incident.approvals, identity, now, expires)
    return list(dict.fromkeys(str(a.get("by")) for a in kept))


def escape(text: str) -> str:
    """Text as Slack's mrkdwn takes it literally: `<!channel>` or `<http://x|y>` in a diff stays text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _diff(diff: str, limit: int) -> str:
    """The diff escaped, in a code block of at most `limit` characters; cut at a line, saying so, when longer."""
    body = escape(diff.rstrip("\n")).replace("```", "`\u200b``") or "(no diff)"
    if len(body) + 8 <= limit:
        return f"```\n{body}\n```"
    note = CUT.format(limit=limit, size=len(diff))
    room = limit - len(note) - 8
    kept = body[:room]
    kept = kept[: kept.rfind("\n")] if "\n" in kept else kept
    return f"```\n{kept}{note}\n```"


@dataclass(frozen=True)
class View:
    """What a message shows beside the incident: approvals needed and given, the page's link, buttons, a note."""

    needed: int
    approved: Sequence[str]
    identity: str | None
    link: str | None
    buttons: bool
    note: str | None = None


def message(incident: Incident, view: View) -> dict[str, Any]:
    """The message for an incident: blocks for Slack, and `text` saying the same for Mattermost."""
    title = f"Incident {incident.id}: {incident.alertname or 'alert'} on {incident.host}"
    state = "pending approval" if incident.state == State.PENDING else incident.state.said
    count = f"{len(view.approved)} of {view.needed}"
    said = f"approvals {count}" + (f" ({', '.join(view.approved)})" if view.approved else "")
    facts = escape(f"*{state}* · rule `{incident.rule}` · host `{incident.host}` · {said}")
    diff = _diff(incident.plan_diff or "", SECTION)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": facts[:SECTION]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": diff}}]
    if view.note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(view.note)[:SECTION]}]})
    if view.link:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"<{view.link}|Open incident {incident.id} in remediate>"}]})
    if view.buttons and incident.state == State.PENDING and view.identity:
        value = f"{incident.id}:{view.identity}"
        blocks.append({"type": "actions", "block_id": f"remediate-{incident.id}", "elements": [
            {"type": "button", "action_id": "approve", "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": "deny", "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Deny"}}]})
    lines = [f"*{escape(title)}*", facts, diff, *([escape(view.note)] if view.note else []),
             *([view.link] if view.link else [])]
    return {"text": "\n".join(lines), "blocks": blocks}


def post(url: str, doc: dict[str, Any], timeout: float = 5.0) -> int:
    """POST `doc` as JSON to a Slack (or Mattermost) URL, no redirect followed: the HTTP status (HTTPError, OSError
    raised as urllib raises them)."""
    request = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "remediate-serve"})
    with _OPENER.open(request, timeout=timeout) as response:
        return int(response.status)
