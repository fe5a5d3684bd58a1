from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from remediate.cli import main as cli
from remediate.cli.render import HumanRenderer
from remediate.errors import InputError
from remediate.inputs import inventory


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return path


NESTED = """\
all:
  vars:
    ansible_user: alice
    level: all
    only_all: true
  hosts:
    solo:
      ansible_host: 127.0.0.21
  children:
    mail:
      vars:
        level: mail
        ansible_port: 2200
      children:
        gateways:
          vars:
            level: gateways
          hosts:
            ec2-mx:
              ansible_host: 127.0.0.10
              level: host
              ansible_become: yes
              ansible_ssh_private_key_file: keys/id
              ssh_known_hosts_file: ~/kh
        mailboxes:
          hosts:
            dell:
"""


def test_variables_merge_host_over_child_over_parent_over_all(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, NESTED))
    mx = inv.hosts["ec2-mx"]
    assert mx.vars["level"] == "host"
    assert inv.hosts["dell"].vars["level"] == "mail"
    assert inv.hosts["solo"].vars["level"] == "all"
    assert mx.vars["only_all"] is True
    assert (mx.address, mx.port, mx.user, mx.become) == ("127.0.0.10", 2200, "alice", True)
    assert mx.key_file == str(tmp_path / "keys" / "id")
    assert mx.known_hosts_file == str(Path.home() / "kh")
    assert inv.hosts["dell"].address == "dell"
    assert inv.hosts["solo"].port is None


def test_child_group_overrides_its_parent_whatever_the_names(tmp_path: Path) -> None:
    text = """\
all:
  children:
    zz_parent:
      vars: {x: parent}
      children:
        aa_child:
          vars: {x: child}
          hosts: {h: }
"""
    assert inventory.load(write(tmp_path, text)).hosts["h"].vars["x"] == "child"


def test_select_by_group_and_host_keeps_order_without_duplicates(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, NESTED))
    assert [h.name for h in inv.select(["mail", "ec2-mx"])] == ["ec2-mx", "dell"]
    assert [h.name for h in inv.select(["solo"])] == ["solo"]


def test_unknown_host_names_the_inventory_and_lists_hosts(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, NESTED))
    with pytest.raises(InputError) as e:
        inv.select(["ec2-mxx"])
    assert "no host or group named 'ec2-mxx'" in str(e.value)
    assert "dell, ec2-mx, solo" in str(e.value)


@pytest.mark.parametrize(("text", "where", "words"), [
    ("all:\n  hosts:\n    a:\n      ansible_port: eighty\n", ":3", "ansible_port must be a number"),
    ("all:\n  hosts:\n    a:\n      ansible_become_password: hunter2\n", ":3", "never keeps one on disk"),
    ("all:\n  hostz:\n    a:\n", ":2", "unknown group key 'hostz'"),
    ("all:\n  hosts: [a, b]\n", ":2", "must be a mapping of host names"),
    ("all:\n  hosts:\n    a: [1]\n", ":3", "must map to its variables"),
    ("all:\n  hosts:\n    a:\n      ansible_become: maybe\n", ":3", "ansible_become must be true or false"),
    ("servers:\n  hosts: {a: }\n", "", "top-level 'all:' group"),
    ("all:\n  hosts:\n    a: {x: 1\n", ":4", "not valid YAML"),
])
def test_bad_inventories_cite_file_and_line(tmp_path: Path, text: str, where: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as e:
        inventory.load(path)
    message = str(e.value)
    assert message.startswith(f"{path}{where}:"), message
    assert words in message
    assert "hunter2" not in message


def test_password_marker_means_ask(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, "all:\n  hosts:\n    a:\n      ansible_become_password: prompt\n"))
    assert inv.hosts["a"].become_password_prompt
    assert "ansible_become_password" not in inv.hosts["a"].vars


def test_missing_inventory_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="inventory not found"):
        inventory.load(tmp_path / "nope.yml")


def test_binary_inventory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_bytes(b"all:\x00\x01\x02")
    with pytest.raises(InputError, match="binary"):
        inventory.load(path)


def test_default_path_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert inventory.default_path() == Path("inventory.yml")
    monkeypatch.setenv("REMEDIATE_INVENTORY", "/etc/remediate/hosts.yml")
    assert inventory.default_path() == Path("/etc/remediate/hosts.yml")


def test_the_example_inventory_loads() -> None:
    inv = inventory.load(Path(__file__).resolve().parents[2] / "inventory.example.yml")
    assert {"ec2-mx", "dell"} <= set(inv.hosts)


def test_an_unknown_ansible_key_is_a_typo_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    h1:\n      ansible_hots: 10.0.0.1\n")
    with pytest.raises(InputError, match="did you mean 'ansible_host'"):
        inventory.load(path)
    path.write_text("all:\n  vars:\n    ansible_python_interpreter: /usr/bin/python3\n    ansible_connection: ssh\n"
                    "  hosts:\n    h1:\n      ansible_become_method: sudo\n")
    assert inventory.load(path).hosts["h1"].vars["ansible_connection"] == "ssh"  # Ansible's own keys: unchanged


def test_a_missing_inventory_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        inventory.load(tmp_path / "inventory.yml")
    assert "-i PATH" in str(e.value) and "REMEDIATE_INVENTORY" in str(e.value) and "inventory.example.yml" in str(e.value)


CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "ansible"


def test_an_ini_inventory_merges_exactly_as_its_yaml_twin(tmp_path: Path) -> None:
    ini, yml = inventory.load(CORPUS / "hosts.ini"), inventory.load(CORPUS / "hosts.yml")
    assert sorted(ini.hosts) == sorted(yml.hosts) and len(ini.hosts) == 6  # mx[01:03] expanded
    for name, host in yml.hosts.items():
        twin = ini.hosts[name]
        assert (twin.address, twin.port, twin.user, twin.become, dict(twin.vars)) == \
               (host.address, host.port, host.user, host.become, dict(host.vars)), name
    assert {g: sorted(m) for g, m in ini.groups.items()} == {g: sorted(m) for g, m in yml.groups.items()}
    plain = tmp_path / "hosts"  # no extension, as Ansible's default /etc/ansible/hosts
    plain.write_text((CORPUS / "hosts.ini").read_text())
    assert sorted(inventory.load(plain).hosts) == sorted(ini.hosts)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("[mx]\nmx1\n[mx:vars\n", 3, "not a section header"),
    ("[mx]\nmx1\n[mx:vars]\njust-a-word\n", 4, "expected key=value"),
    ("[mx]\nmx1 ansible_port\n", 2, "expected key=value after the host"),
    ("[mx]\nmx1 ansible_hots=x\n", 2, "did you mean 'ansible_host'"),
])
def test_ini_errors_cite_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with pytest.raises(InputError, match=words) as e:
        inventory.load(path)
    assert f"{path}:{line}" in str(e.value)


def test_the_agent_interpreter_comes_from_ansible_python_interpreter(tmp_path: Path) -> None:
    inv = inventory.load(write(tmp_path, "all:\n  hosts:\n    a: {}\n    b:\n      ansible_python_interpreter: "
                                         "/usr/libexec/platform-python\n    c:\n      ansible_python_interpreter: "
                                         "auto_silent\n    d:\n      remediate_agent: false\n"
                                         "      ansible_python_interpreter: /opt/py/bin/python3\n"
                                         "    e:\n      ansible_python_interpreter: /usr/bin/env python3\n"))
    assert [inv.hosts[n].python for n in "abcde"] == [("python3",), ("/usr/libexec/platform-python",), ("python3",),
                                                     ("/opt/py/bin/python3",), ("/usr/bin/env", "python3")]
    # remediate_agent: false keeps the interpreter: each operation runs it once, instead of one agent for the run
    assert [inv.hosts[n].agent for n in "abcde"] == [True, True, True, False, True]
    with pytest.raises(InputError, match="remediate_agent"):
        inventory.load(write(tmp_path, "all:\n  hosts:\n    a:\n      remediate_agent: sometimes\n"))


@pytest.mark.parametrize(("line", "words"), [
    ("h[0:9999][0:9999]", "'h\\[0:9999\\]\\[0:9999\\]' names 100,000,000 hosts; a host line may name at most 10,000"),
    ("h[0:10:0]", "the range \\[0:10:0\\] in 'h\\[0:10:0\\]' has step 0"),
    ("h[9:0]", "the range in 'h\\[9:0\\]' is empty"),
])
def test_an_ini_host_range_is_counted_before_it_is_expanded(tmp_path: Path, line: str, words: str) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(f"[mx]\nmx1\n{line}\n")
    with pytest.raises(InputError, match=f"^{path}:3: {words}"):
        inventory.load(path)


def test_an_ini_inventory_names_at_most_100000_hosts(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[mx]\n" + "".join(f"g{i}-[0:9999]\n" for i in range(11)))
    with pytest.raises(InputError, match=f"^{path}:12: the inventory names more than 100,000 hosts"):
        inventory.load(path)
    path.write_text("[mx]\nweb[08:10]-[a:b] ansible_port=2222\n")
    hosts = inventory.load(path).hosts
    assert list(hosts) == ["web08-a", "web08-b", "web09-a", "web09-b", "web10-a", "web10-b"]
    assert {h.port for h in hosts.values()} == {2222}


def test_inventory_host_shows_a_key_path_and_masks_a_secret_without_crashing(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    mx1:\n      ansible_host: 127.0.0.10\n"
                           "      ansible_ssh_private_key_file: /home/op/.ssh/id_mx\n      relay_password: hunter2 horse\n")
    human = CliRunner().invoke(cli.cli, ["inventory", "--host", "mx1", "-i", str(path)])
    assert human.exit_code == 0, human.output
    assert re.search(r"ansible_ssh_private_key_file = \"/home/op/.ssh/id_mx\"  host \(.*inventory.yml:5\)", human.output)
    assert "relay_password" in human.output and "hunter2" not in human.output
    shown = CliRunner().invoke(cli.cli, ["inventory", "--host", "mx1", "-i", str(path), "--json"])
    assert shown.exit_code == 0, shown.output
    variables = json.loads(shown.output)["vars"]
    assert variables["ansible_ssh_private_key_file"]["value"] == "/home/op/.ssh/id_mx"
    assert variables["relay_password"]["value"] == "********" and "hunter2" not in shown.output


# --- issue #25: `inventory --graph` draws nested groups as a tree, as `ansible-inventory --graph` does --------------

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "ansible"
TREE = """\
@all:
  |--@ungrouped:
  |  |--mail-canary.example.net
  |--@mail:
  |  |--@mx:
  |  |  |--mx01.example.net
  |  |  |--mx02.example.net
  |  |  |--mx03.example.net
  |  |  |--mx-eu.example.net
  |  |--@mailbox:
  |  |  |--dell
"""


def graph_as_shown(path: Path) -> str:
    """What `remediate inventory --graph` prints: one inventory_group event per group, to the human renderer."""
    out = io.StringIO()
    render = HumanRenderer(Console(file=out, highlight=False, soft_wrap=True))
    for group in inventory.graph(inventory.load(path)):
        render({"event": "inventory_group", **group})
    return out.getvalue()


@pytest.mark.parametrize("name", ["hosts.yml", "hosts.ini"])
def test_graph_draws_child_groups_as_a_tree_from_yaml_and_ini(name: str) -> None:
    assert graph_as_shown(CORPUS / name) == TREE  # [mail:children] was flattened: @mail with every host, no @mx


def test_graph_keeps_each_groups_hosts_whole_for_json_and_adds_its_children() -> None:
    groups = {g["group"]: g for g in inventory.graph(inventory.load(CORPUS / "hosts.ini"))}
    assert groups["mail"]["hosts"] == ["mx01.example.net", "mx02.example.net", "mx03.example.net",
                                       "mx-eu.example.net", "dell"]  # as before: what --host mail selects
    assert groups["mail"]["children"] == ["mx", "mailbox"] and groups["mail"]["direct_hosts"] == []
    assert groups["all"]["children"] == ["ungrouped", "mail"] and groups["mx"]["direct_hosts"][-1] == "mx-eu.example.net"


def test_graph_draws_a_group_under_each_of_its_parents_and_the_hosts_of_all(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    solo:\n  children:\n    eu:\n      children:\n        shared:\n"
                           "          hosts:\n            mx1:\n    us:\n      hosts:\n        mx2:\n      children:\n"
                           "        shared:\n")
    assert graph_as_shown(path) == ("@all:\n  |--@eu:\n  |  |--@shared:\n  |  |  |--mx1\n  |--@us:\n  |  |--@shared:\n"
                                    "  |  |  |--mx1\n  |  |--mx2\n  |--solo\n")


def test_an_event_without_children_is_still_shown_flat() -> None:
    """The renderer also takes the older shape (a group and all its hosts)."""
    out = io.StringIO()
    HumanRenderer(Console(file=out, highlight=False))({"event": "inventory_group", "group": "mail", "hosts": ["a", "b"]})
    assert out.getvalue() == "@mail:\n  |--a\n  |--b\n"
