"""Prove something by a container's log: lines that must not appear (new rejects), lines that must (a success)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from remediate.contract import validate
from remediate.contract.plan import Applied, Plan
from remediate.errors import InputError, StepError
from remediate.kinds import Param, Step, register
from remediate.probes.containers import container_name, inspect, logs
from remediate.probes.waiting import NotYet, wait

if TYPE_CHECKING:
    from remediate.contract.host import StepContext as Context


@register
class LogCheck(Step):
    """Check a container's log since it started: no line matches `absent`, and a line matches each of `present`."""

    kind = "log-check"
    proves_only = True
    params = {
        "container": Param(str, required=True),
        "absent": Param(list, default=[], help="regular expressions no log line may match"),
        "present": Param(list, default=[], help="regular expressions a log line must match (each waited for)"),
        "timeout": Param(int, default=30, help="seconds to wait for the present: lines"),
    }

    def validate(self) -> None:
        at = f"{self.spec.where}: step {self.id!r}"
        container_name(self.p["container"], f"{at}: container")
        if not self.p["absent"] and not self.p["present"]:
            raise InputError(f"{at}: log-check needs absent:, present: or both")
        self.patterns: dict[str, list[re.Pattern[str]]] = {
            name: [validate.pattern(item, f"{at}: {name}") for item in self.p[name]] for name in ("absent", "present")}

    def plan(self, ctx: Context) -> Plan:
        proof = tuple([*(f"no line of {self.p['container']}'s log matches '{p.pattern}'" for p in self.patterns["absent"]),
                       *(f"a line of {self.p['container']}'s log matches '{p.pattern}'" for p in self.patterns["present"])])
        now = self._absent_now(ctx) if inspect(ctx.transport(self.target), self.p["container"]) else []
        seen = f"; now {len(now)} line(s) match, the last: {now[-1][:160]}" if now else ""
        earlier = ctx.changed_dependencies(self.spec)
        if earlier:
            return self.planned(f"check {self.p['container']}'s log after {', '.join(earlier)}{seen}", checks=proof)
        return self.planned(f"check {self.p['container']}'s log{seen}", checks=proof)

    def _absent_now(self, ctx: Context) -> list[str]:
        lines = logs(ctx.transport(self.target), self.p["container"])
        return [line for line in lines if any(p.search(line) for p in self.patterns["absent"])]

    def apply(self, ctx: Context, plan: Plan) -> None:
        """Nothing to change: verify reads the log."""

    def verify(self, ctx: Context, plan: Plan, applied: Applied) -> str:
        found = []
        for pattern in self.patterns["present"]:
            def seen(pattern: re.Pattern[str] = pattern) -> str:
                for line in logs(ctx.transport(self.target), self.p["container"]):
                    if pattern.search(line):
                        return line
                raise NotYet(f"no line of {self.p['container']}'s log matches {pattern.pattern!r}")
            found.append(wait(self.p["timeout"], f"{pattern.pattern!r} never appeared in {self.p['container']}'s log", seen))
        bad = self._absent_now(ctx)
        if bad:
            raise StepError(f"{len(bad)} line(s) of {self.p['container']}'s log match what must not appear; "
                            f"the last: {bad[-1][:300]}")
        absent = ", ".join(f"'{p.pattern}'" for p in self.patterns["absent"])
        return "; ".join([*(f"seen: {line[:160]}" for line in found),
                          *([f"no line matches {absent} since {self.p['container']} started"] if absent else [])])
