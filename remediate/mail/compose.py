"""Minimal, proven edits of a docker-compose service's environment: text in, text out.

Every edit touches only the lines of the entries it changes, in the file's own quoting style and line
endings. After the edit both versions are parsed, and the edit is refused unless the only semantic
difference is the intended one (so a shared anchor, a multi-line value or a surprise is caught).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from remediate import yamlin as source
from remediate.errors import InputError
from remediate.records import record

Env = dict[str, "str | None"]


class PartlyElsewhere(InputError):
    """A service compose assembles partly from elsewhere (extends:), which remediate does not read: what it would
    plan from is only part of the service. diagnose calls the checks that read it undecided; the kinds refuse."""


#: One parse at a time. lru_cache alone lets every thread that asks for a text before the first parse of it ends
#: parse it too (16 of a 20-host fleet's threads did, for the one text they share); parsing is Python holding the
#: GIL, so waiting for the first costs no wall time, and each text is parsed once.
_parsing = threading.Lock()


@record(frozen=True)
class Entry:
    """One environment entry and where its text sits."""

    key: str
    value: str | None
    line: int  # 0-based
    start: int  # column where the entry's text (list item, or mapping key) starts
    style: str  # "list" or "map"


def parse(text: str, name: str) -> Any:
    """The compose document; parsed once per text, whatever its file's name (a plan reads the same file several
    times, and a fleet's hosts often share one text). Callers only read it: edits are made to the text and proven
    by parsing again. A text that does not parse is parsed again under its own name, for the error."""
    try:
        with _parsing:
            return _parsed(text)
    except InputError:
        return source.parse(text.encode("utf-8"), name, what="compose file")


@functools.lru_cache(maxsize=128)
def _parsed(text: str) -> Any:
    return source.parse(text.encode("utf-8"), "<compose file>", what="compose file")


def service_env(text: str, service: str, name: str) -> Env:
    """The service's environment as compose reads it, in file order."""
    return {e.key: e.value for e in _entries(parse(text, name), service, name)}


def service_node(doc: Any, service: str, name: str) -> Any:
    services = doc.get("services") if isinstance(doc, dict) else None
    included = doc.get("include") if isinstance(doc, dict) else None
    elsewhere = f"; it may come from this file's include: ({source.where(name, doc, 'include')}), which remediate " \
        "does not read: give the included file as compose_file" if included else ""
    if not isinstance(services, dict):
        raise InputError(f"{name}: not a compose file: no services: mapping{elsewhere}",
                         hint="check compose_dir and compose_file")
    if service not in services:
        raise InputError(f"{source.where(name, services)}: no service {service!r} in the compose file{elsewhere}",
                         hint=f"services here: {', '.join(map(str, services))}; set postfix_service")
    node = services[service]
    if not isinstance(node, dict):
        raise InputError(f"{source.where(name, services, service)}: service {service!r} is not a mapping")
    if "extends" in node:  # its environment, env_file and image merge from another service: not all of it is here
        raise PartlyElsewhere(f"{source.where(name, node, 'extends')}: service {service!r} uses extends:, so compose "
                              "merges its environment, env_file and image from another service; remediate reads only "
                              "this one, and would plan from part of what the container runs",
                              hint="write the base service's settings into this service (and drop extends:), then run "
                                   "again")
    return node


def entries(text: str, service: str, name: str) -> list[Entry]:
    """The service's environment entries with where their text sits (line is 0-based; -1 for a merged key)."""
    return _entries(parse(text, name), service, name)


def _entries(doc: Any, service: str, name: str) -> list[Entry]:
    node = service_node(doc, service, name)
    env = node.get("environment")
    if env is None:
        return []
    entries = []
    if isinstance(env, CommentedSeq):
        for i, item in enumerate(env):
            if not isinstance(item, str):
                raise InputError(f"{source.where(name, env, index=i)}: environment entry {item!r} is not a KEY=VALUE string")
            key, sep, value = item.partition("=")
            line, col = env.lc.item(i)
            entries.append(Entry(key, value if sep else None, line, col, "list"))
    elif isinstance(env, CommentedMap):
        for key, value in env.items():
            try:
                line, col = env.lc.key(key)
            except KeyError:  # merged in from an anchor (<<): its text is elsewhere
                line, col = -1, -1
            entries.append(Entry(str(key), None if value is None else _env_text(value), line, col, "map"))
    else:
        raise InputError(f"{source.where(name, node, 'environment')}: environment of {service!r} must be a list or a mapping")
    return entries


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def edit_env(text: str, service: str, *, set_: Mapping[str, str] | None = None, remove: tuple[str, ...] = (),
             rename: tuple[str, str] | None = None, name: str = "compose file") -> str:
    """Return text with the service's environment edited, every other byte kept.

    set_: key -> value, changed in place where the key exists.
    rename: (old, new): when old exists and new does not, old's entry becomes new=set_[new], in place.
    remove: keys whose entries are deleted.
    Anything else is appended after the last entry, in the same style and indentation.
    """
    set_ = dict(set_ or {})
    lines = text.splitlines(keepends=True)
    entries = _entries(parse(text, name), service, name)
    by_key = {e.key: e for e in entries}
    wanted = {e.key: e.value for e in entries}
    doomed = [k for k in remove if k in by_key]
    inherited = [k for k in (*set_, *remove) if k in by_key and by_key[k].line < 0]
    if inherited:
        raise InputError(f"{name}: refusing the edit: {inherited[0]} of {service!r} comes from a merge key (<<), "
                         "so changing it would change every service that shares it", hint="edit it by hand")
    pending = dict(set_)
    if rename and rename[0] in by_key and rename[1] not in by_key and rename[1] in pending:
        old = by_key[rename[0]]
        lines[old.line] = _rewrite(lines[old.line], old, rename[1], pending.pop(rename[1]))
        doomed = [k for k in doomed if k != rename[0]]
        wanted.pop(rename[0])
    for key in remove:
        wanted.pop(key, None)
    wanted.update(set_)
    for key, value in list(pending.items()):
        if key in by_key:
            entry = by_key[key]
            if entry.value != value:
                lines[entry.line] = _rewrite(lines[entry.line], entry, key, value)
            del pending[key]
    deletions = {by_key[k].line for k in doomed}
    if pending and not entries:
        lines = _with_block(lines, parse(text, name), service, name, pending)
        pending = {}
    if pending:
        last = max((e for e in entries if e.line not in deletions), key=lambda e: e.line, default=entries[-1])
        ending = _ending(lines[last.line])
        added = [_render_new(lines[last.line], last, key, value) + ending for key, value in pending.items()]
        lines[last.line + 1:last.line + 1] = added
        deletions = {d + len(added) if d > last.line else d for d in deletions}
    result = "".join(line for i, line in enumerate(lines) if i not in deletions)
    _prove(text, result, service, wanted, name)
    return result


def _with_block(lines: list[str], doc: Any, service: str, name: str, pending: Mapping[str, str]) -> list[str]:
    """lines with an environment: list holding pending added at the end of a service that has none."""
    node = service_node(doc, service, name)
    if "environment" in node or not node:
        raise InputError(f"{name}: service {service!r} has an empty environment: to add {', '.join(pending)} to",
                         hint="write the entries by hand")
    first_line, indent = node.lc.key(next(iter(node)))
    end = _service_end(doc, service, len(lines))
    while end > first_line + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    ending = _ending(lines[first_line])
    if not lines[end - 1].endswith(("\n", "\r")):
        lines[end - 1] += ending
    block = [" " * indent + "environment:" + ending]
    block += [" " * (indent + 2) + "- " + _quote_like("", f"{key}={value}") + ending for key, value in pending.items()]
    return lines[:end] + block + lines[end:]


def _service_end(doc: Any, service: str, count: int) -> int:
    """The 0-based line where the text after the service's own starts: the next service, the next top-level key,
    or the end."""
    services = doc["services"]
    keys = list(services)
    after = keys.index(service) + 1
    if after < len(keys):
        return int(services.lc.key(keys[after])[0])
    top = list(doc)
    after = top.index("services") + 1
    return int(doc.lc.key(top[after])[0]) if after < len(top) else count


def _prove(before: str, after: str, service: str, wanted: Env, name: str) -> None:
    """Refuse the edit unless the environment is exactly `wanted` and nothing else in the file changed."""
    try:
        old_doc, new_doc = parse(before, name), parse(after, name)
    except InputError as e:
        raise InputError(f"{name}: refusing the edit: the result would not parse ({e.message})") from None
    got = {e.key: e.value for e in _entries(new_doc, service, name)}
    if got != wanted:
        raise InputError(f"{name}: refusing the edit: the environment of {service!r} would be {got}, not {wanted}",
                         hint="the file has a shape remediate cannot edit safely (multi-line or shared values); edit it by hand")
    old_rest, new_rest = _without_env(old_doc, service), _without_env(new_doc, service)
    if old_rest != new_rest:
        raise InputError(f"{name}: refusing the edit: it would change more than the environment of {service!r} "
                         "(is the environment shared through an anchor?)", hint="edit it by hand")


def _without_env(doc: Any, service: str) -> Any:
    plain = json.loads(json.dumps(source.plain(doc), default=str))
    plain["services"][service].pop("environment", None)
    return plain


def _ending(line: str) -> str:
    return "\r\n" if line.endswith("\r\n") else ("\n" if line.endswith("\n") else "\n")


def _scalar_end(line: str, start: int) -> int:
    """Index just past the scalar that starts at `start` on this line."""
    body = line.rstrip("\r\n")
    if start < len(body) and body[start] in "\"'":
        quote = body[start]
        i = start + 1
        while i < len(body):
            if quote == '"' and body[i] == "\\":
                i += 2
                continue
            if body[i] == quote:
                if quote == "'" and i + 1 < len(body) and body[i + 1] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return len(body)
    end = body.find(" #", start)
    end = len(body) if end < 0 else end
    while end > start and body[end - 1] in " \t":
        end -= 1
    return end


def _quote_like(original: str, text: str) -> str:
    """text as a YAML scalar, quoted as the original was, or plain when that reads back the same."""
    if original.startswith('"'):
        return json.dumps(text, ensure_ascii=False)
    if original.startswith("'"):
        return "'" + text.replace("'", "''") + "'"
    if _plain_ok(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def _plain_ok(text: str) -> bool:
    with _parsing:  # the hosts of a fleet quote the same values at once
        return _reads_back_plain(text)


@functools.lru_cache(maxsize=512)
def _reads_back_plain(text: str) -> bool:
    try:
        return bool(YAML(typ="safe").load(f"- {text}\n") == [text])
    except Exception:  # noqa: BLE001 - anything that does not read back is not plain-safe
        return False


def _rewrite(line: str, entry: Entry, key: str, value: str) -> str:
    """The same line with the entry's key and value replaced, quoting, comment and ending kept."""
    if entry.style == "list":
        end = _scalar_end(line, entry.start)
        original = line[entry.start:end]
        return line[:entry.start] + _quote_like(original, f"{key}={value}") + line[end:]
    key_end = _scalar_end(line.replace(":", " #", 1) if line[entry.start] not in "\"'" else line, entry.start)
    colon = line.index(":", key_end)
    value_start = colon + 1
    while value_start < len(line) and line[value_start] in " \t":
        value_start += 1
    value_end = _scalar_end(line, value_start) if value_start < len(line.rstrip("\r\n")) and line[value_start] != "#" else value_start
    original = line[value_start:value_end]
    new_key = _quote_like(line[entry.start:key_end], key)
    spacer = line[key_end:value_start] if value_start > colon + 1 else ": "
    if original == "":
        spacer = ": "
    return line[:entry.start] + new_key + spacer + _quote_like(original, value) + (line[value_end:] if original else line[value_start:])


def _render_new(neighbour: str, entry: Entry, key: str, value: str) -> str:
    """A new entry line shaped like its neighbour (indentation, dash, quoting), without its comment."""
    indent = neighbour[:entry.start]
    if entry.style == "list":
        original = neighbour[entry.start:_scalar_end(neighbour, entry.start)]
        return indent + _quote_like(original, f"{key}={value}")
    rewritten = _rewrite(neighbour, entry, key, value)
    body = rewritten.rstrip("\r\n")
    comment = body.find(" #", entry.start + len(key) + 2)
    return (body[:comment].rstrip() if comment >= 0 else body)


def needs_v2(text: str, name: str) -> list[str]:
    """What in the file only compose v2 reads (the Compose Specification beyond compose v1 1.29): empty when nothing
    found, or when the text does not parse."""
    try:
        doc = parse(text, name)
    except InputError:
        return []
    if not isinstance(doc, dict):
        return []
    found = [f"top-level {key}:" for key in ("name", "include") if key in doc]
    for section in ("secrets", "configs"):
        for key, item in (doc.get(section) or {}).items() if isinstance(doc.get(section), dict) else ():
            found += [f"{section}.{key}.{field}" for field in ("environment", "content") if isinstance(item, dict)
                      and field in item]
    services = doc.get("services")
    for key, node in services.items() if isinstance(services, dict) else ():
        if not isinstance(node, dict):
            continue
        health = node.get("healthcheck")
        if isinstance(health, dict) and "start_interval" in health:
            found.append(f"services.{key}.healthcheck.start_interval")
        files = node.get("env_file")
        if any(isinstance(item, dict) for item in (files if isinstance(files, list) else [files])):
            found.append(f"services.{key}.env_file with path:")
        if "develop" in node:
            found.append(f"services.{key}.develop")
    return found
