"""The entry points of one plug-in group, as importlib.metadata gives them, read without importing it (about 10 ms of
start-up, with email and zipfile, and a walk of every installed package's metadata) when no installed package but
remediate itself declares a remediate group: then remediate's own entry_points.txt answers alone.

Anything this reading cannot vouch for (a zip or an egg on sys.path, a finder that gives distributions of its own,
two remediate installs in one folder, an entry it does not parse) sends the question to importlib.metadata, so a
plug-in, and one that would shadow a shipped name, is always seen."""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from functools import reduce
from importlib.machinery import PathFinder
from typing import Any, Final

#: Every group remediate reads: a package whose entry_points.txt names none of them gives remediate nothing.
PREFIX: Final = "remediate."
OWN: Final = "remediate"
_VALUE: Final = re.compile(r"^(?P<module>[\w.]+)\s*:\s*(?P<attr>[\w.]+)$")


@dataclass(frozen=True, eq=False)
class Dist:
    """The distribution an entry point came from: its Name and Version, as importlib.metadata's metadata gives them."""

    metadata: dict[str, str]


@dataclass(frozen=True, eq=False)
class Entry:
    """One entry point: its name, its value (module:attribute) and its distribution; load() imports it."""

    name: str
    value: str
    dist: Dist

    def load(self) -> Any:
        module, _, attr = self.value.partition(":")
        return reduce(getattr, attr.strip().split("."), importlib.import_module(module.strip()))


def entry_points(group: str) -> Any:
    """The entry points of group (importlib.metadata.entry_points(group=group)'s answer). The path is walked at each
    call, as importlib.metadata does: a package installed meanwhile, or a folder added to sys.path, is seen."""
    found = _walk()
    if found is None:
        from importlib.metadata import entry_points as installed
        return installed(group=group)
    folder, text = found
    return [] if folder is None else _own(folder, text, group)


def version(name: str) -> str | None:
    """importlib.metadata.version(name)'s answer, read without importing it: the Version of the first distribution of
    that name on sys.path. None when this reading cannot vouch for the answer (the caller then asks importlib.metadata):
    a finder of its own, a zip or an egg on the path before it, two of that name in one folder, no such package."""
    folders = _path_folders()
    if folders is None:
        return None
    wanted = _normalized(name)
    for where in folders:
        try:
            children = os.listdir(where)
        except OSError:  # a folder this process may not list: importlib.metadata answers (it passes over it)
            return None
        found = [child for child in children if child.lower().endswith((".dist-info", ".egg-info"))
                 and _normalized(child.lower().rpartition(".")[0].partition("-")[0]) == wanted]
        if len(found) > 1:  # which comes first is listdir's order
            return None
        if found:
            metadata = _metadata(os.path.join(where, found[0]))
            return None if metadata is None else metadata["Version"]
    return None


def _normalized(name: str) -> str:
    """A distribution's name as importlib.metadata compares it (PEP 503, dashes as underscores)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _foreign_finder() -> bool:
    """Whether a finder other than the path's gives distributions of its own (importlib.metadata asks it first)."""
    return any(getattr(finder, "find_distributions", None) is not None and finder is not PathFinder
               for finder in sys.meta_path)


def _path_folders() -> list[str] | None:
    """The folders on sys.path that exist, in its order; None when importlib.metadata must answer: a finder of its own
    gives distributions, or an entry is beyond this reading (an egg, a zip, not a string)."""
    if _foreign_finder():
        return None
    folders = []
    for root in sys.path:
        where = _folder_of(root)
        if where is None:
            return None
        if where:
            folders.append(where)
    return folders


def _folder_of(root: object) -> str | None:
    """The folder a sys.path entry names; "" for one that is not there; None for what importlib.metadata reads and
    this does not (an egg, a zip, an entry that is not a string)."""
    if not isinstance(root, str) or root.lower().endswith(".egg"):
        return None  # an egg (a folder or a zip): importlib.metadata reads its EGG-INFO
    where = root or "."
    if os.path.isdir(where):
        return where
    return None if os.path.exists(where) else ""  # a zip: importlib.metadata reads those


def _walk() -> tuple[str | None, str] | None:
    """remediate's distribution folder and entry_points.txt when no other package declares a remediate group; None when
    another does or anything on the path is beyond this reading."""
    folders = _path_folders()
    if folders is None:
        return None
    own: list[str] = []
    for where in folders:
        try:
            found = _folder(where)
        except OSError:  # a folder this process may not list: importlib.metadata answers (it passes over it)
            return None
        if found is None or len(found) > 1:  # two remediates in one folder: which comes first is listdir's order
            return None
        own += found
    # The first remediate on the path is the one importlib.metadata reads (it gives one distribution per name).
    return (own[0], _read(os.path.join(own[0], "entry_points.txt"))) if own else (None, "")


#: Each folder's reading, by its modification time (a package installed or removed changes it), as importlib.metadata
#: keeps its listings: the second group asked for reads no file again.
_folders: dict[str, tuple[int, list[str] | None]] = {}


def _folder(where: str) -> list[str] | None:
    """The remediate distributions in one folder of sys.path; None if another package there declares a remediate
    group."""
    stamp = os.stat(where).st_mtime_ns
    seen = _folders.get(where)
    if seen is not None and seen[0] == stamp:
        return seen[1]
    own: list[str] = []
    foreign = False
    for child in os.listdir(where):
        low = child.lower()
        if not low.endswith((".dist-info", ".egg-info")):
            continue
        if low.rpartition(".")[0].partition("-")[0].replace("-", "_").replace(".", "_") == OWN:
            own.append(os.path.join(where, child))
        elif PREFIX in _read(os.path.join(where, child, "entry_points.txt")):
            foreign = True  # a plug-in (or something that looks like one): the full reading decides
            break
    _folders[where] = (stamp, None if foreign else own)
    return None if foreign else own


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _own(folder: str, text: str, group: str) -> Any:
    """remediate's entry points of group, or importlib.metadata's answer when its files hold anything unexpected."""
    entries: list[tuple[str, str]] = []
    section = None
    for line in filter(None, map(str.strip, text.splitlines())):
        if line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
        elif section == group:
            name, _, value = (part.strip() for part in line.partition("="))
            entries.append((name, value))
    metadata = _metadata(folder)
    if metadata is None or not all(_VALUE.match(value) for _, value in entries):
        from importlib.metadata import entry_points as installed
        return installed(group=group)
    dist = Dist(metadata)
    return [Entry(name, value, dist) for name, value in entries]


def _metadata(folder: str) -> dict[str, str] | None:
    """Name and Version from the distribution's METADATA headers (PKG-INFO for an egg-info); None if one is missing."""
    text = _read(os.path.join(folder, "METADATA" if folder.lower().endswith(".dist-info") else "PKG-INFO"))
    found: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in found:
            found[key] = value.strip()
    return found if len(found) == 2 else None
