"""The places remediate reaches into paramiko past its public API, held to what they rely on, so that a new
paramiko (pyproject allows below the next major) that moves them fails here, not on a host."""

from __future__ import annotations

import inspect
import os
import socket
import threading
from pathlib import Path

import paramiko
import pytest

from remediate.transport.paramiko_hooks import gcm_first
from remediate.transport.ssh import ClientFiles, _PromptAck


@pytest.fixture
def known_hosts(tmp_path: Path) -> tuple[Path, paramiko.PKey]:
    key = paramiko.RSAKey.generate(1024)
    path = tmp_path / "known_hosts"
    path.write_text(f"[gw.example]:2222 {key.get_name()} {key.get_base64()}\n"
                    f"@revoked other.example {key.get_name()} {key.get_base64()}\n")
    return path, key


def test_host_keys_keeps_its_entries_in_a_list_that_lookup_reads(known_hosts: tuple[Path, paramiko.PKey]) -> None:
    path, key = known_hosts
    keys = paramiko.HostKeys()
    assert isinstance(getattr(keys, "_entries", None), list), "paramiko moved HostKeys._entries"
    revoked = ClientFiles().known_hosts(keys, path, "gw")
    assert keys.lookup("[gw.example]:2222")[key.get_name()] == key
    assert revoked == frozenset({key.get_base64()})


def test_without_entries_the_public_add_fills_the_keys_alike(known_hosts: tuple[Path, paramiko.PKey]) -> None:
    path, key = known_hosts
    added: list[tuple[str, str, paramiko.PKey]] = []

    class Public:  # as a paramiko's HostKeys without _entries would be: only its public add()
        def add(self, hostname: str, keytype: str, k: paramiko.PKey) -> None:
            added.append((hostname, keytype, k))

    ClientFiles().known_hosts(Public(), path, "gw")  # type: ignore[arg-type]
    assert added == [("[gw.example]:2222", key.get_name(), key)]


def test_the_transport_hook_for_global_requests_is_where_remediate_expects_it() -> None:
    hook = getattr(paramiko.Transport, "_parse_global_request", None)
    assert callable(hook) and list(inspect.signature(hook).parameters) == ["self", "m"]
    assert callable(getattr(paramiko.Transport, "_send_message", None))
    assert _PromptAck._parse_global_request is not hook  # ours overrides it and calls it first
    assert "server_mode" in inspect.getsource(paramiko.Transport.__init__)


def test_the_transport_thread_waits_on_its_socket_for_the_look_interval_remediate_sets() -> None:
    """_PromptAck sets paramiko's _active_check_timeout (how long the thread's recv waits before it looks again whether
    the connection is still wanted) and shuts the socket down in stop_thread, before paramiko's own."""
    assert paramiko.Transport._active_check_timeout == 0.1  # type: ignore[attr-defined]  # paramiko's default
    assert "settimeout(self._active_check_timeout)" in inspect.getsource(paramiko.Transport.__init__)
    assert _PromptAck._active_check_timeout == 1.0  # type: ignore[attr-defined]
    assert list(inspect.signature(paramiko.Transport.stop_thread).parameters) == ["self"]
    assert "self.packetizer.close()" in inspect.getsource(paramiko.Transport.stop_thread)
    assert "self.stop_thread()" in inspect.getsource(paramiko.Transport.close)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Both ends of a TCP connection on loopback (a transport's socket is TCP: it turns Nagle off)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return ours, server


@pytest.mark.parametrize("made_here", [True, False], ids=["made here", "made by the parent of a forked child"])
def test_stop_thread_shuts_the_socket_down_only_in_the_process_that_made_the_connection(made_here: bool) -> None:
    """A forked child's exit stops every transport it inherited (paramiko's atexit): shutting their sockets down
    there would end its parent's connections, which still hold them (here: the duplicate kept open)."""
    ours, server = tcp_pair()
    kept = ours.dup()  # what the parent still holds after a fork
    try:
        transport = _PromptAck(ours)
        if not made_here:
            transport._made_by = os.getpid() + 1
        transport.stop_thread()
        server.settimeout(0.5)
        if made_here:
            assert server.recv(1) == b""  # the connection ended at once
        else:
            with pytest.raises(socket.timeout):
                server.recv(1)  # still open: the parent's to end
    finally:
        for s in (kept, server, ours):
            s.close()


def test_a_proxycommand_connection_keeps_paramikos_look_interval() -> None:
    """A ProxyCommand's pipe is no socket to shut down, and its recv spins once closed until the look's timeout."""
    proxy = paramiko.ProxyCommand("cat")
    try:
        assert _PromptAck(proxy)._active_check_timeout == 0.1  # type: ignore[attr-defined]
        ours, other = tcp_pair()
        assert _PromptAck(ours)._active_check_timeout == 1.0  # type: ignore[attr-defined]
        ours.close()
        other.close()
    finally:
        proxy.close()


def test_the_transport_prefers_aes_gcm_and_keeps_every_other_cipher_paramiko_offers() -> None:
    """_PromptAck puts AES-GCM first where paramiko has it, and drops nothing paramiko would offer: a server without
    GCM still finds its cipher. The handshakes below show paramiko reading the order from the instance."""
    ours = _PromptAck._preferred_ciphers  # type: ignore[attr-defined]
    assert ours[:2] == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    assert sorted(ours) == sorted(paramiko.Transport._preferred_ciphers)  # type: ignore[attr-defined]
    assert len(set(ours)) == len(ours)


def test_a_paramiko_without_gcm_keeps_its_own_order() -> None:
    """paramiko 3.4 (which pyproject allows) has no GCM: naming it there would make every handshake a server agrees
    to it fail on a KeyError."""
    before_gcm = ("aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-cbc")
    assert gcm_first(before_gcm, before_gcm) == before_gcm
    assert gcm_first((*before_gcm, "aes256-gcm@openssh.com"), {*before_gcm, "aes256-gcm@openssh.com"}) == (
        "aes256-gcm@openssh.com", *before_gcm)


@pytest.mark.parametrize("server_allows, agreed", [
    (None, "aes128-gcm@openssh.com"),  # a server as OpenSSH's default: GCM among the rest
    (("aes256-ctr",), "aes256-ctr"),  # a hardened Ciphers line without GCM
    (("aes128-cbc", "aes256-gcm@openssh.com"), "aes256-gcm@openssh.com"),
    (("aes128-cbc",), "aes128-cbc"),
], ids=["default", "ctr-only", "cbc-or-gcm256", "cbc-only"])
def test_a_handshake_agrees_on_gcm_when_the_server_allows_it_and_else_on_what_it_allows(
        server_allows: tuple[str, ...] | None, agreed: str) -> None:
    """A real key exchange, in process, against paramiko's own server: the order chosen is the order agreed, in both
    directions, and stays agreed after a rekey; a server without GCM is reached all the same."""
    ours, theirs = tcp_pair()
    server = paramiko.Transport(theirs)
    server.add_server_key(paramiko.RSAKey.generate(1024))
    if server_allows is not None:
        server.get_security_options().ciphers = server_allows
    client = _PromptAck(ours)
    try:
        server.start_server(threading.Event(), paramiko.ServerInterface())
        client.start_client(timeout=10)
        assert (client.local_cipher, client.remote_cipher) == (agreed, agreed)  # type: ignore[attr-defined]
        client.renegotiate_keys()
        assert (client.local_cipher, client.remote_cipher) == (agreed, agreed)  # type: ignore[attr-defined]
        assert client.is_active()
    finally:
        client.close()
        server.close()
