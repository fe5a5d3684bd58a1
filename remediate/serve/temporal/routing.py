"""A firing routed on Temporal as the embedded intake routes it (a rule, an inventory host, the pause, then the run
limits, in its words): the pause read from Temporal, the limits counted in its visibility (visibility.runs_since) plus
what this replica itself started in the last RECENT seconds, which visibility may not show yet."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from remediate.serve.intake import Intake, Route
from remediate.serve.models import State
from remediate.serve.rules import Rule, Rules

#: How long a replica counts the incidents it started itself, beside what visibility shows (which lags by moments).
RECENT: Final = 30.0

#: (since, host, rule or None, workflow ids to leave out) -> incidents visibility counts
Count = Callable[[float, str, "str | None", Sequence[str]], int]


@dataclass(frozen=True)
class Started:
    """An incident this replica started that the limits count."""

    at: float
    workflow_id: str
    rule: str
    host: str


class Router(Intake):
    """Intake._route over Temporal. Not thread-safe on its own: the backend routes one alert at a time."""

    def __init__(self, rules: Rules, inventory: Any, paused_by: Callable[[], str | None], count: Count, *,
                 host_runs_per_hour: int, clock: Callable[[], float] = time.time) -> None:
        self.rules, self.inventory, self.paused_by, self.count = rules, inventory, paused_by, count
        self.host_runs_per_hour, self.clock = host_runs_per_hour, clock
        self.recent: list[Started] = []
        self._lock = threading.Lock()
        self._inventory = None  # Intake's cache of the parsed inventory (read again when its file changes)
        # Intake reads engine.rules, .inventory, .paused, .clock, .host_runs_per_hour and store.setting, .runs_since:
        # this object has them
        self.engine = self  # type: ignore[assignment]
        self.store = self  # type: ignore[assignment]

    @property
    def paused(self) -> bool:
        return self.paused_by() is not None

    def setting(self, key: str) -> str | None:
        return self.paused_by()

    def route(self, alert: Any) -> Route:
        return self._route(alert)

    def _limited(self, rule: Rule, host: str) -> Route | None:
        try:
            return super()._limited(rule, host)
        except ValueError as e:  # a name visibility cannot match: not counted is not let through
            return State.IGNORED, f"rate-limited: the run limits cannot be counted on Temporal: {e}", rule, host

    def runs_since(self, since: float, *, rule: str | None = None, host: str | None = None) -> int:
        """Intake._limited's count: visibility's, and what this replica started that visibility may not show yet."""
        if host is None:
            raise ValueError("the run limits count by host")
        now = self.clock()
        with self._lock:
            self.recent = [s for s in self.recent if now - s.at < RECENT]
            mine = [s.workflow_id for s in self.recent if s.host == host and s.at >= since
                    and (rule is None or s.rule == rule)]
        return self.count(since, host, rule, mine) + len(mine)

    def started(self, workflow_id: str, rule: str, host: str) -> None:
        with self._lock:
            self.recent.append(Started(self.clock(), workflow_id, rule, host))


__all__ = ["RECENT", "Router", "Started"]
