"""Where an SSH connection goes, as OpenSSH's client configuration says, and the connection itself.

ssh_config's HostName, Port, User, IdentityFile, UserKnownHostsFile, ProxyJump and ProxyCommand apply as OpenSSH's
`ssh` applies them: the inventory's own settings first, then the user's ~/.ssh/config, then /etc/ssh/ssh_config. A
ProxyJump list is followed as `ssh -J` follows it: the first hop is dialled, each later hop (and then the host) is
reached through the one before it, and every hop's host key is checked as the host's is.

paramiko alone: fabric's Connection did this before, but it is invoke's Context, and paramiko's own config module
imports invoke whenever it is installed; the two cost every run 57 ms of CPU before its first packet (bench/README.md).
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import paramiko
from paramiko.ssh_exception import ConfigParseError, CouldNotCanonicalize

from remediate.errors import ConnectError
from remediate.records import record

#: The ssh_config files OpenSSH's client reads, in its order: the first value found for an option wins.
CONFIG_FILES: Final = ("~/.ssh/config", "/etc/ssh/ssh_config")
#: ProxyJump hops followed at most, counting those a hop's own ssh_config entry adds (a loop ends here).
MAX_HOPS: Final = 8
_SHORTHAND: Final = re.compile(r"(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<name>[^:@]+))(?::(?P<port>\d+))?\Z")


@record(frozen=True)
class Endpoint:
    """One SSH server to log in to: `name` as the inventory or a ProxyJump list gives it, the rest as resolved."""

    name: str
    host: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    #: UserKnownHostsFile's files, when ssh_config sets it (else ~/.ssh/known_hosts).
    known_hosts: tuple[str, ...] | None = None
    #: The hop this one is reached through (ProxyJump), or None.
    jump: Endpoint | None = None
    #: The command whose stdin and stdout are the connection (ProxyCommand), or None.
    proxy_command: str | None = None

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def read_config(paths: tuple[str, ...] = CONFIG_FILES) -> paramiko.SSHConfig:
    """The ssh_config files that exist, parsed into one configuration (the user's values before the system's)."""
    config = paramiko.SSHConfig()
    for raw in paths:
        path = Path(os.path.expanduser(raw))
        try:
            with path.open() as f:
                config.parse(f)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ConnectError(f"cannot read ssh_config file {path}: {e.strerror}") from None
        except (ConfigParseError, ValueError) as e:
            raise ConnectError(f"ssh_config file {path}: {e}", hint="fix that line; `ssh -G HOST` shows how "
                                                                    "OpenSSH reads it") from None
    return config


def _lookup(config: paramiko.SSHConfig, name: str) -> Mapping[str, Any]:
    try:
        return config.lookup(name)
    except ImportError as e:  # paramiko runs `Match exec` commands with invoke, its dependency: missing here
        raise ConnectError(f"{name}: ssh_config has a `Match exec` block, which paramiko runs with invoke: {e}",
                           hint="install invoke (pip install invoke), or use a `Host` or `Match host` block") from None
    except (ConfigParseError, CouldNotCanonicalize) as e:
        raise ConnectError(f"{name}: ssh_config cannot be applied: {e}") from None


def _shorthand(text: str) -> tuple[str | None, str, int | None]:
    """'user@host:port', 'host', '[::1]:22' (a ProxyJump hop) -> (user, host, port)."""
    found = _SHORTHAND.match(text.strip().removeprefix("ssh://"))  # OpenSSH takes ssh://[user@]host[:port] too
    if found is None:
        raise ConnectError(f"ssh_config ProxyJump names a hop remediate cannot read: {text!r}",
                           hint="write each hop as [user@]host[:port], separated by commas")
    port = found["port"]
    return found["user"], found["v6"] or found["name"], int(port) if port else None


def resolve(config: paramiko.SSHConfig, name: str, *, user: str | None = None, port: int | None = None,
            key_file: str | None = None, via: Endpoint | None = None, hops: int = 0) -> Endpoint:
    """Where `name` is, its inventory settings over ssh_config's; `via`: the ProxyJump hop before it, if any (its
    own ssh_config's ProxyJump and ProxyCommand then do not apply, as with `ssh -J`)."""
    found = _lookup(config, name)
    host = str(found.get("hostname", name))
    try:
        port = port or int(found.get("port", 22))
    except ValueError:
        raise ConnectError(f"{name}: ssh_config gives it the port {found.get('port')!r}, not a number") from None
    keys = ([key_file] if key_file else []) + [str(k) for k in found.get("identityfile", [])]
    known = tuple(os.path.expanduser(p) for p in str(found["userknownhostsfile"]).split()) \
        if "userknownhostsfile" in found else None
    jump, command = via, None
    if via is None:
        jump = _jumps(config, name, host, str(found.get("proxyjump", "none")), hops)
        if jump is None and str(found.get("proxycommand", "none")).lower() != "none":
            command = str(found["proxycommand"])
    return Endpoint(name, host, port, user or str(found.get("user") or getpass.getuser()), tuple(keys), known,
                    jump, command)


def _jumps(config: paramiko.SSHConfig, name: str, host: str, proxyjump: str, hops: int) -> Endpoint | None:
    """The last hop of a ProxyJump list (each hop reached through the one before), or None: no ProxyJump, or one
    that names the host itself (a `Host *` entry reaching the jump host: that one is dialled)."""
    jump = None
    if proxyjump.lower() == "none":
        return None
    for hop in proxyjump.split(","):
        hop_user, hop_name, hop_port = _shorthand(hop)
        if hop_name in (name, host):
            return None
        if hops + 1 > MAX_HOPS:
            raise ConnectError(f"{name}: ssh_config's ProxyJump makes more than {MAX_HOPS} hops (a loop?)")
        jump = resolve(config, hop_name, user=hop_user, port=hop_port, via=jump, hops=hops + 1)
    return jump


class Link:
    """The SSH connection to an endpoint: its paramiko client, and the link to the hop it goes through (closed with
    it). Opening it opens the hops first; `transport` is the connection's, once open."""

    def __init__(self, endpoint: Endpoint, client: paramiko.SSHClient, via: Link | None) -> None:
        self.endpoint, self.client, self.via = endpoint, client, via

    @property
    def transport(self) -> paramiko.Transport | None:
        return self.client.get_transport()

    def open(self, dial: Callable[[str, int], Any], factory: Callable[..., paramiko.Transport], timeout: float,
             accept: Callable[[Link], None]) -> None:
        """Connect (each hop first, unless already connected); `dial` opens the TCP connection to a dialled host, and
        `accept` sees each link once its server is known, before anything goes through it (it raises to refuse)."""
        done = self.transport
        if done is not None and done.is_active():
            return
        e = self.endpoint
        sock: Any
        if self.via is not None:
            self.via.open(dial, factory, timeout, accept)
            assert self.via.transport is not None
            sock = self.via.transport.open_channel("direct-tcpip", (e.host, e.port), ("", 0), timeout=timeout)
        elif e.proxy_command is not None:
            sock = paramiko.ProxyCommand(e.proxy_command)
        else:
            sock = dial(e.host, e.port)
        keys: Any = list(e.key_files) or None  # paramiko takes a list too (its stubs say one path)
        try:
            self.client.connect(e.host, port=e.port, username=e.user, key_filename=keys,
                                timeout=timeout, sock=sock, transport_factory=factory)
            accept(self)
        except BaseException:
            self.client.close()  # a new attempt starts from a new socket and transport
            sock.close()
            raise

    def close(self) -> None:
        self.client.close()
        if self.via is not None:
            self.via.close()
