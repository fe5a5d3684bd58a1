"""What happened on one host: the record every command returns, and the exit code derives from."""

from __future__ import annotations

from dataclasses import dataclass, field

from remediate.contract.plan import Plan


@dataclass
class Outcome:
    """What happened on one host; the exit code is derived from these."""

    host: str
    status: str
    exit_code: int
    message: str = ""
    run_id: str | None = None
    plans: list[Plan] = field(default_factory=list)
