"""The SSH transport against a real OpenSSH sshd on loopback."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from remediate.errors import CommandError, ConnectError, HostKeyError
from remediate.inputs import inventory
from remediate.transport import NoPython
from remediate.transport.ssh import connect

from .conftest import PORT, SshLab


def host(lab: SshLab, tmp_path: Path, name: str = "nopw", *, known: bool = True) -> inventory.Host:
    return inventory.load(lab.inventory(tmp_path, known_hosts=known)).hosts[name]


def test_connects_with_a_key_and_quotes_every_argument(ssh_lab: SshLab, tmp_path: Path) -> None:
    t = connect(host(ssh_lab, tmp_path, "plain"))
    try:
        evil = f"x; touch {tmp_path}/pwned"
        result = t.run(["echo", evil, "$(id)", "`id`"])
        assert result.stdout == f"{evil} $(id) `id`\n"
        assert not (tmp_path / "pwned").exists()
        assert t.run(["id", "-un"]).stdout.strip() == "rmt-nopw"
    finally:
        t.close()


def test_unknown_host_key_is_refused_with_a_way_forward(ssh_lab: SshLab, tmp_path: Path) -> None:
    with pytest.raises(HostKeyError) as e:
        connect(host(ssh_lab, tmp_path, known=False))
    message = str(e.value)
    assert f"[127.0.0.20]:{PORT}" in message and "SHA256:" in message and "refusing to connect" in message
    assert "--accept-new-host-keys" in message


def test_accept_new_records_the_key_and_says_so(ssh_lab: SshLab, tmp_path: Path) -> None:
    h = host(ssh_lab, tmp_path, known=False)
    notes: list[str] = []
    connect(h, accept_new_host_keys=True, notify=notes.append).close()
    assert notes and "recorded new host key" in notes[0]
    recorded = Path(h.known_hosts_file or "").read_text()
    assert ssh_lab.server.host_public_key.split()[1] in recorded
    connect(h).close()  # now known, no flag needed


def test_changed_host_key_is_refused_even_with_accept_new(ssh_lab: SshLab, tmp_path: Path) -> None:
    h = host(ssh_lab, tmp_path)
    other = tmp_path / "other"
    os.system(f"ssh-keygen -q -t ed25519 -N '' -f {other}")
    fake_line = f"[127.0.0.20]:{PORT} " + " ".join((other.with_suffix('.pub')).read_text().split()[:2]) + "\n"
    Path(h.known_hosts_file or "").write_text(fake_line)
    with pytest.raises(HostKeyError, match="CHANGED"):
        connect(h, accept_new_host_keys=True)


def test_connection_refused_names_host_address_and_port(tmp_path: Path) -> None:
    h = inventory.Host(name="gone", address="127.0.0.29", port=2999, user="nobody")
    with pytest.raises(ConnectError) as e:
        connect(h)
    assert "gone (nobody@127.0.0.29:2999): cannot connect after 3 attempts" in str(e.value)


def test_nopasswd_sudo(ssh_lab: SshLab, tmp_path: Path) -> None:
    t = connect(host(ssh_lab, tmp_path))
    try:
        assert t.run(["id", "-u"]).stdout.strip() == "0"
        assert t.run(["id", "-u"], sudo=False).stdout.strip() != "0"
    finally:
        t.close()


def test_sudo_password_works_and_never_shows(ssh_lab: SshLab, tmp_path: Path) -> None:
    h = host(ssh_lab, tmp_path, "pw")
    t = connect(h, password_source=lambda _: ssh_lab.password)
    try:
        assert t.run(["id", "-u"]).stdout.strip() == "0"
        echoed = t.run(["sh", "-c", "cat; echo " + ssh_lab.password], stdin=b"data\n")
        assert echoed.stdout == f"data\n{ssh_lab.password}\n"  # the command read only its own stdin
        assert "********" in str(echoed.summary())  # what is shown and journaled is masked
        assert all(ssh_lab.password not in r.command + str(r.summary()) for r in t.history)
    finally:
        t.close()


def test_wrong_sudo_password_is_refused_without_echoing_it(ssh_lab: SshLab, tmp_path: Path) -> None:
    t = connect(host(ssh_lab, tmp_path, "pw"), password_source=lambda _: "wrong-Secret-42")
    with pytest.raises(ConnectError) as e:
        t.run(["true"])
    assert "sudo refused" in str(e.value)
    assert "wrong-Secret-42" not in str(e.value)


def test_atomic_write_keeps_mode_and_owner_and_leaves_no_temp_file(ssh_lab: SshLab, tmp_path: Path) -> None:
    target = tmp_path / "conf" / "app.conf"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chown(target, 1234, 4321)
    target.chmod(0o640)
    t = connect(host(ssh_lab, tmp_path))
    try:
        t.write(str(target), b"new\n")
        state = t.read(str(target))
    finally:
        t.close()
    assert target.read_bytes() == b"new\n"
    st = target.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o640, 1234, 4321)
    assert state is not None and (state.mode, state.uid, state.gid, state.content) == (0o640, 1234, 4321, b"new\n")
    assert sorted(p.name for p in target.parent.iterdir()) == ["app.conf"]


def test_ssh_config_alias_and_proxyjump_are_honoured(ssh_lab: SshLab, tmp_path: Path) -> None:
    from .conftest import BEHIND_JUMP
    key_line = ssh_lab.server.host_public_key
    known = Path.home() / ".ssh" / "known_hosts"
    known.write_text(f"[127.0.0.20]:{PORT} {key_line}\n[{BEHIND_JUMP}]:{PORT} {key_line}\n")
    (Path.home() / ".ssh" / "config").write_text(
        f"Host jump\n  HostName 127.0.0.20\n  Port {PORT}\n  User rmt-nopw\n  IdentityFile {ssh_lab.server.client_key}\n"
        f"Host inner\n  HostName {BEHIND_JUMP}\n  Port {PORT}\n  User rmt-nopw\n  IdentityFile {ssh_lab.server.client_key}\n"
        "  ProxyJump jump\n")
    logins = ssh_lab.accepted_logins()
    t = connect(inventory.Host(name="inner", address="inner"))
    try:
        assert t.run(["id", "-un"]).stdout.strip() == "rmt-nopw"
    finally:
        t.close()
    assert ssh_lab.accepted_logins() == logins + 2, "one login on the jump host, one on the inner host through it"


def test_proxyjump_host_keys_are_checked_too(ssh_lab: SshLab, tmp_path: Path) -> None:
    from .conftest import BEHIND_JUMP
    (Path.home() / ".ssh" / "known_hosts").write_text(f"[{BEHIND_JUMP}]:{PORT} {ssh_lab.server.host_public_key}\n")
    (Path.home() / ".ssh" / "config").write_text(
        f"Host jump\n  HostName 127.0.0.20\n  Port {PORT}\n  User rmt-nopw\n  IdentityFile {ssh_lab.server.client_key}\n"
        f"Host inner\n  HostName {BEHIND_JUMP}\n  Port {PORT}\n  User rmt-nopw\n  IdentityFile {ssh_lab.server.client_key}\n"
        "  ProxyJump jump\n")
    with pytest.raises(HostKeyError, match=r"\[127\.0\.0\.20\]"):
        connect(inventory.Host(name="inner", address="inner"))


def test_known_hosts_markers_are_understood(ssh_lab: SshLab, tmp_path: Path) -> None:
    h = host(ssh_lab, tmp_path)
    known = Path(h.known_hosts_file or "")
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIHcK/tT/pgvMzxu2KWn5oVbjdNEjkdp6rH7TVa7pvS5q"
    known.write_text(f"@cert-authority *.example.com ssh-ed25519 {other}\n" + known.read_text())
    connect(h).close()  # a @cert-authority line is skipped, as host certificates are not used
    key = ssh_lab.server.host_public_key.split()[1]
    known.write_text(known.read_text() + f"@revoked [127.0.0.20]:{PORT} ssh-ed25519 {key}\n")
    for accept in (False, True):
        with pytest.raises(HostKeyError, match="@revoked"):
            connect(h, accept_new_host_keys=accept)
    known.write_text("[127.0.0.20]:2222 ssh-ed25519 not-base64!\n")
    with pytest.raises(ConnectError, match="has a line remediate cannot read"):
        connect(h)


def _parent(t) -> str:
    return t.run(["sh", "-c", 'echo "$PPID"']).stdout.strip()


def test_commands_without_sudo_share_one_agent_process(ssh_lab: SshLab, tmp_path: Path) -> None:
    t = connect(host(ssh_lab, tmp_path, "plain"))
    try:
        first, second = _parent(t), _parent(t)
        assert first == second and t.agent_off is None  # one process on the host answered both
        assert t.run(["cat"], stdin=b"exactly this\n").stdout == "exactly this\n"
        with pytest.raises(CommandError, match="did not finish within 1 s"):
            t.run(["sleep", "5"], timeout=1)
        assert _parent(t) not in ("", first)  # a command that timed out ends its agent; the next one starts anew
    finally:
        t.close()


def test_a_host_without_the_interpreter_runs_each_command_in_a_session(ssh_lab: SshLab, tmp_path: Path) -> None:
    path = ssh_lab.inventory(tmp_path)
    path.write_text(path.read_text().replace("ansible_become: false\n", "ansible_become: false\n"
                                             "      ansible_python_interpreter: /nonexistent/python3\n"))
    notes: list[str] = []
    t = connect(inventory.load(path).hosts["plain"], notify=notes.append)
    t.observe = lambda result: None  # as -v does
    shared = Path(tempfile.mkdtemp(prefix="remediate-test-"))
    shared.chmod(0o777)  # the login user's to write
    try:
        marker = shared / "once"
        t.run(["sh", "-c", 'echo x >> "$1"', "sh", str(marker)])
        assert marker.read_text() == "x\n"  # ran once: the agent that never started ran nothing
        assert _parent(t) != _parent(t)
        assert "/nonexistent/python3" in (t.agent_off or "") and "session of its own" in notes[0]
        with pytest.raises(NoPython) as e:  # remediate's own operations need it: said, before any change
            t.write(str(shared / "conf"), b"new\n")
        assert "/nonexistent/python3" in str(e.value) and "install python3" in (e.value.hint or "")
        assert not (shared / "conf").exists()
    finally:
        t.close()
        shutil.rmtree(shared)


def test_sudo_commands_share_one_agent_started_by_sudo_once(ssh_lab: SshLab, tmp_path: Path) -> None:
    asked: list[str] = []
    t = connect(host(ssh_lab, tmp_path, "pw"), password_source=lambda h: asked.append(h.name) or ssh_lab.password)
    try:
        assert t.run(["id", "-u"]).stdout.strip() == "0"
        first, second = _parent(t), _parent(t)
        assert first == second and t.agent_off is None  # one root process answered both
        assert t.run(["id", "-u"], sudo=False).stdout.strip() != "0"  # and one of the login user's for the others
        assert asked == ["pw"]
        assert all(ssh_lab.password not in r.command + r.stdout + r.stderr for r in t.history)
    finally:
        t.close()


def test_sudo_that_will_not_start_the_agent_leaves_each_command_to_sudo(ssh_lab: SshLab, tmp_path: Path) -> None:
    notes: list[str] = []
    t = connect(host(ssh_lab, tmp_path, "pw"), notify=notes.append)  # no password to give
    t.observe = lambda result: None  # as -v does
    try:
        with pytest.raises(ConnectError, match="sudo asks for a password"):
            t.run(["id", "-u"])  # the command itself, in a session, asks as before
        assert "sudo asks for a password to start it" in (t.agent_off or "") and "session of its own" in notes[0]
    finally:
        t.close()


def test_a_proxyjump_hop_whose_key_is_revoked_is_refused_before_anything_goes_through_it(ssh_lab: SshLab,
                                                                                           tmp_path: Path) -> None:
    from tests import sshd

    from .conftest import BEHIND_JUMP
    root = Path(tempfile.mkdtemp(prefix="remediate-inner-sshd-"))
    root.chmod(0o755)
    inner = sshd.start(root, BEHIND_JUMP, 2223, ["rmt-nopw"])  # another host key than the jump host's
    try:
        key = ssh_lab.server.host_public_key
        (Path.home() / ".ssh" / "known_hosts").write_text(
            f"[127.0.0.20]:{PORT} {key}\n[{BEHIND_JUMP}]:2223 {inner.host_public_key}\n"
            f"@revoked [127.0.0.20]:{PORT} {key}\n")
        (Path.home() / ".ssh" / "config").write_text(
            f"Host jump\n  HostName 127.0.0.20\n  Port {PORT}\n  User rmt-nopw\n  IdentityFile {ssh_lab.server.client_key}\n"
            f"Host inner\n  HostName {BEHIND_JUMP}\n  Port 2223\n  User rmt-nopw\n  IdentityFile {inner.client_key}\n"
            "  ProxyJump jump\n")
        with pytest.raises(HostKeyError, match=r"inner: the ProxyJump hop rmt-nopw@127\.0\.0\.20:\d+: host key .* @revoked"):
            connect(inventory.Host(name="inner", address="inner", agent=False))
    finally:
        inner.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_connection_encrypts_with_aes_gcm(ssh_lab: SshLab, tmp_path: Path) -> None:
    """OpenSSH offers AES-GCM: remediate chooses it (one AEAD call a packet), not paramiko's default aes128-ctr with
    an HMAC it checks byte by byte in Python."""
    t = connect(host(ssh_lab, tmp_path, "plain"))
    try:
        assert t.run(["echo", "ok"]).stdout == "ok\n"
        assert t.connection is not None and t.connection.transport is not None
        link = t.connection.transport
        assert (link.local_cipher, link.remote_cipher) == ("aes128-gcm@openssh.com", "aes128-gcm@openssh.com")
    finally:
        t.close()


def test_a_server_without_aes_gcm_is_still_reached_with_what_it_offers(ssh_lab: SshLab, tmp_path: Path) -> None:
    """A hardened sshd may allow only some ciphers: the preference is an order, never a requirement."""
    from tests import sshd
    root = Path(tempfile.mkdtemp(prefix="remediate-ctr-sshd-"))
    root.chmod(0o755)
    ctr = sshd.start(root, ssh_lab.server.address, 2224, ["rmt-nopw"],
                     extra="Ciphers aes256-ctr\nMACs hmac-sha2-512-etm@openssh.com\n")
    try:
        (tmp_path / "known_ctr").write_text(f"[{ctr.address}]:2224 {ctr.host_public_key}\n")
        h = inventory.Host(name="ctr", address=ctr.address, port=2224, user="rmt-nopw", key_file=str(ctr.client_key),
                           known_hosts_file=str(tmp_path / "known_ctr"))
        t = connect(h)
        try:
            assert t.run(["echo", "ok"]).stdout == "ok\n"
            assert t.connection is not None and t.connection.transport is not None
            assert t.connection.transport.local_cipher == "aes256-ctr"
            assert t.connection.transport.local_mac == "hmac-sha2-512-etm@openssh.com"
        finally:
            t.close()
    finally:
        ctr.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_hops_are_closed_when_the_host_behind_them_refuses_the_login(ssh_lab: SshLab, tmp_path: Path) -> None:
    from .conftest import BEHIND_JUMP
    key = ssh_lab.server.host_public_key
    (Path.home() / ".ssh" / "known_hosts").write_text(f"[127.0.0.20]:{PORT} {key}\n[{BEHIND_JUMP}]:{PORT} {key}\n")
    (Path.home() / ".ssh" / "config").write_text(
        f"Host jump\n  HostName 127.0.0.20\n  Port {PORT}\n  User rmt-nopw\n  IdentityFile {ssh_lab.server.client_key}\n"
        f"Host inner\n  HostName {BEHIND_JUMP}\n  Port {PORT}\n  User nosuchuser\n  IdentityFile {ssh_lab.server.client_key}\n"
        "  ProxyJump jump\n")
    from remediate.transport.ssh import SSHTransport
    t = SSHTransport(name="inner", host=inventory.Host(name="inner", address="inner"))
    with pytest.raises(ConnectError, match="authentication failed"):
        t.connect()
    assert t.connection is not None and t.connection.via is not None
    hop = t.connection.via.transport
    assert hop is None or not hop.is_active(), "the jump host's connection was left open"


@pytest.mark.parametrize("name", ["plain", "pw"], ids=["login-user", "sudo"])
def test_closing_a_connection_ends_its_agent_on_the_host(ssh_lab: SshLab, tmp_path: Path, name: str) -> None:
    """close() sends the agent's channel nothing: the connection's end ends the agent (as the login user, and under
    sudo), with nothing of it left running on the host."""
    t = connect(host(ssh_lab, tmp_path, name), password_source=lambda _: ssh_lab.password)
    try:
        said = t.run(["sh", "-c", 'echo "$PPID"'])  # the agent started it: its parent is the agent
        assert t.agent_off is None, t.agent_off
        agent = Path(f"/proc/{said.stdout.strip()}")
        assert b"python3" in (agent / "cmdline").read_bytes(), "the command's parent is the agent's python3"
        started = _started(agent)
        assert started is not None
    finally:
        t.close()
    end = time.monotonic() + 10
    while _started(agent) == started:  # gone, or its pid another process's (another start time)
        assert time.monotonic() < end, f"the agent ({agent}) still runs 10 s after the connection was closed"
        time.sleep(0.05)


def _started(process: Path) -> str | None:
    """When the process under /proc started (its stat's 22nd field), or None once it is gone."""
    try:
        return (process / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError):
        return None


def test_closing_a_connection_ends_its_thread_without_waiting_for_its_next_look(
        ssh_lab: SshLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection's thread looks whether it is still wanted only when its socket has been quiet that long (a
    second: fewer wake-ups for a run holding 100 connections); close() shuts the socket down, so the thread ends at
    once. Here the look is made two minutes apart, and the thread still ends within a minute of close()."""
    from remediate.transport.paramiko_hooks import _PromptAck
    monkeypatch.setattr(_PromptAck, "_active_check_timeout", 120.0)
    t = connect(host(ssh_lab, tmp_path, "plain"))
    assert t.connection is not None and t.connection.transport is not None
    thread = t.connection.transport
    try:
        assert t.run(["true"]).ok
        assert thread.sock.gettimeout() == 120.0
    finally:
        t.close()
    thread.join(60)
    assert not thread.is_alive(), "the connection's thread waited for its next look at the socket"
