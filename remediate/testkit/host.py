"""A lab host as a test sees it: its inventory variables, its files, its compose project's containers, its log
lines, and the faults injected into it. The lab's hosts share this machine's filesystem and dockerd."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from remediate.testkit.faults import Fault, inject


class NotYet(Exception):
    """What a wait waits for has not happened yet."""


@dataclass(frozen=True)
class Container:
    """A container of the host's compose project: a re-created one has another id, a restarted one another start."""

    name: str
    id: str
    started_at: str
    running: bool


@dataclass
class LabHost:
    """One host of the lab's inventory (or a copy of one running the author's compose project)."""

    name: str
    vars: dict[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def compose_dir(self) -> str:
        return str(self.vars.get("compose_dir", "/opt/mailserver"))

    # -- files (the lab's hosts share this machine's filesystem) --

    def read_bytes(self, path: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def read_text(self, path: str) -> str:
        content = self.read_bytes(path)
        if content is None:
            raise AssertionError(f"{self.name}: no file {path}")
        return content.decode()

    def write_text(self, path: str, text: str) -> None:
        """Write the file in place (its mode and owner kept; 0644 when new), as a person's edit would."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def compose_files(self) -> list[str]:
        """The files directly in compose_dir (the compose file, its env files, backups beside it)."""
        folder = Path(self.compose_dir)
        return sorted(str(p) for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def inject(self, fault: Fault) -> None:
        """Make the fault happen here: a named lab fault, an Edit, a Write, or a callable given this host."""
        inject(fault, self)

    # -- containers, logs, listeners --

    def docker(self, *args: str, stdin: str | None = None) -> str:
        """`docker ARGS` on the lab's dockerd; its output, or a failure naming the command."""
        done = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"`docker {shlex.join(args)}` exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout + done.stderr

    def containers(self) -> dict[str, Container]:
        """The containers of the compose project in compose_dir, by name."""
        ids = self.docker("ps", "-aq", "--filter", f"label=com.docker.compose.project.working_dir={self.compose_dir}")
        if not ids.split():
            return {}
        found = {}
        for data in json.loads(self.docker("inspect", *ids.split())):
            name = data["Name"].lstrip("/")
            found[name] = Container(name, data["Id"], data["State"]["StartedAt"], data["State"]["Running"])
        return found

    def logs(self, container: str) -> str:
        """Both streams of the container's log."""
        done = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
        return done.stdout + done.stderr

    def wait_for_log(self, container: str, needle: str, seconds: float = 60) -> str:
        """The first line of the container's log that holds needle, waiting for it to appear."""
        for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.2),
                                retry=retry_if_exception_type(NotYet), reraise=True):
            with attempt:
                for line in self.logs(container).splitlines():
                    if needle in line:
                        return line
                raise NotYet(f"{self.name}: no {needle!r} in `docker logs {container}` within {seconds:.0f} s")
        raise AssertionError("unreachable")

    def wait_listening(self, address: str, port: int, seconds: float = 60) -> None:
        """Wait until address:port accepts a TCP connection."""
        try:
            for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(0.1),
                                    retry=retry_if_exception_type(OSError), reraise=True):
                with attempt:
                    socket.create_connection((address, port), timeout=2).close()
        except OSError as e:
            raise AssertionError(f"{self.name}: nothing listens on {address}:{port} within {seconds:.0f} s") from e

    def postfix_address(self) -> str:
        """Where the host's Postfix listens: POSTFIX_inet_interfaces in its compose file, else the host's address."""
        text = self.read_bytes(os.path.join(self.compose_dir, "docker-compose.yml")) or b""
        found = re.search(rb"POSTFIX_inet_interfaces=([0-9.]+)", text)
        return found.group(1).decode() if found else self.address

    # -- through the host's own sshd, as remediate reaches it --

    def ssh(self, command: str, timeout: float = 180) -> str:
        """Run a shell command on the host over its sshd with the inventory's key; its output, or a failure."""
        argv = ["ssh", "-p", str(self.vars.get("ansible_port", 22)), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.vars['ssh_known_hosts_file']}",
                "-i", str(self.vars["ansible_ssh_private_key_file"]), f"{self.vars['ansible_user']}@{self.address}",
                command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              check=False)
        if done.returncode != 0:
            raise AssertionError(f"{self.name}: `{command}` over ssh exited {done.returncode}:\n"
                                 f"{(done.stdout + done.stderr).strip()[-3000:]}")
        return done.stdout

    def compose(self, *args: str) -> str:
        """The host's compose (`docker compose` where the host has v2, else docker-compose) on its project, with
        sudo -n, from compose_dir: what a person on the host would type."""
        quoted = shlex.join(args)
        return self.ssh(f"cd {shlex.quote(self.compose_dir)} && if docker compose version >/dev/null 2>&1; "
                        f"then sudo -n docker compose {quoted}; else sudo -n docker-compose {quoted}; fi")

    def up(self) -> None:
        """The compose project running: `up -d` when a container of it is missing or stopped; then each is running."""
        running = self.containers()
        if running and all(c.running for c in running.values()):
            return
        self.compose("up", "-d")
        stopped = [c.name for c in self.containers().values() if not c.running]
        if stopped or not self.containers():
            raise AssertionError(f"{self.name}: `compose up -d` in {self.compose_dir} left {stopped or 'no container'} "
                                 "not running")
