"""A variable never becomes code on the host, however the playbook writes its shell (against the real sshd, as root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import SshLab
from .test_trust import book, remediate

FORMS = [
    "sh -e -c 'test -e {{ dir }}/done'",
    "bash -o pipefail -c 'test -e {{ dir }}/done'",
    "env sh -c 'test -e {{ dir }}/done'",
    "/usr/bin/env bash -euc 'test -e \"{{ dir }}/done\"'",
]


@pytest.mark.parametrize("unless", FORMS)
def test_plan_never_runs_a_variable_as_code_through_unless(ssh_lab: SshLab, tmp_path: Path, unless: str) -> None:
    """plan runs unless: as root; a value with shell syntax in it stays one argument, whatever the shell's options."""
    inv = ssh_lab.inventory(tmp_path)
    pwned = tmp_path / "PWNED"
    playbook = book(tmp_path, f"name: inject\nvars: {{dir: /tmp}}\nsteps:\n  - id: clean\n    kind: command\n"
                              f"    params:\n      command: \"true\"\n      unless: \"{unless.replace(chr(34), chr(92) + chr(34))}\"\n")
    for value in (f"x; touch {pwned}", f"$(touch {pwned})", f"`touch {pwned}`"):
        done = remediate("plan", "--host", "nopw", "-i", str(inv), "-p", str(playbook), "-e", f"dir={value}")
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stdout + done.stderr
        assert not pwned.exists(), (unless, value)


def test_a_variable_in_an_interpreters_code_is_refused_before_any_connection(ssh_lab: SshLab, tmp_path: Path) -> None:
    inv = ssh_lab.inventory(tmp_path)
    logins = ssh_lab.accepted_logins()
    playbook = book(tmp_path, "name: inject\nvars: {v: hi}\nsteps:\n  - id: py\n    kind: command\n    params:\n"
                              "      command: \"true\"\n      unless: \"python3 -c 'print({{ v }})'\"\n")
    done = remediate("plan", "--host", "nopw", "-i", str(inv), "-p", str(playbook))
    assert done.returncode == 1 and f"{playbook}:" in done.stderr and "would become code" in done.stderr, done.stderr
    assert ssh_lab.accepted_logins() == logins
