"""Ansible-style YAML inventory -> frozen Host records, with Ansible's variable precedence."""

from __future__ import annotations

import os
import shlex
import threading
from collections.abc import Mapping
from dataclasses import field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from remediate import yamlin as source
from remediate.contract.host import Host as Host  # re-exported: an inventory's hosts
from remediate.errors import InputError
from remediate.records import record

DEFAULT_PATH: Final = "inventory.yml"
GROUP_KEYS: Final = frozenset({"hosts", "vars", "children"})
PASSWORD_MARKER: Final = "prompt"
# Ansible's password keys. remediate keeps none of them: sudo's comes from $REMEDIATE_BECOME_PASSWORD or a
# prompt, and SSH logs in with keys only. A literal value is refused; none of them reaches variables or journals.
BECOME_PASSWORD_KEYS: Final = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass", "ansible_sudo_password")
LOGIN_PASSWORD_KEYS: Final = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
# Ansible's own host variables (its "behavioral inventory parameters"): an existing inventory works unchanged,
# and any other ansible_* key is a typo, refused with the nearest name.
ANSIBLE_KEYS: Final = frozenset({
    "ansible_host", "ansible_port", "ansible_user", "ansible_connection", "ansible_ssh_host", "ansible_ssh_port",
    "ansible_ssh_user", "ansible_ssh_private_key_file", "ansible_private_key_file", "ansible_ssh_common_args",
    "ansible_sftp_extra_args", "ansible_scp_extra_args", "ansible_ssh_extra_args", "ansible_ssh_pipelining",
    "ansible_pipelining", "ansible_ssh_executable", "ansible_ssh_timeout", "ansible_timeout", "ansible_ssh_retries",
    "ansible_host_key_checking", "ansible_ssh_host_key_checking", "ansible_become", "ansible_become_method",
    "ansible_become_user", "ansible_become_exe", "ansible_become_flags", "ansible_shell_type",
    "ansible_shell_executable", "ansible_python_interpreter", "ansible_network_os", "ansible_remote_tmp",
    "ansible_connection_timeout", "ansible_command_timeout", *BECOME_PASSWORD_KEYS, *LOGIN_PASSWORD_KEYS,
})
_TRUE: Final = {"true", "yes", "on", "1"}
_FALSE: Final = {"false", "no", "off", "0"}


@record(frozen=True)
class Inventory:
    """Every host and group of one inventory file."""

    path: Path
    hosts: Mapping[str, Host]
    #: Every group's hosts, its child groups' included: what --host GROUP selects.
    groups: Mapping[str, tuple[str, ...]]
    #: Each group's child groups, as the inventory names them (`children:`, `[group:children]`), in its order.
    children: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: The hosts named in each group itself (its `hosts:`, its `[group]` lines).
    direct: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def select(self, patterns: tuple[str, ...] | list[str]) -> list[Host]:
        """Hosts named by host or group names, in inventory order, each once."""
        chosen: list[str] = []
        for pattern in patterns:
            if pattern in self.hosts:
                names = [pattern]
            elif pattern in self.groups:
                names = list(self.groups[pattern])
            else:
                known = ", ".join(sorted(self.hosts)) or "none"
                raise InputError(
                    f"{self.path}: no host or group named {pattern!r}",
                    hint=f"hosts in this inventory: {known}",
                )
            chosen.extend(n for n in names if n not in chosen)
        return [self.hosts[n] for n in chosen]

    def get(self, name: str, *, needed_by: str) -> Host:
        """A host by name, or an error saying who asked for it."""
        if name not in self.hosts:
            raise InputError(
                f"{self.path}: no host named {name!r} ({needed_by})",
                hint=f"add {name!r} to the inventory or set the variable to a host it has",
            )
        return self.hosts[name]


def default_path() -> Path:
    """$REMEDIATE_INVENTORY, else ./inventory.yml."""
    return Path(os.environ.get("REMEDIATE_INVENTORY") or DEFAULT_PATH)


#: The inventories parsed in this process, by path, home folder (`~` in a key file's path) and the file's bytes: the
#: same bytes are parsed once (serve plans every alert on one inventory, and ruamel's round-trip loader took about a
#: third of a 20-host plan's CPU), and a file that changes is parsed again at its next load.
_parsed: dict[tuple[str, str, bytes], Inventory] = {}
_parsing = threading.Lock()
_KEPT: Final = 8


def load(path: Path) -> Inventory:
    """Read and validate an inventory file."""
    if not path.exists():
        raise InputError(f"{path}: inventory not found",
                         hint="name one with -i PATH or $REMEDIATE_INVENTORY (default ./inventory.yml); "
                              "inventory.example.yml in the repository shows every key")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: inventory not found", hint="check the path of the inventory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the inventory: {e.strerror}") from e
    key = (str(path), os.path.expanduser("~"), raw)
    with _parsing:  # one parse at a time: serve's threads ask for the same inventory at once
        inventory = _parsed.get(key)
        if inventory is None:
            inventory = _parsed[key] = _parse(path, raw)
            while len(_parsed) > _KEPT:
                del _parsed[next(iter(_parsed))]
    return inventory


def _parse(path: Path, raw: bytes) -> Inventory:
    if _is_ini(path):
        if len(raw) > source.MAX_DOCUMENT_BYTES:
            raise InputError(f"{path}: the inventory is {len(raw)} bytes; more than {source.MAX_DOCUMENT_BYTES} is refused")
        from remediate.inputs import inventory_ini  # an INI inventory alone: a YAML one compiles none of its patterns

        doc = inventory_ini.parse(raw.decode("utf-8", errors="replace"), str(path))
    else:
        doc = source.parse(raw, str(path), what="inventory")
    return _Builder(path).build(doc)


@record
class _Group:
    vars: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # var -> file:line
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)


class _Builder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.groups: dict[str, _Group] = {}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.host_where: dict[str, str] = {}
        self.host_var_where: dict[str, dict[str, str]] = {}

    def build(self, doc: Any) -> Inventory:
        if not isinstance(doc, dict) or "all" not in doc:
            raise InputError(
                f"{source.where(self.name, doc)}: an inventory is a mapping with a top-level 'all:' group",
                hint="see inventory.example.yml",
            )
        extra = [k for k in doc if k != "all"]
        if extra:
            raise InputError(f"{source.where(self.name, doc, extra[0])}: unknown top-level key {extra[0]!r}; put groups under all: children:")
        self._group("all", doc["all"], parent=None, at=source.where(self.name, doc, "all"))
        depth = self._depths()
        hosts = {}
        for host in self.host_vars:
            merged: dict[str, Any] = {}
            origins: dict[str, str] = {}
            for group in sorted(self._groups_of(host), key=lambda g: (depth[g], g)):
                merged.update(self.groups[group].vars)
                origins.update({k: f"group {group} ({self.groups[group].where.get(k, self.name)})"
                                for k in self.groups[group].vars})
            merged.update(self.host_vars[host])
            origins.update({k: f"host ({w})" for k, w in self.host_var_where.get(host, {}).items()})
            hosts[host] = replace(self._host(host, merged), origins=MappingProxyType(
                {k: v for k, v in origins.items() if k in merged}))
        members = {name: tuple(h for h in self.host_vars if name in self._groups_of(h)) for name in self.groups}
        return Inventory(self.path, MappingProxyType(hosts), MappingProxyType(members),
                         children=MappingProxyType({name: tuple(g.children) for name, g in self.groups.items()}),
                         direct=MappingProxyType({name: tuple(g.hosts) for name, g in self.groups.items()}))

    def _group(self, name: str, node: Any, *, parent: str | None, at: str) -> None:
        group = self.groups.setdefault(name, _Group())
        if parent is not None:
            group.parents.add(parent)
            if name == parent or name in self._ancestors(parent):
                raise InputError(f"{at}: group {name!r} contains itself")
        if node is None:
            return
        if not isinstance(node, dict):
            raise InputError(f"{at}: group {name!r} must be a mapping with hosts:, vars: or children:")
        source.only_keys(self.name, node, GROUP_KEYS, "group")
        group.vars.update(self._mapping(node, "vars", f"vars of group {name!r}"))
        if isinstance(node.get("vars"), dict):
            group.where.update({str(k): source.where(self.name, node["vars"], k) for k in node["vars"]})
        hosts = node.get("hosts")
        if hosts is not None:
            if not isinstance(hosts, dict):
                raise InputError(f"{source.where(self.name, node, 'hosts')}: hosts: of group {name!r} must be a mapping of host names")
            for host, hvars in hosts.items():
                hat = source.where(self.name, hosts, host)
                if hvars is not None and not isinstance(hvars, dict):
                    raise InputError(f"{hat}: host {host!r} must map to its variables (or nothing)")
                self.host_vars.setdefault(str(host), {}).update(source.plain(hvars or {}))
                self.host_var_where.setdefault(str(host), {}).update(
                    {str(k): source.where(self.name, hvars, k) for k in (hvars or {})})
                self.host_where.setdefault(str(host), hat)
                if host not in group.hosts:
                    group.hosts.append(str(host))
        children = node.get("children")
        if children is not None:
            if not isinstance(children, dict):
                raise InputError(f"{source.where(self.name, node, 'children')}: children: of group {name!r} must be a mapping of group names")
            for child, cnode in children.items():
                if str(child) not in group.children:
                    group.children.append(str(child))
                self._group(str(child), cnode, parent=name, at=source.where(self.name, children, child))

    def _mapping(self, node: dict[Any, Any], key: str, what: str) -> dict[str, Any]:
        value = node.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise InputError(f"{source.where(self.name, node, key)}: {what} must be a mapping")
        plain: dict[str, Any] = source.plain(value)
        return plain

    def _ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = [name]
        while todo:
            for parent in self.groups.get(todo.pop(), _Group()).parents:
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    def _depths(self) -> dict[str, int]:
        depth: dict[str, int] = {}

        def of(name: str) -> int:
            if name not in depth:
                parents = self.groups[name].parents
                depth[name] = 1 + max((of(p) for p in parents), default=-1)
            return depth[name]

        for name in self.groups:
            of(name)
        return depth

    def _groups_of(self, host: str) -> set[str]:
        direct = {name for name, g in self.groups.items() if host in g.hosts}
        result = set(direct) | {"all"}
        for name in direct:
            result |= self._ancestors(name)
        return result

    def _host(self, name: str, merged: dict[str, Any]) -> Host:
        at = self.host_where[name]
        for key in merged:
            if key.startswith("ansible_") and key not in ANSIBLE_KEYS and not key.endswith("_interpreter") \
                    and not key.startswith("ansible_winrm_"):
                import difflib  # only a misspelt key needs it

                near = difflib.get_close_matches(key, sorted(ANSIBLE_KEYS), n=1)
                raise InputError(f"{at}: host {name!r}: {key!r} is not an Ansible variable remediate knows",
                                 hint=f"did you mean {near[0]!r}?" if near else "variables of your own must not "
                                                                                 "start with ansible_")
        port = merged.get("ansible_port")
        if port is not None:
            try:
                port = -1 if isinstance(port, bool) else int(port)  # true is not port 1
            except (TypeError, ValueError):
                port = -1
            if not 0 < port < 65536:
                raise InputError(f"{at}: host {name!r}: ansible_port must be a number from 1 to 65535, not {merged['ansible_port']!r}")
        for key in BECOME_PASSWORD_KEYS:
            if merged.get(key) is not None and merged[key] != PASSWORD_MARKER:
                raise InputError(
                    f"{at}: host {name!r}: {key} holds a password, and remediate never keeps one on disk",
                    hint=f"set it to {PASSWORD_MARKER!r} (ask on the terminal) or leave it out, and export REMEDIATE_BECOME_PASSWORD",
                )
        for key in LOGIN_PASSWORD_KEYS:
            if merged.get(key) is not None:
                raise InputError(f"{at}: host {name!r}: {key} holds a password; remediate logs in with SSH keys only and "
                                 "never keeps a password on disk",
                                 hint="remove it, and set ansible_ssh_private_key_file or load the key into ssh-agent")
        password = next((merged[k] for k in BECOME_PASSWORD_KEYS if merged.get(k) is not None), None)
        python: tuple[str, ...] = ("python3",)
        interpreter = merged.get("ansible_python_interpreter")
        if isinstance(interpreter, str) and interpreter.strip() and not interpreter.startswith("auto"):
            try:
                python = tuple(shlex.split(interpreter))
            except ValueError as e:
                raise InputError(f"{at}: host {name!r}: ansible_python_interpreter {interpreter!r}: {e}") from None
        return Host(
            name=name,
            address=str(merged.get("ansible_host") or name),
            port=port,
            user=_opt_str(merged.get("ansible_user")),
            key_file=self._path(merged.get("ansible_ssh_private_key_file")),
            become=_bool(merged.get("ansible_become", False), f"{at}: host {name!r}: ansible_become"),
            become_password_prompt=password == PASSWORD_MARKER,
            known_hosts_file=self._path(merged.get("ssh_known_hosts_file")),
            python=python,
            agent=_bool(merged.get("remediate_agent", True), f"{at}: host {name!r}: remediate_agent"),
            vars=MappingProxyType({k: v for k, v in merged.items() if k not in BECOME_PASSWORD_KEYS}),
            where=at,
        )

    def _path(self, value: Any) -> str | None:
        if value in (None, ""):
            return None
        path = Path(os.path.expanduser(str(value)))
        if not path.is_absolute():
            path = self.path.parent / path
        return str(path)


def graph(inventory: Inventory) -> list[dict[str, Any]]:
    """Every group, for `remediate inventory --graph`: all its hosts (its child groups' included, as --host GROUP
    selects them), and the child groups and hosts named in it, from which the tree is drawn."""
    return [{"group": name, "hosts": list(members), "children": list(inventory.children.get(name, ())),
             "direct_hosts": list(inventory.direct.get(name, ()))} for name, members in inventory.groups.items()]


def _is_ini(path: Path) -> bool:
    """Ansible's INI format: a .ini file, or a file that is not .yml/.yaml and reads like one (`hosts`)."""
    if path.suffix in (".ini", ".cfg"):
        return True
    if path.suffix in (".yml", ".yaml", ".json"):
        return False
    from remediate.inputs import inventory_ini

    try:
        return inventory_ini.looks_like_ini(path.read_text(encoding="utf-8", errors="replace")[:65536])
    except OSError:
        return False


def _opt_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in _TRUE:
        return True
    if str(value).lower() in _FALSE:
        return False
    raise InputError(f"{what} must be true or false, not {value!r}")
