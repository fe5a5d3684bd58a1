"""Bounded reads against a real sshd: a command that prints more than the bound fails with a clear error, through
the agent and in a session of its own, with and without sudo, and the connection goes on to the next command; an
SMTP greeting without end is cut at the dialogue's deadline, over port forwarding and from the host's shell."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from remediate.errors import CommandError
from remediate.inputs import inventory
from remediate.probes import dialogue
from remediate.transport.ssh import connect
from tests.unit.test_bounded_reads import Listener, slow_banner

from .conftest import SshLab

BOUND = 1 << 20  # lowered for the test: 64 MiB printed is 64 times the bound
FLOOD = "head -c 67108864 /dev/zero"
LISTENER = "127.0.0.25"  # an SMTP listener the host reaches (the host is this machine)


def _gone(pattern: str) -> bool:
    """Whether no process matches pattern within 10 s (the host's command stops once its output is closed)."""
    end = time.monotonic() + 10
    while subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).returncode == 0:
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("agent", [True, False], ids=["agent", "session"])
@pytest.mark.parametrize("name", ["plain", "pw"], ids=["login-user", "sudo"])
def test_a_command_printing_past_the_bound_fails_clearly_and_the_connection_goes_on(
        ssh_lab: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agent: bool, name: str) -> None:
    if not agent:
        monkeypatch.setenv("REMEDIATE_NO_AGENT", "1")
    t = connect(inventory.load(ssh_lab.inventory(tmp_path)).hosts[name], password_source=lambda _: ssh_lab.password)
    t.max_output = BOUND
    try:
        for stream, redirect in (("stdout", ""), ("stderr", " >&2")):
            with pytest.raises(CommandError) as e:
                t.run(["sh", "-c", FLOOD + redirect])
            message = str(e.value)
            assert f"printed more than {BOUND} bytes on {stream}" in message, message
            assert f"output cut at {BOUND} bytes and the command counts as failed" in message
            if agent:
                # the agent stopped the command on the host at one byte past its own cap: the total is not known
                assert "bytes in all" not in message and "the remote agent was ended" in message
            else:
                assert "its session was closed" in message
            assert t.run(["echo", "still here"]).stdout == "still here\n"
            assert _gone(FLOOD), "the command stopped once remediate stopped reading it"
        assert t.agent_off == (None if agent else "REMEDIATE_NO_AGENT is set")
        assert len(t.run(["head", "-c", str(BOUND), "/dev/zero"]).stdout) == BOUND  # at the bound: read whole
    finally:
        t.close()


@pytest.mark.parametrize("forwarding", [None, False], ids=["forwarded", "from-the-host"])
def test_an_smtp_greeting_without_end_is_cut_at_the_deadline_over_ssh(ssh_lab: SshLab, tmp_path: Path,
                                                                      forwarding: bool | None) -> None:
    listener = Listener(slow_banner, LISTENER)
    t = connect(inventory.load(ssh_lab.inventory(tmp_path)).hosts["plain"])
    t.forwarding = forwarding
    try:
        exchange = dialogue.talk(t, LISTENER, listener.port, ("QUIT",), timeout=30, deadline=2)
        assert exchange.status == "broken", exchange
        assert exchange.detail.startswith("cut short: the greeting: the dialogue's 2 s were up after "), exchange
        assert "beginning '220-flood.example still greeting, line 1'" in exchange.detail
        assert ("with bash" in exchange.route) if forwarding is False else exchange.route == dialogue.FORWARDED
        assert t.run(["echo", "still here"]).stdout == "still here\n"
    finally:
        t.close()
        listener.close()


@pytest.mark.parametrize("agent", [True, False], ids=["agent", "session"])
def test_a_command_that_trickles_its_output_ends_at_its_timeout(ssh_lab: SshLab, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, agent: bool) -> None:
    """The timeout is one deadline for the whole command, not one per read: a line every 0.2 s never stopped it."""
    if not agent:
        monkeypatch.setenv("REMEDIATE_NO_AGENT", "1")
    t = connect(inventory.load(ssh_lab.inventory(tmp_path)).hosts["plain"])
    trickle = "i=0; while [ $i -lt 150 ]; do echo trickle; sleep 0.2; i=$((i+1)); done"  # 30 s, a line every 0.2 s
    try:
        with pytest.raises(CommandError, match="did not finish within 2 s"):  # before, it ran its 30 s and passed
            t.run(["sh", "-c", trickle], timeout=2)
        assert t.run(["echo", "still here"]).stdout == "still here\n"
    finally:
        t.close()
