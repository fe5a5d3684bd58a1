"""A pytest plug-in that proves a runbook against the real lab: a host, a fault, then the whole loop asserted.

Installed with `remediate[test]`, registered under pytest's `pytest11` entry point: a test asks for the
`remediate_lab` fixture and needs no import. The names below are for type hints and for faults.

    def test_relay_access(remediate_lab):
        host = remediate_lab.host("ec2-mx-relay")
        host.inject("relay-access-denied")
        run = remediate_lab.runbook("relay-access", host, vars={"client_address": "127.0.0.25", ...})
        run.diagnose_finds_it()
        run.plan_shows_change()
        run.apply_fixes()
        run.rerun_is_noop()
        run.rollback_is_byte_identical()
        run.forced_failure_rolls_back(step="mynetworks")

It runs the real CLI (`remediate ... --json -i <the lab's inventory>`) against the lab's real sshd and compose
projects; every assertion that fails says the command, its exit code and what it printed. docs/writing-runbooks.md
("Prove it with the test kit") walks through it.
"""

from __future__ import annotations

from remediate.testkit.faults import Edit, Fault, Write, named_faults
from remediate.testkit.host import LabHost
from remediate.testkit.lab import Lab
from remediate.testkit.result import Result
from remediate.testkit.run import Run

__all__ = ["Edit", "Fault", "Lab", "LabHost", "Result", "Run", "Write", "named_faults"]
