"""container-running: is the service's container up at all."""

from __future__ import annotations

from remediate.contract.params import Param
from remediate.diagnostics import CheckType, Facts, Verdict, register
from remediate.probes.containers import container_name


@register
class ContainerRunning(CheckType):
    """The container exists and runs."""

    name = "container-running"
    params = {"container": Param(str, required=True)}

    def validate(self) -> None:
        container_name(self.p["container"], f"{self.at}: container")

    def run(self, facts: Facts) -> Verdict:
        found = facts.container(self.p["container"])
        if found is None:
            return Verdict(False, f"{self.p['container']} is missing", fixable=False)
        state = found["State"]
        if not state["Running"]:
            return Verdict(False, f"{self.p['container']} is {state['Status']}", fixable=False)
        return Verdict(True, f"{self.p['container']} is running since {state.get('StartedAt', '?')[:19]}Z")
