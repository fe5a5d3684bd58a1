"""Ansible's INI inventory format -> the same document a YAML inventory gives, every key remembering its line.

As Ansible documents it: `[group]` sections of host lines (`host key=value ...`, `host:port`, ranges such as
`web[01:20].example.com` or `db-[a:c]`), `[group:vars]` of `key=value` lines, and `[group:children]` of group
names; hosts before any section are in `ungrouped`. Inline host values are read as literals (numbers, booleans,
lists); values under `:vars` stay strings. `#` and `;` start comments.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
import shlex
from typing import Any, Final

from ruamel.yaml.comments import CommentedMap

from remediate.errors import InputError

SECTION: Final = re.compile(r"^\[(?P<name>[^\]:\s]+)(?::(?P<kind>vars|children))?\]\s*$")
HOST_PORT: Final = re.compile(r"^(?P<host>.+?)(?::(?P<port>[0-9]+))?$")
RANGE: Final = re.compile(r"\[(?P<start>[0-9]+|[a-z]):(?P<end>[0-9]+|[a-z])(?::(?P<step>[0-9]+))?\]")
#: How many hosts one host line may name through its ranges, and one file in all: h[0:9999][0:9999] is 10^8 hosts,
#: which took two minutes to end in MemoryError.
MAX_HOSTS_PER_LINE: Final = 10_000
MAX_HOSTS: Final = 100_000


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
    named = 0  # host names on host lines so far, ranges expanded
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
            _var_line(group, line, section, name, number)
        else:
            named = _host_line(group, words, named, name, number)
    return _document(groups)


def _var_line(group: CommentedMap, line: str, section: str, name: str, number: int) -> None:
    """A key=value line under [group:vars]: the value stays a string (quotes taken off)."""
    key, sep, value = line.partition("=")
    if not sep or not key.strip():
        raise InputError(f"{name}:{number}: expected key=value under [{section}:vars], not {line!r}")
    _add(group.setdefault("vars", CommentedMap()), key.strip(), _unquote(value.strip()), number)


def _host_line(group: CommentedMap, words: list[str], named: int, name: str, number: int) -> int:
    """A host line (`host[:port] key=value ...`, ranges expanded) added to group; the host names counted so far."""
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
    expanded = _expand(host, name, number)
    named += len(expanded)
    if named > MAX_HOSTS:
        raise InputError(f"{name}:{number}: the inventory names more than {MAX_HOSTS:,} hosts; refusing it",
                         hint="split the fleet over several inventories")
    for each in expanded:
        host_vars = CommentedMap()
        for key, value in items:
            _add(host_vars, key, value, number)
        _add(hosts, each, host_vars if items else None, number)
    return named


def _document(groups: dict[str, CommentedMap]) -> CommentedMap:
    """The groups read as the YAML inventory's document: all's own vars and hosts, then each top-level group."""
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
    """The hosts a host pattern names: web[01:03] is web01, web02, web03; counted before any is made."""
    matches = list(RANGE.finditer(host))
    if not matches:
        return [host]
    ranges = [_range(m, host, name, number) for m in matches]
    count = math.prod(len(r) for r in ranges)
    if count == 0:
        raise InputError(f"{name}:{number}: the range in {host!r} is empty")
    if count > MAX_HOSTS_PER_LINE:
        raise InputError(f"{name}:{number}: {host!r} names {count:,} hosts; a host line may name at most "
                         f"{MAX_HOSTS_PER_LINE:,}", hint="check the bounds of its ranges")
    # The text around the ranges, and each range's values as text: web[08:10] gives 08, 09, 10.
    around = [host[:matches[0].start()], *(host[a.end():b.start()] for a, b in itertools.pairwise(matches)),
              host[matches[-1].end():]]
    values = [[str(i).zfill(len(m["start"])) if m["start"].isdigit() else chr(i) for i in r] for m, r in zip(matches, ranges)]
    return ["".join(itertools.chain.from_iterable(zip(around, (*items, "")))) for items in itertools.product(*values)]


def _range(match: re.Match[str], host: str, name: str, number: int) -> range:
    """One [start:end] or [start:end:step] of a host pattern, as numbers (letters as their code points)."""
    start, end, step = match["start"], match["end"], int(match["step"] or 1)
    if start.isdigit() != end.isdigit():
        raise InputError(f"{name}:{number}: the range in {host!r} mixes letters and numbers")
    if step == 0:
        raise InputError(f"{name}:{number}: the range {match[0]} in {host!r} has step 0", hint="a step is 1 or more")
    if start.isdigit():
        return range(int(start), int(end) + 1, step)
    return range(ord(start), ord(end) + 1, step)
