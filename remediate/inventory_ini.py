"""Ansible's INI inventory format -> the same document a YAML inventory gives, every key remembering its line.

As Ansible documents it: `[group]` sections of host lines (`host key=value ...`, `host:port`, ranges such as
`web[01:20].example.com` or `db-[a:c]`), `[group:vars]` of `key=value` lines, and `[group:children]` of group
names; hosts before any section are in `ungrouped`. Inline host values are read as literals (numbers, booleans,
lists); values under `:vars` stay strings. `#` and `;` start comments.
"""

from __future__ import annotations

import ast
import re
import shlex
from typing import Any, Final

from ruamel.yaml.comments import CommentedMap

from .errors import InputError

SECTION: Final = re.compile(r"^\[(?P<name>[^\]:\s]+)(?::(?P<kind>vars|children))?\]\s*$")
HOST_PORT: Final = re.compile(r"^(?P<host>.+?)(?::(?P<port>[0-9]+))?$")
RANGE: Final = re.compile(r"\[(?P<start>[0-9]+|[a-z]):(?P<end>[0-9]+|[a-z])(?::(?P<step>[0-9]+))?\]")


def looks_like_ini(text: str) -> bool:
    """True when the first line that is not a comment is an INI section header or a bare host line."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        return bool(SECTION.match(stripped)) or (":" not in stripped.split()[0] and "=" in stripped)
    return False


def parse(text: str, name: str) -> CommentedMap:
    """The inventory as {all: {children: {group: {hosts:, vars:, children:}}}}, lines recorded for errors."""
    groups: dict[str, CommentedMap] = {}
    section, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        header = SECTION.match(line)
        if header:
            section, kind = header["name"], header["kind"] or "hosts"
            _group(groups, section, number)
            continue
        if line.startswith("["):
            raise InputError(f"{name}:{number}: not a section header: {line!r}",
                             hint="write [group], [group:vars] or [group:children]")
        group = _group(groups, section, number)
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise InputError(f"{name}:{number}: cannot read {line!r}: {e}") from None
        if kind == "children":
            _add(group.setdefault("children", CommentedMap()), words[0], None, number)
            _group(groups, words[0], number)
        elif kind == "vars":
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise InputError(f"{name}:{number}: expected key=value under [{section}:vars], not {line!r}")
            _add(group.setdefault("vars", CommentedMap()), key.strip(), _unquote(value.strip()), number)
        else:
            items: list[tuple[str, Any]] = []
            host, port = HOST_PORT.match(words[0]).group("host", "port")  # type: ignore[union-attr]
            if port:
                items.append(("ansible_port", int(port)))
            for word in words[1:]:
                key, sep, value = word.partition("=")
                if not sep:
                    raise InputError(f"{name}:{number}: expected key=value after the host, not {word!r}")
                items.append((key, _literal(value)))
            hosts = group.setdefault("hosts", CommentedMap())
            for each in _expand(host, name, number):
                host_vars = CommentedMap()
                for key, value in items:
                    _add(host_vars, key, value, number)
                _add(hosts, each, host_vars if items else None, number)
    doc, root = CommentedMap(), CommentedMap()
    _add(doc, "all", root, 1)
    all_group = groups.pop("all", None)
    if all_group is not None:
        for key in ("vars", "hosts"):
            if key in all_group:
                _add(root, key, all_group[key], all_group.lc.line + 1)
    children = CommentedMap()
    nested = {child for g in groups.values() for child in (g.get("children") or {})}
    for group_name, group in groups.items():
        if group_name not in nested:
            _add(children, group_name, group, group.lc.line + 1)
    for group in groups.values():  # a child group's own content, wherever it is named
        for child in list(group.get("children") or {}):
            group["children"][child] = groups[child]
    if children:
        _add(root, "children", children, 1)
    return doc


def _group(groups: dict[str, CommentedMap], name: str, number: int) -> CommentedMap:
    if name not in groups:
        groups[name] = CommentedMap()
        groups[name].lc.line, groups[name].lc.col = number - 1, 0
    return groups[name]


def _add(mapping: CommentedMap, key: str, value: Any, number: int) -> None:
    mapping[key] = value
    mapping.lc.add_kv_line_col(key, [number - 1, 0, number - 1, 0])


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" else value


def _literal(value: str) -> Any:
    """An inline host value as Ansible reads it: a Python literal when it is one, else the string."""
    if value in ("true", "false", "True", "False", "yes", "no"):
        return value  # the inventory's own boolean reading applies later
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _expand(host: str, name: str, number: int) -> list[str]:
    match = RANGE.search(host)
    if not match:
        return [host]
    start, end, step = match["start"], match["end"], int(match["step"] or 1)
    if start.isdigit() != end.isdigit():
        raise InputError(f"{name}:{number}: the range in {host!r} mixes letters and numbers")
    if start.isdigit():
        items = [str(i).zfill(len(start)) for i in range(int(start), int(end) + 1, step)]
    else:
        items = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    if not items:
        raise InputError(f"{name}:{number}: the range in {host!r} is empty")
    return [h for item in items for h in _expand(host[:match.start()] + item + host[match.end():], name, number)]
