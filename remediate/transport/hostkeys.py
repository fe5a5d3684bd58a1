"""Who a host is: known_hosts as OpenSSH reads it (markers included), read once per run, and the policy that refuses
an unknown or changed key (or records a new one only when told to)."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

from remediate.contract.host import Host
from remediate.errors import ConnectError, HostKeyError
from remediate.transport.endpoint import read_config

Notify = Callable[[str], None]


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuses unknown host keys, or records them when the operator said --accept-new-host-keys."""

    def __init__(self, host: Host, files: list[Path], accept_new: bool, notify: Notify, revoked: set[str]) -> None:
        self.host, self.files, self.accept_new, self.notify, self.revoked = host, files, accept_new, notify, revoked

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        where = ", ".join(str(f) for f in self.files)
        if key.get_base64() in self.revoked:
            raise HostKeyError(f"{self.host.name}: host key of {hostname} ({key.get_name()} {fingerprint(key)}) is marked "
                               f"@revoked in {where}; refusing to connect", hint="find out why it was revoked")
        if not self.accept_new:
            raise HostKeyError(
                f"{self.host.name}: host key of {hostname} ({key.get_name()} {fingerprint(key)}) is not in {where}; refusing to connect",
                hint="check that fingerprint out of band, then add it to known_hosts, or run again with --accept-new-host-keys",
            )
        record = self.files[-1]
        record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with record.open("a") as f:
            f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.notify(f"{self.host.name}: recorded new host key of {hostname} ({key.get_name()} {fingerprint(key)}) in {record}")


def read_known_hosts(path: Path, host: str) -> tuple[list[HostKeyEntry], frozenset[str]]:
    """A known_hosts file as OpenSSH reads it: its host key entries, and the keys it marks @revoked (base64).

    paramiko does not know OpenSSH's markers: @revoked keys are returned so that they are refused, and
    @cert-authority lines are skipped (remediate checks plain host keys, not host certificates)."""
    revoked: set[str] = set()
    entries: list[HostKeyEntry] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        raise ConnectError(f"{host}: cannot read known_hosts file {path}: {e.strerror}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if fields[0] == "@revoked":
            if len(fields) >= 4:
                revoked.add(fields[3])
            continue
        if fields[0].startswith("@"):
            continue
        try:
            entry = HostKeyEntry.from_line(line, number)
        except paramiko.SSHException:
            continue  # skipped, as paramiko's own reader does
        except (InvalidHostKey, ValueError) as e:
            bad = e.args[0] if isinstance(e, InvalidHostKey) and e.args else str(e)
            raise ConnectError(f"{host}: known_hosts file {path} has a line remediate cannot read: {str(bad)[:120]}",
                               hint="fix or remove that line (ssh-keygen -R HOST removes a host's lines)") from None
        if entry is not None:  # None: a key type paramiko does not know, or too few fields
            entries.append(entry)
    return entries, frozenset(revoked)


class ClientFiles:
    """The SSH client's own files, read once for all the connections of a run rather than once per host: the
    ssh_config files and each known_hosts file (read again only if it changed).

    paramiko's reader compares every entry with all those before it; a 1,000-line hashed known_hosts took a quarter
    of a second per connection. The ssh_config is only looked up once read, so every connection shares it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ssh_config: paramiko.SSHConfig | None = None
        self._known: dict[Path, tuple[tuple[int, int, int], list[HostKeyEntry], frozenset[str]]] = {}

    def config(self) -> paramiko.SSHConfig:
        """~/.ssh/config and /etc/ssh/ssh_config, read for the run's first connection."""
        with self._lock:
            if self._ssh_config is None:
                self._ssh_config = read_config()
            return self._ssh_config

    def known_hosts(self, keys: paramiko.HostKeys, path: Path, host: str) -> frozenset[str]:
        """Add path's entries to keys; return the keys it marks @revoked."""
        try:
            info = path.stat()
        except OSError as e:
            raise ConnectError(f"{host}: cannot read known_hosts file {path}: {e.strerror}") from None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._lock:
            seen = self._known.get(path)
        if seen is None or seen[0] != stamp:
            seen = (stamp, *read_known_hosts(path, host))
            with self._lock:
                self._known[path] = seen
        # Copies: a key recorded by --accept-new-host-keys goes into this connection's entries only.
        copies = [HostKeyEntry(list(e.hostnames), e.key) for e in seen[1]]
        held = getattr(keys, "_entries", None)
        if isinstance(held, list):
            held.extend(copies)  # what HostKeys.load does, without comparing each entry with all the others
        else:
            for entry in copies:
                for name in entry.hostnames:
                    keys.add(name, entry.key.get_name(), entry.key)
        return seen[2]
