"""What a fleet's threads and serve's plans share is parsed once: one compose text asked for by 20 threads at once,
and an unchanged inventory loaded again (a changed file is parsed anew)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from remediate.inputs import inventory
from remediate.mail import compose

COMPOSE = "services:\n  postfix:\n    environment:\n      - RELAYHOST=[127.0.0.11]:25\n"
INVENTORY = "all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n"


def test_threads_sharing_a_compose_text_parse_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    compose._parsed.cache_clear()
    real = compose.source.parse
    inside: list[str] = []
    more = threading.Event()

    def counting(raw: Any, name: str, *, what: str) -> Any:
        inside.append(name)
        if len(inside) > 1:
            more.set()
        more.wait(1.0)  # the first parse stays open until a second one starts (or a second passes)
        return real(raw, name, what=what)

    monkeypatch.setattr(compose.source, "parse", counting)
    threads = [threading.Thread(target=compose.service_env, args=(COMPOSE, "postfix", "c.yml")) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(inside) == 1


def test_an_unchanged_inventory_is_parsed_once_and_a_changed_one_again(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    parses: list[str] = []
    real = inventory.source.parse

    def counting(raw: Any, name: str, *, what: str) -> Any:
        parses.append(name)
        return real(raw, name, what=what)

    monkeypatch.setattr(inventory.source, "parse", counting)
    first = inventory.load(path)
    assert inventory.load(path) is first and len(parses) == 1
    path.write_text(INVENTORY.replace("web1", "web2"))
    assert list(inventory.load(path).hosts) == ["web2"] and len(parses) == 2
