"""Outgoing webhooks: every incident outcome POSTed as JSON, with bounded retries, never holding up a run."""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from typing import Any, Callable

from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from .rules import Notify

ATTEMPTS = 3


class Notifier:
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
        try:
            for attempt in Retrying(stop=stop_after_attempt(ATTEMPTS), wait=wait_exponential(multiplier=0.5, max=5),
                                    retry=retry_if_exception_type(OSError), reraise=True):
                with attempt:
                    request = urllib.request.Request(target.url, data=data, headers=headers, method="POST")
                    with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only)
                        status = response.status
            self.log(incident_id, "notified", f"{target.url}: HTTP {status}")
        except urllib.error.HTTPError as e:
            self.log(incident_id, "notify failed", f"{target.url}: HTTP {e.code}")
        except OSError as e:
            self.log(incident_id, "notify failed", f"{target.url}: {e} (after {ATTEMPTS} attempts)")
