"""serve's runs as a Temporal worker makes them, timed into /metrics (remediate_serve_runs and its durations) as the
embedded engine times its own: each replica counts the plans, applies and rollbacks its own worker ran."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from remediate.serve.engine import Metrics
from remediate.serve.rules import Rule
from remediate.serve.runs import Applied, LibraryRuns, Listener, Planned, RolledBack


class MeteredRuns(LibraryRuns):
    """LibraryRuns whose every plan, apply and rollback is told to `metrics` with its outcome and how long it took."""

    def __init__(self, runs: LibraryRuns, metrics: Metrics) -> None:
        super().__init__(runs.inventory, runs.factory, runs.work_dir)
        self.metrics = metrics

    def plan(self, rule: Rule, host: str, listener: Listener) -> Planned:
        began = time.monotonic()
        planned = super().plan(rule, host, listener)
        self.metrics.run(rule.playbook, "plan", planned.status, time.monotonic() - began)
        return planned

    def apply(self, rule: Rule, doc: dict[str, Any], listener: Listener, proceed: Callable[[], bool], *,
              attribution: Mapping[str, Any] | None = None) -> Applied:
        began = time.monotonic()
        applied = super().apply(rule, doc, listener, proceed, attribution=attribution)
        self.metrics.run(rule.playbook, "apply", applied.status, time.monotonic() - began)
        return applied

    def rollback(self, host: str, run_id: str, listener: Listener, proceed: Callable[[], bool], *,
                 attribution: Mapping[str, Any] | None = None) -> RolledBack:
        began = time.monotonic()
        undone = super().rollback(host, run_id, listener, proceed, attribution=attribution)
        # the embedded engine's words for a rollback's outcome; the playbook is the run's, which the call is not told
        self.metrics.run("", "rollback", "ok" if undone.status == "done" else "failed", time.monotonic() - began)
        return undone


__all__ = ["MeteredRuns"]
