"""Connections opened while a run prepares (TransportPool.warm): the run uses them as if it had opened them itself,
meets their failures where it would have, and leaves none open. No SSH here: the transports are fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from remediate.contract.host import HOST, LOCAL, Host
from remediate.engine.context import TransportPool
from remediate.errors import ConnectError


class Fake:
    def __init__(self, name: str) -> None:
        self.name, self.warmed, self.closed = name, 0, 0
        self.warmed_in = ""

    def warm(self) -> None:
        self.warmed += 1
        self.warmed_in = threading.current_thread().name

    def close(self) -> None:
        self.closed += 1


def hosts(n: int) -> list[Host]:
    return [Host(name=f"h{i}", address=f"127.0.0.{20 + i}") for i in range(1, n + 1)]


def test_the_first_forks_hosts_are_connected_in_the_background_and_each_once() -> None:
    made: list[str] = []
    release = threading.Event()

    def factory(host: Host) -> Any:
        made.append(host.name)
        if host.name == "h1":
            assert release.wait(10)  # get() must wait for it rather than open a second connection
        return Fake(host.name)

    pool = TransportPool(None, factory)
    targets = hosts(4)
    pool.warm(targets, forks=2)
    got: list[Any] = []
    getter = threading.Thread(target=lambda: got.append(pool.get(HOST, targets[0])))
    getter.start()
    getter.join(0.2)
    assert getter.is_alive() and not got, "get() waits for the connection being made"
    release.set()
    getter.join(10)
    first = got[0]
    assert first.name == "h1" and first.warmed == 1 and first.warmed_in == "warm-h1"
    assert pool.get(HOST, targets[0]) is first and pool.get(HOST, targets[1]).warmed == 1
    third = pool.get(HOST, targets[2])  # past --forks: opened when needed, as before
    assert third.warmed == 0 and sorted(made) == ["h1", "h2", "h3"]
    pool.close()
    assert first.closed == third.closed == 1


def test_a_connection_that_failed_in_the_background_fails_where_the_host_is_needed() -> None:
    calls: list[str] = []

    def factory(host: Host) -> Any:
        calls.append(host.name)
        if len(calls) == 1:
            raise ConnectError(f"{host.name}: cannot connect after 3 attempts")
        return Fake(host.name)

    pool = TransportPool(None, factory)
    [host] = hosts(1)
    pool.warm([host], forks=20)
    with pytest.raises(ConnectError, match="h1: cannot connect after 3 attempts"):
        pool.get(HOST, host)
    assert pool.get(HOST, host).name == "h1" and calls == ["h1", "h1"]  # asked again: opened again, as before


def test_connections_a_run_never_used_are_closed_with_it_even_those_still_opening() -> None:
    release = threading.Event()
    made: list[Fake] = []

    def factory(host: Host) -> Any:
        if host.name == "h2":
            assert release.wait(10)
        made.append(Fake(host.name))
        return made[-1]

    pool = TransportPool(None, factory)
    pool.warm(hosts(2), forks=2)
    for thread in threading.enumerate():
        if thread.name == "warm-h1":
            thread.join(10)
    pool.close()  # a bad playbook: the run ends before it needs a host
    release.set()
    for thread in threading.enumerate():
        if thread.name == "warm-h2":
            thread.join(10)
    assert [(f.name, f.closed, f.warmed) for f in made] == [("h1", 1, 1), ("h2", 1, 0)]  # h2: nothing started


def test_the_local_target_is_never_warmed() -> None:
    pool = TransportPool(None, lambda host: Fake(host.name))
    pool.warm([Host(name=LOCAL, address="localhost")], forks=5)
    assert not pool._warming


LAZY = """
import json, sys
from remediate.cli.app import renderer
from remediate.engine import events
render = renderer(False)
before = "rich" in sys.modules
render(events.Notice("h1", "hello"))
print(json.dumps([before, "rich" in sys.modules]))
"""


def test_the_human_renderer_imports_rich_when_it_first_shows_something_in_colour() -> None:
    env = {**os.environ, "FORCE_COLOR": "1"}  # rich then colours even a pipe
    done = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=60, check=True, env=env)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, True]
    assert "hello" in done.stderr and "\x1b[" in done.stderr  # a notice goes to stderr, in colour


def test_the_human_renderer_never_imports_rich_for_a_pipe() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    done = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=60, check=True, env=env)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False, False]
    assert "! hello" in done.stderr and "\x1b" not in done.stderr


def test_a_host_with_become_gets_its_connection_warmed_but_its_agent_only_when_a_command_needs_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from remediate.transport.ssh import ClientFiles, SSHTransport
    started: list[bool] = []
    for become in (False, True):
        t = SSHTransport(name="h1", become=become, host=Host(name="h1", address="127.0.0.21", become=become),
                         files=ClientFiles())
        monkeypatch.setattr(t, "_start_agent", lambda sudo: started.append(sudo))
        t.warm()
    assert started == [False], "sudo may ask for a password: never asked for from a background thread"


def test_binding_errors_surface_before_any_connection(tmp_path: Any) -> None:
    from remediate import api
    from remediate.engine.options import Options
    from remediate.errors import InputError
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n      message: '{{ nope }}'\n")
    book = tmp_path / "book.yml"
    book.write_text("name: b\nsteps:\n  - id: f\n    kind: file\n    params: {path: /tmp/x, content: '{{ message }}'}\n")
    made: list[str] = []
    with pytest.raises(InputError):
        api.prepare(Options(inventory=inv, hosts=("h1",), playbook=str(book)), lambda e: None,
                    lambda host: made.append(host.name))  # type: ignore[arg-type,func-returns-value]
    for thread in threading.enumerate():
        if thread.name.startswith("warm-"):
            thread.join(10)  # a connection begun before the error would have been made by now
    assert made == []
