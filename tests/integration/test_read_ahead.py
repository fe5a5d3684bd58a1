"""A plan asks the host, in one round trip, for what its steps will read there (Step.reads_ahead): against a real
sshd, through the agent and without it, the plan is the one the steps make reading each file when they need it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import SshLab

COMPOSE = ("services:\n  postfix:\n    image: boky/postfix\n    environment:\n"
           "      - ALLOWED_SENDER_DOMAINS=kuma8088.com\n      - RELAYHOST=[127.0.0.11]:2525\n"
           "      - POSTFIX_relay_domains=kuma8088.com, m8088.com\n")
FIXED = COMPOSE.replace("RELAYHOST=[127.0.0.11]:2525", "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525") \
    .replace("kuma8088.com, m8088.com", "kuma8088.com")


def playbook(tmp_path: Path, folder: Path) -> Path:
    path = tmp_path / "book.yml"
    path.write_text(
        "name: read-ahead\nsteps:\n"
        f"  - id: backup\n    kind: backup\n    when: changed(relay, domains)\n    params: {{path: {folder}/docker-compose.yml}}\n"
        f"  - id: relay\n    kind: compose-env\n    params:\n      path: {folder}/docker-compose.yml\n"
        "      service: postfix\n      rename: {RELAYHOST: POSTFIX_relay_transport}\n"
        "      set: {POSTFIX_relay_transport: \"lmtp:[127.0.0.11]:2525\"}\n"
        f"  - id: domains\n    kind: compose-env\n    params:\n      path: {folder}/docker-compose.yml\n"
        "      service: postfix\n      list-remove: {POSTFIX_relay_domains: [m8088.com]}\n")
    return path


def remediate(*args: str, agent: bool, password: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REMEDIATE_NO_AGENT"}
    env["REMEDIATE_BECOME_PASSWORD"] = password
    if not agent:
        env["REMEDIATE_NO_AGENT"] = "1"
    return subprocess.run(["remediate", *args], capture_output=True, text=True, env=env, check=False, timeout=120)


def mx(tmp_path: Path) -> tuple[Path, Path]:
    """The compose project: its folder and its compose file, with a .env beside it."""
    folder = tmp_path / "mx"
    folder.mkdir()
    compose = folder / "docker-compose.yml"
    compose.write_text(COMPOSE)
    (folder / ".env").write_text("TZ=UTC\n")
    return folder, compose


#: sudo without a password (nopw); sudo that asks for one except for sh (shpw, as hardened hosts allow a few
#: commands); sudo that always asks (pw). Each with the agent, and with a session per command.
WAYS = [(host, agent) for host in ("nopw", "shpw", "pw") for agent in (True, False)]


@pytest.mark.parametrize("host,agent", WAYS)
def test_a_plan_asks_ahead_in_one_round_trip_and_plans_what_the_steps_would(ssh_lab: SshLab, tmp_path: Path,
                                                                             host: str, agent: bool) -> None:
    folder, compose = mx(tmp_path)
    book, inv = playbook(tmp_path, folder), ssh_lab.inventory(tmp_path)
    planned = remediate("plan", "-v", "--host", host, "-i", str(inv), "-p", str(book), agent=agent,
                        password=ssh_lab.password)
    said = planned.stdout + planned.stderr
    assert planned.returncode == 2, said  # changes pending
    commands = [line.split(f"{host} $ ", 1)[1].rsplit(" -> ", 1)[0] for line in said.splitlines()
                if f"{host} $ " in line]
    assert commands == [f"ask ahead: list_backups {compose}; read {compose}; read {folder}/.env",
                        f"list backups of {compose} (asked ahead)", f"read {compose} (asked ahead)",
                        f"read {folder}/.env (asked ahead)"], commands  # -v: one round trip, then none
    assert "RELAYHOST becomes POSTFIX_relay_transport" in said and "remove m8088.com" in said
    applied = remediate("apply", "--yes", "--host", host, "-i", str(inv), "-p", str(book), agent=agent,
                        password=ssh_lab.password)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert compose.read_text() == FIXED
    again = remediate("plan", "--host", host, "-i", str(inv), "-p", str(book), agent=agent, password=ssh_lab.password)
    assert again.returncode == 0, again.stdout + again.stderr  # what was asked ahead was not kept for the apply


@pytest.mark.parametrize("agent", [True, False], ids=["agent", "sessions"])
def test_a_saved_plan_is_refused_when_a_file_only_read_ahead_changed(ssh_lab: SshLab, tmp_path: Path,
                                                                     agent: bool) -> None:
    """A file read ahead counts in the plan's identity as one read when its step planned: the .env, which no step
    changes, edited on the host after `plan --out` (the same length: a value the reviewer never saw), and the
    saved plan is refused, with nothing changed."""
    folder, compose = mx(tmp_path)
    book, inv, saved = playbook(tmp_path, folder), ssh_lab.inventory(tmp_path), tmp_path / "reviewed.plan"
    planned = remediate("plan", "--out", str(saved), "--host", "nopw", "-i", str(inv), "-p", str(book), agent=agent,
                        password=ssh_lab.password)
    assert planned.returncode == 2, planned.stdout + planned.stderr
    (folder / ".env").write_text("TZ=CET\n")
    refused = remediate("apply", str(saved), "-i", str(inv), agent=agent, password=ssh_lab.password)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "not as the saved plan saw it" in said and "nothing was changed" in said, said
    assert compose.read_text() == COMPOSE
    assert not list(folder.glob("docker-compose.yml.backup-*"))
