"""The two places remediate reaches into paramiko past its public API, held to what they rely on, so that a new
paramiko (pyproject allows below the next major) that moves them fails here, not on a host."""

from __future__ import annotations

import inspect
from pathlib import Path

import paramiko
import pytest

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
