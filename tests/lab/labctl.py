"""Drive and observe the real lab from tests: reset it, send mail, read logs and container facts."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from remediate.engine import runrecord

LAB = Path(__file__).resolve().parents[2] / "lab"
INVENTORY = LAB / "inventory.yml"
KEYS = Path("/var/lib/remediate-lab")  # lab/up keeps keys, sshd configs and pid files there
V2_DOCKER_CONFIG = KEYS / "ec2-mx-v2" / "docker"  # ec2-mx-v2's DOCKER_CONFIG: its cli-plugins hold compose v2
COMPOSE_FILE = Path("/opt/mailserver/docker-compose.yml")
PRISTINE_COMPOSE = LAB / "hosts" / "ec2-mx" / "docker-compose.yml"
POSTFIX = "mailserver-postfix"
DOVECOT = "mailserver-dovecot"
BOUNCE = "refused to talk to me: 500 5.5.1 Unknown command"


class NotYet(Exception):
    """A log line has not appeared yet."""


def why_not_up() -> str | None:
    """None when dockerd and the SSH hosts answer (tests reset the mail stack themselves), else what is missing."""
    if sh("docker", "info", check=False).returncode != 0:
        return "dockerd is not running; run `bash lab/up` as root"
    for addr, port, what in (("127.0.0.10", 2222, "ec2-mx sshd"), ("127.0.0.11", 2222, "dell sshd"),
                             ("127.0.0.12", 2222, "ec2-mx-hardened sshd")):
        try:
            socket.create_connection((addr, port), timeout=2).close()
        except OSError:
            return f"{what} is not listening on {addr}:{port}; run `bash lab/up` as root"
    return None


def sh(*argv: str, check: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin.decode() if stdin else None, capture_output=True, text=True,
                          check=check)


def reset() -> None:
    done = subprocess.run(["bash", str(LAB / "reset")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def logs(container: str) -> str:
    """Both streams: Dovecot logs errors to stderr."""
    done = sh("docker", "logs", container, check=False)
    return done.stdout + done.stderr


def send_mail(tag: str | None = None, container: str = POSTFIX) -> str:
    """Send a uniquely tagged mail with sendmail inside the Postfix container; return its tag."""
    tag = tag or uuid.uuid4().hex[:12]
    message = f"Subject: lab test {tag}\nMessage-ID: <{tag}@lab.test>\n\nTest {tag}\n".encode()
    sh("docker", "exec", "-i", container, "sendmail", "-f", "test@kuma8088.com", "test@kuma8088.com", stdin=message)
    return tag


def wait_for(container: str, needle: str, seconds: float = 30) -> str:
    """The first log line of container holding needle, waiting for it to appear."""
    for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.2),
                            retry=retry_if_exception_type(NotYet), reraise=True):
        with attempt:
            for line in logs(container).splitlines():
                if needle in line:
                    return line
            raise NotYet(f"no {needle!r} in `docker logs {container}` within {seconds} s")
    raise AssertionError("unreachable")


def queue_id_of(tag: str, container: str = POSTFIX) -> str:
    """Postfix's queue id for the message with this tag, from the cleanup line."""
    line = wait_for(container, f"message-id=<{tag}@lab.test>")
    return line.split("]: ", 1)[1].split(":", 1)[0]


def status_of(tag: str, seconds: float = 30, container: str = POSTFIX) -> str:
    """The delivery status line (status=...) of the tagged message."""
    queue_id = queue_id_of(tag, container)
    return wait_for(container, f"{queue_id}: to=<test@kuma8088.com>", seconds)


def postconf(*keys: str, container: str = POSTFIX) -> dict[str, str]:
    out = sh("docker", "exec", container, "postconf", *keys).stdout
    return dict(line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "") for line in out.splitlines())


@dataclass(frozen=True)
class ContainerFacts:
    id: str
    started_at: str
    env: tuple[str, ...]
    running: bool


def container(name: str = POSTFIX) -> ContainerFacts:
    data = json.loads(sh("docker", "inspect", name).stdout)[0]
    return ContainerFacts(data["Id"], data["State"]["StartedAt"], tuple(data["Config"]["Env"]), data["State"]["Running"])


def compose(*args: str, directory: str = "/opt/mailserver") -> None:
    done = subprocess.run(["docker-compose", *args], cwd=directory, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def compose_v2(*args: str, directory: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`docker compose` (v2: the CLI plugin that only ec2-mx-v2's DOCKER_CONFIG holds) on the project in directory."""
    done = subprocess.run(["docker", "compose", "--project-directory", str(directory),
                           "-f", str(directory / "docker-compose.yml"), *args], capture_output=True, text=True,
                          check=False, env={**os.environ, "DOCKER_CONFIG": str(V2_DOCKER_CONFIG)})
    assert done.returncode == 0 or not check, done.stdout + done.stderr
    return done


def wait_listening(address: str, port: int, seconds: float = 30) -> None:
    """Wait until address:port accepts a TCP connection."""
    for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.1),
                            retry=retry_if_exception_type(OSError), reraise=True):
        with attempt:
            socket.create_connection((address, port), timeout=2).close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ci() -> bool:
    return bool(os.environ.get("CI"))


def pristine_compose() -> bytes:
    return PRISTINE_COMPOSE.read_bytes()


def fixed_compose() -> bytes:
    """What a complete fix makes of the pristine compose file."""
    text = PRISTINE_COMPOSE.read_text()
    text = text.replace("RELAYHOST=[127.0.0.11]:2525", "POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525")
    return text.replace("POSTFIX_relay_domains=kuma8088.com, m8088.com", "POSTFIX_relay_domains=kuma8088.com").encode()


def remediate(*args: str, inventory: bool = True, timeout: float = 300,
              env: dict[str, str] | None = None) -> tuple[int, list[dict], str]:
    """Run the CLI with --json against the lab; return its exit code, its events and all it printed."""
    where = ["-i", str(INVENTORY)] if inventory else []
    done = subprocess.run(["remediate", *args, "--json", *where], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events, done.stdout + done.stderr


def journals() -> list[dict]:
    """The local run records, newest first."""
    runs = Path(os.environ["XDG_STATE_HOME"]) / "remediate" / "runs"
    records = [runrecord.read(p) for p in runs.glob("*.json")] if runs.exists() else []
    return sorted(records, key=lambda r: r["run_id"], reverse=True)


def step_states() -> dict[str, str]:
    records = journals()
    return {s["id"]: s["state"] for s in records[0]["steps"]} if records else {}


def assert_original_running_config() -> None:
    wait_for(POSTFIX, "Starting: postfix start-fg")
    assert postconf("relayhost", "relay_transport", "relay_domains") == {
        "relayhost": "[127.0.0.11]:2525", "relay_transport": "relay", "relay_domains": "kuma8088.com, m8088.com"}


def assert_converges() -> None:
    """Whatever a fault left, rollback (when a run is left open) and then apply reach the fixed state."""
    if journals() and journals()[0]["outcome"] in ("running", "rollback-incomplete"):
        code, _, out = remediate("rollback", "--yes", "--host", "ec2-mx")
        assert code == 0, out
        assert COMPOSE_FILE.read_bytes() == pristine_compose()
    code, events, out = remediate("apply", "--yes", "--host", "ec2-mx")
    assert code == 0, out
    assert COMPOSE_FILE.read_bytes() == fixed_compose()
    assert "Saved" in status_of(send_mail())
