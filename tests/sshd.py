"""A real OpenSSH sshd on a loopback address, for integration tests (needs root and openssh-server)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def available() -> str | None:
    """Why integration tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (it creates test users and runs sshd)"
    if not Path(SSHD).exists() or shutil.which("sudo") is None:
        return "needs openssh-server and sudo (apt-get install openssh-server sudo)"
    return None


def ensure_user(name: str, *, sudo: str | None, password: str | None = None) -> None:
    """A login user with /bin/sh; sudo is 'nopasswd', 'password', 'password-but-sh' (a password for everything but
    NOPASSWD for sh, as hardened hosts often have for one tool) or None."""
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    if password is not None:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n".encode(), check=True)
    else:  # no password, but not locked: sshd without PAM refuses locked accounts
        subprocess.run(["usermod", "-p", "*", name], check=True)
    rule = {"nopasswd": f"{name} ALL=(ALL) NOPASSWD: ALL\n", "password": f"{name} ALL=(ALL) ALL\n",
            "password-but-sh": f"{name} ALL=(ALL) ALL\n{name} ALL=(ALL) NOPASSWD: /bin/sh, /usr/bin/sh\n"}.get(sudo or "")
    sudoers = Path(f"/etc/sudoers.d/remediate-test-{name}")
    if rule:
        sudoers.write_text(rule)
        sudoers.chmod(0o440)
    elif sudoers.exists():
        sudoers.unlink()


@dataclass
class Server:
    """One running sshd with its own host key, and a client key authorised for the given users."""

    address: str
    port: int
    root: Path
    process: subprocess.Popen[bytes]
    client_key: Path
    host_public_key: str

    def known_hosts_line(self) -> str:
        return f"[{self.address}]:{self.port} {self.host_public_key}\n"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(root: Path, address: str, port: int, users: list[str], also: tuple[str, ...] = (), extra: str = "") -> Server:
    """An sshd on address:port for users; extra: more sshd_config lines (a hardened server's choices)."""
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for addr in (address, *also):
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", "lo"], capture_output=True)
    host_key = root / "ssh_host_ed25519_key"
    client_key = root / "client_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # sshd reads these as the login user: their modes are set, not left to the umask (under 077 every login failed)
    keys_dir = root / "authorized"
    keys_dir.mkdir(exist_ok=True)
    keys_dir.chmod(0o755)
    for user in users:
        (keys_dir / user).write_text((client_key.with_suffix(".pub")).read_text())
        (keys_dir / user).chmod(0o644)
    config = root / "sshd_config"
    config.write_text(
        "".join(f"ListenAddress {addr}:{port}\n" for addr in (address, *also))
        + f"HostKey {host_key}\nPidFile {root}/sshd.pid\n"
        f"AuthorizedKeysFile {keys_dir}/%u\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "MaxSessions 50\nMaxStartups 50\nLogLevel INFO\nSubsystem sftp internal-sftp\n" + extra
    )
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(root / "sshd.log", "ab"))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            if process.poll() is not None:
                raise RuntimeError(f"sshd exited (is {address}:{port} taken?): {(root / 'sshd.log').read_text()}")
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {(root / 'sshd.log').read_text()}") from None
            time.sleep(0.05)
    public = (host_key.with_suffix(".pub")).read_text().split()
    return Server(address, port, root, process, client_key, f"{public[0]} {public[1]}")


def new_password() -> str:
    return "pw-" + secrets.token_urlsafe(12)
