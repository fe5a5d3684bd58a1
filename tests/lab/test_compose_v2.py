"""smtp-to-lmtp on ec2-mx-v2, a host with docker compose v2 only: upstream's CLI plugin, no docker-compose on its
user's PATH or on sudo's secure_path, and a compose file that docker-compose 1.x cannot read (a top-level `name:`).
diagnose, plan, apply with the test mail, rerun as a no-op, rollback and an automatic rollback, each shown to run
`docker compose` (the -v command events) and never docker-compose. Last, on ec2-mx: compose v2 that only the login
user has is not the compose that sudo runs (a known product bug, marked xfail strict until it is fixed)."""

from __future__ import annotations

import difflib
import pwd
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediate.inputs import inventory
from remediate.probes.containers import compose_command
from remediate.transport.ssh import connect

from . import labctl

HOST = "ec2-mx-v2"
ADDRESS = "127.0.0.27"  # lab/lib.sh's V2_ADDR
DIR = Path("/opt/mailserver-v2")
COMPOSE = DIR / "docker-compose.yml"
PRISTINE = labctl.LAB / "hosts" / HOST / "docker-compose.yml"
CONTAINER = "mailserver-postfix-v2"
VERSION = "2.40.3"  # lab/lib.sh's COMPOSE_V2_VERSION
BASE = f"docker compose --project-directory {DIR} -f {COMPOSE}"


@pytest.fixture(scope="module")
def v2_up(lab_up: None) -> None:
    """ec2-mx-v2's sshd and compose plugin, which lab/up makes; never skipped: without them the test fails."""
    try:
        socket.create_connection((ADDRESS, 2222), timeout=2).close()
    except OSError as e:
        pytest.fail(f"ec2-mx-v2's sshd is not listening on {ADDRESS}:2222 ({e}); run `bash lab/up` as root")
    if not (labctl.V2_DOCKER_CONFIG / "cli-plugins" / "docker-compose").exists():
        pytest.fail(f"no compose v2 plugin in {labctl.V2_DOCKER_CONFIG}/cli-plugins; run `bash lab/up` as root")


@pytest.fixture
def broken_v2(broken_lab: None, v2_up: None) -> None:
    """The lab reset (lab/reset leaves ec2-mx-v2's project stopped), then ec2-mx-v2's Postfix up, bouncing."""
    labctl.compose_v2("up", "-d", directory=DIR)
    labctl.wait_for(CONTAINER, "Starting: postfix start-fg")
    labctl.wait_listening(ADDRESS, 25)


def run(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    return labctl.remediate(*args, "--host", HOST, "-v")


def planned(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["step"]: e for e in events if e["event"] == "step_planned"}


def compose_run(events: list[dict[str, Any]]) -> list[str]:
    """The compose commands remediate ran (from -v), none of them docker-compose."""
    commands = [e["command"] for e in events if e["event"] == "command"]
    assert not [c for c in commands if "docker-compose " in c], commands
    return [c[len(BASE) + 1:] for c in commands if c.startswith(BASE)]


def bounces() -> bool:
    return labctl.BOUNCE in labctl.status_of(labctl.send_mail(container=CONTAINER), container=CONTAINER)


def assert_original_running_config() -> None:
    labctl.wait_for(CONTAINER, "Starting: postfix start-fg")
    assert labctl.postconf("relayhost", "relay_transport", "relay_domains", container=CONTAINER) == {
        "relayhost": "[127.0.0.11]:2525", "relay_transport": "relay", "relay_domains": "kuma8088.com, m8088.com"}


def test_the_host_has_compose_v2_only(v2_up: None) -> None:
    v1 = labctl.sh("docker-compose", "-f", str(PRISTINE), "config", "-q", check=False)
    assert v1.returncode != 0 and "'name' does not match" in v1.stderr, v1
    labctl.compose_v2("config", "-q", directory=PRISTINE.parent)

    hosts = inventory.load(labctl.INVENTORY).hosts
    t = connect(hosts[HOST])
    try:
        for sudo in (False, True):  # the login user's PATH, and sudo's secure_path (remediate runs both)
            seen = t.shell('docker compose version --short; command -v docker-compose || echo none', sudo=sudo)
            assert seen.stdout.split() == [VERSION, "none"], (sudo, seen.output)
        assert compose_command(t) == ["docker", "compose"]
    finally:
        t.close()
    t = connect(hosts["ec2-mx"])
    try:
        assert compose_command(t) == ["docker-compose"]  # the plugin is ec2-mx-v2's alone: the other hosts keep v1
    finally:
        t.close()


def test_diagnose_and_plan_find_the_relay_problem_and_change_nothing(broken_v2: None) -> None:
    assert bounces()
    before = labctl.sha256(COMPOSE), labctl.container(CONTAINER).started_at

    code, events, out = run("diagnose")
    assert code == 3, out
    checks = {e["check"]: e for e in events if e["event"] == "check"}
    assert checks["log-no-protocol-mismatch"]["ok"] is False
    assert "1 message(s) bounced" in checks["log-no-protocol-mismatch"]["evidence"]
    assert checks["relayhost-unused"]["ok"] is False and "[127.0.0.11]:2525" in checks["relayhost-unused"]["evidence"]
    assert "protocol mismatch proven (SMTP client, LMTP server)" in checks["relay-target-protocol"]["evidence"]
    assert checks["relay-domains-clean"]["ok"] is False
    assert events[-1]["event"] == "diagnosis" and events[-1]["fixes"] == ["smtp-to-lmtp"]

    code, events, out = run("plan")
    assert code == 2, out
    steps = planned(events)
    assert list(steps) == ["backup", "relay-transport", "relay-domains", "restart", "effective-config", "test-mail",
                           "iac"]
    assert "-      - RELAYHOST=[127.0.0.11]:2525\n+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525\n" \
        in steps["relay-transport"]["diffs"][0]["diff"]
    assert "+      - POSTFIX_relay_domains=kuma8088.com\n" in steps["relay-domains"]["diffs"][0]["diff"]
    assert steps["restart"]["commands"] == [f"{BASE} config -q", f"{BASE} down", f"{BASE} up -d"]
    assert f"SMTP on {ADDRESS}:25 (network_mode: host and POSTFIX_inet_interfaces={ADDRESS})" \
        in steps["restart"]["reason"]
    assert (labctl.sha256(COMPOSE), labctl.container(CONTAINER).started_at) == before

    # An interpolated RELAYHOST is cross-checked with the host's own compose: v2's `config --format json`.
    COMPOSE.write_text(COMPOSE.read_text().replace("RELAYHOST=[127.0.0.11]", "RELAYHOST=[${MAILBOX_HOST}]"))
    (DIR / ".env").write_text("MAILBOX_HOST=127.0.0.11\n")
    code, events, out = run("plan", "--steps", "relay-transport")
    assert code == 2, out
    assert "the host's own `compose config` reads RELAYHOST the same" in planned(events)["relay-transport"]["reason"]
    assert compose_run(events) == ["config --format json"]


def test_apply_delivers_rerun_is_a_noop_rollback_restores_bytes_and_bounce(broken_v2: None) -> None:
    code, events, out = run("apply", "--yes")
    assert code == 0, out
    assert compose_run(events) == ["config -q", "down", "up -d"]
    verified = {e["step"]: e["message"] for e in events if e["event"] == "step_verified"}
    assert f"{ADDRESS}:25 says 220" in verified["restart"]
    assert "Saved" in verified["test-mail"] and "saved mail to INBOX" in verified["test-mail"]
    diff = difflib.unified_diff(PRISTINE.read_text().splitlines(), COMPOSE.read_text().splitlines(), lineterm="", n=0)
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert changed == ["-      - RELAYHOST=[127.0.0.11]:2525",
                       "-      - POSTFIX_relay_domains=kuma8088.com, m8088.com",
                       "+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525",
                       "+      - POSTFIX_relay_domains=kuma8088.com"]
    assert "Saved" in labctl.status_of(labctl.send_mail(container=CONTAINER), container=CONTAINER)

    fixed = labctl.sha256(COMPOSE), labctl.container(CONTAINER).started_at
    code, events, out = run("apply", "--yes")
    assert code == 0, out
    assert all(s["status"] == "ok" and s["reason"] for s in planned(events).values()), out
    assert not [e for e in events if e["event"] in ("step_applied", "step_verified")]
    assert (labctl.sha256(COMPOSE), labctl.container(CONTAINER).started_at) == fixed

    code, events, out = run("rollback", "--yes")
    assert code == 0, out
    assert compose_run(events) == ["config -q", "down", "up -d"]
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    assert_original_running_config()
    assert bounces()


def test_a_failed_test_mail_rolls_back_by_itself(broken_v2: None) -> None:
    code, events, out = run("apply", "--yes", "-e", "lmtp_port=2526")
    assert code == 1, out
    failed = next(e for e in events if e["event"] == "step_failed")
    assert failed["step"] == "test-mail" and "status=deferred" in failed["error"] and "2526" in failed["error"]
    rolled = [e["step"] for e in events if e["event"] == "step_rolled_back"]
    assert rolled == ["test-mail", "relay-domains", "relay-transport", "backup", "restart"]
    assert compose_run(events) == ["config -q", "down", "up -d"] * 2  # the apply's restart, then its undo
    assert COMPOSE.read_bytes() == PRISTINE.read_bytes()
    assert_original_running_config()


@pytest.fixture
def v2_for_ops_alone(broken_lab: None, v2_up: None) -> Iterator[None]:
    """ec2-mx with compose v2 installed for its login user alone, as Docker's manual install for one user does it
    ($HOME/.docker/cli-plugins): ops has `docker compose`, while root, as whom sudo runs remediate's commands, has
    only docker-compose (v1)."""
    docker = Path(pwd.getpwnam("ops").pw_dir) / ".docker"
    (docker / "cli-plugins").mkdir(parents=True)
    try:
        plugin = labctl.V2_DOCKER_CONFIG / "cli-plugins" / "docker-compose"
        (docker / "cli-plugins" / "docker-compose").symlink_to(plugin)
        t = connect(inventory.load(labctl.INVENTORY).hosts["ec2-mx"])
        try:
            seen = (t.run(["docker", "compose", "version", "--short"], sudo=False).stdout.strip(),
                    t.run(["docker", "compose", "version"]).ok, t.run(["docker-compose", "version"]).ok)
        finally:
            t.close()
        if seen != (VERSION, False, True):
            pytest.fail(f"ec2-mx should have compose v2 for ops alone and v1 through sudo; (ops's v2, root's v2, "
                        f"root's v1) are {seen}")
        yield
    finally:
        shutil.rmtree(docker)


def test_a_compose_the_login_user_alone_has_is_not_the_one_run_through_sudo(v2_for_ops_alone: None) -> None:
    code, events, out = labctl.remediate("apply", "--yes", "--host", "ec2-mx", "-v")
    assert code == 0, out  # was: "restart failed: ... is not a valid compose file: unknown flag: --project-directory"
    assert "Saved" in {e["step"]: e["message"] for e in events if e["event"] == "step_verified"}["test-mail"]
