"""Read-only diagnosis: run the `diagnose:` checks a playbook declares (log signatures, Postfix settings, probes,
IaC drift) on one host, and say which playbook fixes each finding. Nothing here writes anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from remediate.diagnostics import CheckType, Facts, Verdict
from remediate.diagnostics.logs import signatures_of
from remediate.diagnostics.logscan import Signature as Signature  # re-exported: what a diagnosis holds
from remediate.diagnostics.logscan import counted as counted  # re-exported for render
from remediate.diagnostics.postfix import Probe as Probe
from remediate.mail.compose import PartlyElsewhere
from remediate.records import record
from remediate.transport import Transport


@record(frozen=True)
class Check:
    """One named check with its verdict and the line that proves it."""

    name: str
    ok: bool | None  # None: could not be decided (and why is in evidence)
    evidence: str
    fix: str | None = None
    playbook: str = ""
    #: Variables the fix should be given (found on the host, e.g. a rejected client); shown in the next command.
    suggest: Mapping[str, str] = field(default_factory=dict)


@record
class Found:
    """What one playbook's checks found on one host."""

    checks: list[Check]
    signatures: list[Signature]
    probes: list[Probe]


def run(checks: list[CheckType], transport: Transport, local: Transport | None = None,
        facts: Facts | None = None) -> Found:
    """Every check in order, sharing what they read (one log scan per container, postconf asked once per key)."""
    facts = facts or Facts(transport, local)
    for check in checks:
        check.prepare(facts)
    results = []
    probes_before = len(facts.probes)
    for check in checks:
        try:
            verdict = check.run(facts)
        except PartlyElsewhere as e:  # a service assembled partly elsewhere (extends:): this check is undecided,
            verdict = Verdict(None, f"cannot be decided: {e.message}")  # the others still answer; any other input
            # error (a compose_dir or service that does not exist) stops diagnose, as a mistake in the inventory
        if verdict is None:
            continue
        fix = check.spec.fix if verdict.ok is False and verdict.fixable else None
        results.append(Check(check.spec.id, verdict.ok, verdict.evidence, fix, check.spec.playbook,
                             verdict.suggest if fix else {}))
    return Found(results, signatures_of(facts, checks), facts.probes[probes_before:])
