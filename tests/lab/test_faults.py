"""The fault matrix of docs/reliability.md: each fault during apply, what remediate says, and that the host
ends with the compose file either original or fully fixed (never partial) and converges afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import labctl

APPLY = ["remediate", "apply", "--yes", "--json", "--host", "ec2-mx", "-i", str(labctl.INVENTORY)]
#: The processes apply_with started, the newest last (a fault may signal the run itself).
RUNNING: list[subprocess.Popen[str]] = []


def whole(content: bytes) -> bool:
    return content in (labctl.pristine_compose(), labctl.fixed_compose())


def apply_with(fault: Callable[[], None], when: Callable[[dict[str, str]], bool], *extra: str
               ) -> tuple[int, str, dict[str, str]]:
    """Run apply and cause `fault` as soon as the run's step states satisfy `when`: checked at each event it
    prints, with the process stopped (SIGSTOP) meanwhile, so that a step of a few milliseconds cannot slip past
    the check. A step whose step_started was just printed counts as `applying`. RUNNING[-1] is the process."""
    proc = subprocess.Popen([*APPLY, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    RUNNING.append(proc)
    assert proc.stdout is not None
    lines: list[str] = []
    states: dict[str, str] = {}
    fired = False
    watchdog = threading.Timer(300, proc.kill)  # a run that never ends fails the test instead of hanging it
    watchdog.start()
    for line in proc.stdout:
        lines.append(line)
        if fired:
            continue
        proc.send_signal(signal.SIGSTOP)
        try:
            states = labctl.step_states()
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "step_started":
                states[event["step"]] = "applying"
            if when(states):
                fault()
                fired = True
        finally:
            proc.send_signal(signal.SIGCONT)
    proc.wait(timeout=300)
    watchdog.cancel()
    return proc.returncode, "".join(lines), states


def sshd_sessions() -> list[int]:
    """Every process of ec2-mx's sshd connections: the per-connection monitors under its listener and the
    unprivileged processes under them, which hold the connection's socket (killing only the monitors leaves an
    established connection's open channels working)."""
    listener = (labctl.KEYS / "ec2-mx" / "sshd.pid").read_text().strip()
    found: list[int] = []
    parents = [listener]
    while parents:
        children = subprocess.run(["pgrep", "-P", ",".join(parents)], capture_output=True, text=True).stdout.split()
        sshds = [c for c in children if _comm(c) == "sshd"]
        found += [int(c) for c in sshds]
        parents = sshds
    return found


def _comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""  # gone meanwhile


def drop_ssh() -> None:
    for pid in sshd_sessions():
        os.kill(pid, signal.SIGKILL)


STEPS = ["backup", "relay-transport", "relay-domains", "restart", "effective-config", "test-mail"]


@pytest.mark.parametrize("step", STEPS)
def test_ssh_connection_dropped_during_each_step(broken_lab: None, step: str) -> None:
    previous = STEPS[STEPS.index(step) - 1] if step != STEPS[0] else None

    def reached(s: dict[str, str]) -> bool:  # the step has begun, or the one before it has just ended
        return s.get(step) == "applying" or (previous is not None and s.get(previous) in ("verified", "checked"))

    code, out, states = apply_with(drop_ssh, reached)
    assert reached(states), f"never reached {step}: {out}"
    assert code in (1, 4), out
    assert "SSH connection was lost" in out or "connection" in out.lower(), out
    assert whole(labctl.COMPOSE_FILE.read_bytes())
    if code == 1:  # reconnected and rolled back
        assert "reconnected to roll back" in out
        assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    labctl.assert_converges()


def test_compose_up_with_an_image_not_on_the_host_changes_nothing(broken_lab: None) -> None:
    """The plan binds the image `up -d` will run: one the host lacks fails the plan (`up -d` would pull it after
    `down`, and without the registry the service would stay down), before any step changes anything."""
    original = labctl.COMPOSE_FILE.read_text().replace("remediate-lab/postfix:latest", "127.0.0.19:9/remediate-lab/postfix:gone")
    labctl.COMPOSE_FILE.write_text(original)
    before = labctl.container()
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    assert code == 1, out
    assert "image 127.0.0.19:9/remediate-lab/postfix:gone of service 'postfix' is not on ec2-mx; `up -d` would pull " \
           "it after `down`, so nothing was changed" in out, out
    assert not [e for e in events if e["event"] in ("step_started", "step_applied")], out
    assert labctl.COMPOSE_FILE.read_text() == original
    assert not list(labctl.COMPOSE_FILE.parent.glob("docker-compose.yml.backup-*"))
    assert labctl.container() == before


def test_postfix_not_coming_up_is_rolled_back(broken_lab: None, tmp_path: Path) -> None:
    book = tmp_path / "breaks-postfix.yml"
    book.write_text("""\
name: breaks-postfix
steps:
  - id: bad-listener
    kind: relay-transport
    params: {path: /opt/mailserver/docker-compose.yml, service: postfix, transport_key: POSTFIX_inet_interfaces,
             lmtp_host: 192.0.2.1, container: mailserver-postfix}
  - id: restart
    kind: compose-restart
    params: {dir: /opt/mailserver, service: postfix, container: mailserver-postfix, smtp_address: 127.0.0.10,
             timeout: 30}
""")
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-p", str(book))
    assert code == 1, out
    failed = next(e for e in events if e["event"] == "step_failed")
    assert failed["step"] == "restart" and "mailserver-postfix is" in failed["error"], failed
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    labctl.assert_original_running_config()


def test_verification_timing_out_is_rolled_back(broken_lab: None) -> None:
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-e", "smtp_address=127.0.0.19",
                                         "-e", "restart_timeout=4")
    assert code == 1, out
    failed = next(e for e in events if e["event"] == "step_failed")
    error = failed["error"]
    assert "did not come up and answer SMTP on 127.0.0.19:25 within 4 s" in error
    # The timeout explains itself: what answered, through which route, where the address came from, the last log.
    assert "connection refused" in error and "over SSH port forwarding" in error
    assert "the address came from smtp_address is set" in error and "last log line" in error
    assert "hint: if the service listens elsewhere, set smtp_address" in error
    restart = next(e for e in events if e["event"] == "step_rolled_back" and e["step"] == "restart")
    assert "readiness not confirmed" in restart["message"]  # reported, within the rollback's short wait
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    labctl.assert_original_running_config()
    labctl.assert_converges()


@pytest.fixture
def small_mount() -> Iterator[Callable[[str], None]]:
    """Put /opt/mailserver on a tiny tmpfs holding the compose file; `make(mode)` fills it or makes it read-only."""
    folder = "/opt/mailserver"
    saved = labctl.COMPOSE_FILE.read_bytes()

    def make(mode: str) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=755", "tmpfs", folder], check=True)
        labctl.COMPOSE_FILE.write_bytes(saved)
        if mode == "full":
            with open(f"{folder}/filler", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
                except OSError:
                    pass
        else:
            subprocess.run(["mount", "-o", "remount,ro", folder], check=True)

    yield make
    subprocess.run(["umount", folder], capture_output=True)
    labctl.reset()


@pytest.mark.parametrize(("mode", "words"), [("full", "No space left on device"), ("readonly", "Read-only file system")])
def test_no_room_for_the_backup_changes_nothing(broken_lab: None, small_mount: Callable[[str], None],
                                                mode: str, words: str) -> None:
    small_mount(mode)
    before = labctl.container()
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    assert code == 1, out
    assert words in out and "nothing was changed" in out
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    assert labctl.container() == before
    assert labctl.journals()[0]["outcome"] == "failed"
    assert not Path("/var/lib/remediate/lock").exists(), "the lock must be released"


def test_permission_denied_writing_the_compose_file(broken_lab: None) -> None:
    subprocess.run(["chattr", "+i", str(labctl.COMPOSE_FILE)], check=True)
    try:
        code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    finally:
        subprocess.run(["chattr", "-i", str(labctl.COMPOSE_FILE)], check=True)
    assert code == 1, out
    failed = next(e for e in events if e["event"] == "step_failed")
    assert failed["step"] == "relay-transport" and "Operation not permitted" in failed["error"]
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    labctl.assert_converges()


@pytest.mark.parametrize(("signum", "words"), [(signal.SIGINT, "interrupted (Ctrl-C)"),
                                               (signal.SIGTERM, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_mid_apply_rolls_back(broken_lab: None, signum: int, words: str) -> None:
    """The signal goes as the restart starts (after relay-domains), sent while the run is stopped at that event: a
    busy machine that delays this test can no longer let the run finish first (it once did, with a 5 ms poll of
    the journal, and the signal found the run ended)."""
    code, out, _ = apply_with(lambda: RUNNING[-1].send_signal(signum), lambda states: states.get("restart") == "applying")
    assert code == 1, out
    assert words in out and "rolled back" in out
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    labctl.assert_original_running_config()
    labctl.assert_converges()


def test_second_apply_refuses_while_the_first_runs(broken_lab: None) -> None:
    first = subprocess.Popen(APPLY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and labctl.step_states().get("backup") not in ("verified",):
        time.sleep(0.005)
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    first_out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, first_out
    assert code == 1, out
    assert "another remediate run holds /var/lib/remediate/lock" in out and "since" in out


def test_stale_lock_after_sigkill_is_reported_then_rollback_takes_over(broken_lab: None) -> None:
    proc = subprocess.Popen(APPLY, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and labctl.step_states().get("relay-domains") != "verified":
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    code, _, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx")
    assert code == 1 and "stale lock" in out and "--break-lock" in out, out
    code, _, out = labctl.remediate("rollback", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    assert labctl.COMPOSE_FILE.read_bytes() == labctl.pristine_compose()
    labctl.assert_converges()
