"""Outgoing webhooks: every incident outcome POSTed as JSON, with bounded retries, never holding up a run.

A redirect is not followed (it would carry the Authorization header, and the outcome, to another origin): a 3xx
is a failure like a 4xx. The URL is itself the secret of Slack-style hooks: the history shows scheme://host/… only."""

from __future__ import annotations

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

from remediate.serve.rules import Notify, shown

LOG = logging.getLogger(__name__)

ATTEMPTS: Final = 3


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Every 3xx answered as it is, an HTTPError: never a second request elsewhere."""

    def redirect_request(self, *args: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


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

    def _post(self, incident_id: int, target: Notify, body: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "remediate-serve"}
        token = os.environ.get(target.token_env) if target.token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode()
        where = shown(target.url)
        try:
            for attempt in Retrying(stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=0.5, max=5),
                                    retry=retry_if_exception(_worth_retrying), reraise=True):
                with attempt:
                    request = urllib.request.Request(target.url, data=data, headers=headers, method="POST")
                    with _OPENER.open(request, timeout=self.timeout) as response:
                        status = response.status
            self.log(incident_id, "notified", f"{where}: HTTP {status}")
        except urllib.error.HTTPError as e:
            moved = " (a redirect: not followed)" if 300 <= e.code < 400 else ""
            self.log(incident_id, "notify failed", f"{where}: HTTP {e.code}{moved}")
        except OSError as e:
            self.log(incident_id, "notify failed", f"{where}: {e} (after {ATTEMPTS} attempts)")
        except Exception as e:  # a bug, or a URL urllib cannot take: logged, noted, and the next outcome is sent
            LOG.exception("incident %d: notifying %s failed", incident_id, where, extra={"incident": incident_id})
            self.log(incident_id, "notify failed", f"{where}: {type(e).__name__} (see serve's log)")
