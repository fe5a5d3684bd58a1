"""The records of the commands that only read (inventory, playbooks, kinds, checks, diagnose) are typed events:
built with their fields, printed in their JSON form, read back from it, shown with every secret masked."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from remediate import api
from remediate.cli.render import HumanRenderer
from remediate.engine import events
from remediate.engine.events import Event

INVENTORY = """\
all:
  children:
    mx:
      vars: {db_password: hunter2}
      hosts:
        mx1: {ansible_host: 10.0.0.1, ansible_port: 2222, relay: "lmtp:[10.0.0.5]:2525"}
"""


def test_inventory_host_is_typed_and_its_json_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    host = api.inventory_host(path, "mx1")
    assert (host.port, host.vars["relay"].value) == (2222, "lmtp:[10.0.0.5]:2525")
    assert host.vars["relay"].origin.startswith("host (")
    printed = host.as_dict()
    assert list(printed) == ["event", "host", "address", "port", "user", "become", "vars"]
    assert printed["vars"]["relay"] == {"value": "lmtp:[10.0.0.5]:2525", "from": host.vars["relay"].origin}
    again = Event.parse(printed)
    assert isinstance(again, events.InventoryHost) and again.vars["relay"] == host.vars["relay"]


def test_a_secret_variable_is_masked_value_and_origin_when_shown(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    out = io.StringIO()
    HumanRenderer(Console(file=out, width=200))(api.inventory_host(path, "mx1"))
    assert "hunter2" not in out.getvalue() and '= "********"  ********' in out.getvalue()


def test_groups_playbooks_and_kinds_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    groups = {g.group: g for g in api.inventory_graph(path)}
    assert groups["all"].children == ["mx"] and groups["mx"].direct_hosts == ["mx1"]
    books, _ = api.playbooks()
    assert all(isinstance(b, events.PlaybookListed) and b.steps for b in books)
    kind = api.describe_kind("file").event()
    assert isinstance(kind, events.KindListed) and all(isinstance(p, events.ParamInfo) for p in kind.params)
    assert Event.parse(kind.as_dict()).as_dict() == kind.as_dict()
