"""The SSH client's side of a run: its files, read once for all the connections, and the TCP dial (no SSH
connection is opened here)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from remediate.errors import ConnectError
from remediate.inputs.inventory import Host
from remediate.transport import hostkeys
from remediate.transport.ssh import ClientFiles, SSHTransport

ED = "AAAAC3NzaC1lZDI1NTE5AAAAIHcK/tT/pgvMzxu2KWn5oVbjdNEjkdp6rH7TVa7pvS5q"
OTHER = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def hashed(name: str) -> str:
    salt = os.urandom(20)
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def transport(files: ClientFiles, name: str, address: str, **host: object) -> SSHTransport:
    return SSHTransport(name=name, host=Host(name=name, address=address, **host), files=files)  # type: ignore[arg-type]


def test_each_known_hosts_file_is_read_once_per_run_and_again_when_it_changes(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"{hashed('[10.0.0.1]:22')} ssh-ed25519 {ED}\n# a comment\n\n"
                     f"@cert-authority *.example ssh-ed25519 {OTHER}\n@revoked 10.0.0.9 ssh-ed25519 {OTHER}\n"
                     f"10.0.0.2,10.0.0.3 ssh-ed25519 {OTHER}\n")
    reads: list[Path] = []
    real = hostkeys.read_known_hosts
    monkeypatch.setattr(hostkeys, "read_known_hosts", lambda path, host: (reads.append(path), real(path, host))[1])
    files = ClientFiles()
    seen = []
    for n in range(3):
        keys = paramiko.HostKeys()
        revoked = files.known_hosts(keys, known, f"h{n}")
        seen.append(keys)
    assert reads == [known]
    assert revoked == {OTHER}
    assert seen[0].lookup("[10.0.0.1]:22")["ssh-ed25519"].get_base64() == ED  # hashed names still match
    assert seen[2].lookup("10.0.0.3")["ssh-ed25519"].get_base64() == OTHER
    assert seen[0].lookup("*.example") is None and seen[0].lookup("10.0.0.9") is None
    # a key one connection records (--accept-new-host-keys) stays that connection's
    seen[0].add("10.0.0.4", "ssh-ed25519", seen[0].lookup("10.0.0.2")["ssh-ed25519"])
    assert seen[1].lookup("10.0.0.4") is None
    with known.open("a") as f:
        f.write(f"10.0.0.5 ssh-ed25519 {ED}\n")
    keys = paramiko.HostKeys()
    files.known_hosts(keys, known, "h3")
    assert reads == [known, known] and keys.lookup("10.0.0.5") is not None


def test_a_bad_known_hosts_line_names_the_file(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("[127.0.0.20]:2222 ssh-ed25519 not-base64!\n")
    with pytest.raises(ConnectError, match=f"h1: known_hosts file {known} has a line remediate cannot read"):
        ClientFiles().known_hosts(paramiko.HostKeys(), known, "h1")
    with pytest.raises(ConnectError, match="cannot read known_hosts file"):
        ClientFiles().known_hosts(paramiko.HostKeys(), tmp_path / "missing", "h1")


def test_hosts_sharing_one_ssh_config_keep_their_own_keys_and_settings(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    key_a, key_b = tmp_path / "id_a", tmp_path / "id_b"
    (Path.home() / ".ssh" / "config").write_text(
        f"Host alpha\n  HostName 127.0.0.21\n  Port 2201\n  User ua\n  IdentityFile {key_a}\n"
        "Host beta\n  HostName 127.0.0.22\n  User ub\n  UserKnownHostsFile ~/kh1 ~/kh2\n")
    parsed: list[object] = []
    real = paramiko.SSHConfig.parse
    monkeypatch.setattr(paramiko.SSHConfig, "parse", lambda self, f: (parsed.append(f), real(self, f))[1])
    files = ClientFiles()
    a = transport(files, "alpha", "alpha")._connection()
    files_read = len(parsed)
    b = transport(files, "beta", "beta", user="override")._connection()
    c = transport(files, "gamma", "127.0.0.23", key_file=str(key_b), port=2203)._connection()
    assert files_read >= 1 and len(parsed) == files_read, "the ssh_config files are read for the first host only"
    assert (a.endpoint.host, a.endpoint.port, a.endpoint.user, a.endpoint.key_files) == \
        ("127.0.0.21", 2201, "ua", (str(key_a),))
    assert (b.endpoint.host, b.endpoint.port, b.endpoint.user, b.endpoint.key_files) == \
        ("127.0.0.22", 22, "override", ()), "the inventory's user comes before ssh_config's"
    assert b.endpoint.known_hosts == (str(Path.home() / "kh1"), str(Path.home() / "kh2"))
    assert (c.endpoint.host, c.endpoint.port, c.endpoint.key_files, c.endpoint.known_hosts) == \
        ("127.0.0.23", 2203, (str(key_b),), None)
    assert len({id(a.client), id(b.client), id(c.client)}) == 3
    for link in (a, b, c):
        assert isinstance(link.client._policy, hostkeys.StrictPolicy) and link.via is None


def test_proxyjump_is_followed_as_ssh_j_follows_it(tmp_path: Path) -> None:
    (Path.home() / ".ssh" / "config").write_text(
        "Host inner\n  HostName 127.0.0.24\n  ProxyJump ops@first,[::1]:2202\n"
        "Host first\n  HostName 127.0.0.25\n  ProxyCommand nc %h %p\n"
        "Host *\n  ProxyJump first\n"
        "Host piped\n  ProxyCommand nc %h %p\n")
    link = transport(ClientFiles(), "inner", "inner", user="u")._connection()
    second = link.via
    assert second is not None and second.via is not None and second.via.via is None
    first = second.via
    # the first hop is dialled (its own ProxyCommand applies), the second reached through it, the host through that
    assert (first.endpoint.host, first.endpoint.port, first.endpoint.user) == ("127.0.0.25", 22, "ops")
    assert first.endpoint.proxy_command == "nc 127.0.0.25 22" and first.endpoint.jump is None
    assert (second.endpoint.host, second.endpoint.port, second.endpoint.proxy_command) == ("::1", 2202, None)
    assert (link.endpoint.host, link.endpoint.user, link.endpoint.jump) == ("127.0.0.24", "u", second.endpoint)
    for hop in (first, second, link):
        assert isinstance(hop.client._policy, hostkeys.StrictPolicy)
    # `Host *` names the jump host itself: that one is dialled, not jumped through itself
    direct = transport(ClientFiles(), "first", "first")._connection()
    assert direct.via is None and direct.endpoint.proxy_command == "nc 127.0.0.25 22"


def test_ssh_config_it_cannot_follow_is_refused_with_the_file_or_host(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # invoke hands the run's stdin to a `Match exec` command
    config = Path.home() / ".ssh" / "config"
    config.write_text("Host odd\n  ProxyJump user@@x\n")
    with pytest.raises(ConnectError, match="ProxyJump names a hop remediate cannot read"):
        transport(ClientFiles(), "odd", "odd")._connection()
    config.write_text("Match exec \"test %h = odd\"\n  User by-exec\n")  # run by invoke, imported only now
    assert transport(ClientFiles(), "odd", "odd")._connection().endpoint.user == "by-exec"
    assert transport(ClientFiles(), "even", "even")._connection().endpoint.user != "by-exec"
    config.write_text("Host loop\n  ProxyJump a\nHost a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(ConnectError, match="b: ssh_config's ProxyJump makes more than 8 hops"):
        transport(ClientFiles(), "loop", "loop")._connection()  # a's ProxyJump is b's, b's is a's...
    config.write_text("Host bad\n  Port twenty\n")
    with pytest.raises(ConnectError, match="bad: ssh_config gives it the port 'twenty'"):
        transport(ClientFiles(), "bad", "bad")._connection()


def test_the_dial_reaches_a_listener_by_name_without_the_idna_codec() -> None:
    # on 127.0.0.1, outside the tests' 127.0.0.10-29: the name `localhost` resolves to nothing else
    code = """
import socket, sys
from remediate.transport.ssh import _dial
server = socket.create_server(("127.0.0.1", 0))
port = server.getsockname()[1]
_dial("localhost", port).close()  # ::1 first on some machines: refused, then 127.0.0.1
_dial("127.0.0.1", port).close()
server.close()
try:
    _dial("127.0.0.1", port)
except ConnectionRefusedError:
    print("refused")
print("encodings.idna" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["refused", "False"]


class Flaky:
    """A connection whose first opens fail with the errors given."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors, self.opened = list(errors), 0

    def open(self, *_: object) -> None:
        self.opened += 1
        if self.errors:
            raise self.errors.pop(0)


def test_a_connection_that_may_come_is_tried_three_times_half_a_second_then_a_second_apart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("time.sleep", slept.append)
    t = transport(ClientFiles(), "h1", "127.0.0.21")
    t.connection = Flaky(ConnectionRefusedError(), EOFError())  # type: ignore[assignment]
    t._attempts()
    assert t.connection.opened == 3 and slept == [0.5, 1.0]  # type: ignore[union-attr]
    t.connection = Flaky(ConnectionRefusedError(), ConnectionRefusedError(), ConnectionRefusedError())  # type: ignore[assignment]
    with pytest.raises(ConnectionRefusedError):
        t._attempts()
    assert t.connection.opened == 3  # type: ignore[union-attr]
    slept.clear()
    t.connection = Flaky(paramiko.AuthenticationException("no"))  # type: ignore[assignment]
    with pytest.raises(paramiko.AuthenticationException):
        t._attempts()
    assert t.connection.opened == 1 and slept == []  # type: ignore[union-attr]


class Ending:
    """An agent's or a connection's close, recorded."""

    def __init__(self, what: str, ended: list[str]) -> None:
        self.what, self.ended = what, ended

    def close(self) -> None:
        self.ended.append(self.what)


def test_closing_a_transport_ends_its_connection_and_sends_its_agents_nothing(tmp_path: Path) -> None:
    """The agents end with the connection (the integration test shows it on a real sshd); a close of each agent's
    channel first would be two messages a host, sent host after host at the end of a run."""
    ended: list[str] = []
    t = transport(ClientFiles(), "h1", "127.0.0.10")
    t._agents = {False: Ending("agent", ended), True: Ending("sudo agent", ended)}  # type: ignore[dict-item]
    t.connection = Ending("connection", ended)  # type: ignore[assignment]
    t.close()
    assert ended == ["connection"]
    assert t._agents == {}  # a later command starts a new agent, on a new connection
