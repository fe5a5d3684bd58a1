"""Where playbooks are found: $REMEDIATE_PLAYBOOK_PATH, then the shipped ones; a name or a path -> the file."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Final

from remediate import yamlin as source
from remediate.errors import InputError
from remediate.kinds import did_you_mean

DEFAULT_PLAYBOOK: Final = "smtp-to-lmtp"
#: Folders of runbooks of your own, searched in order before the shipped ones (as ANSIBLE_ROLES_PATH): colon-separated.
PATH_ENV: Final = "REMEDIATE_PLAYBOOK_PATH"
SUFFIXES: Final = (".yml", ".yaml")


def search_path() -> list[Path]:
    """Where a playbook is looked up by name: the folders of $REMEDIATE_PLAYBOOK_PATH in their order, then the
    shipped playbooks. Yours come first, as Ansible's roles_path and collections path come before what ships with
    it: a site can replace a shipped runbook by giving its own of the same name (which says so when used)."""
    configured = [Path(part).expanduser() for part in os.environ.get(PATH_ENV, "").split(os.pathsep) if part]
    return [*configured, shipped_folder()]


def shipped_folder() -> Path:
    return Path(str(resources.files("remediate.playbooks")))


def _stem(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _in_folder(folder: Path, name: str) -> Path | None:
    """folder/NAME.yml (or .yaml), when it is a file."""
    for suffix in SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def locate(name_or_path: str | None) -> Path:
    """A playbook file: a path that exists, else the first playbook of that name on the search path."""
    wanted = name_or_path or DEFAULT_PLAYBOOK
    path = Path(wanted)
    if path.is_file():
        return path
    if "/" not in wanted:
        for folder in search_path():
            found = _in_folder(folder, _stem(wanted))
            if found is not None:
                return found
    names = sorted(listed.name for listed in catalog())
    raise InputError(f"{wanted}: no such playbook file, and no playbook on the search path has that name",
                     hint=did_you_mean(_stem(path.name), names) + f"searched {describe_search_path()}: "
                                                                   f"{', '.join(names)}")


def describe_search_path() -> str:
    """The search path in words, for errors and `remediate playbooks`."""
    configured = search_path()[:-1]
    if not configured:
        return f"the shipped playbooks (${PATH_ENV} adds folders of your own, searched first)"
    shown = ", ".join(str(folder) + ("" if folder.is_dir() else " (missing)") for folder in configured)
    return f"${PATH_ENV} ({shown}), then the shipped playbooks"


@dataclass(frozen=True)
class Listed:
    """A playbook found on the search path: the name -p takes, its file, and the files of that name it hides."""

    name: str
    path: Path
    shipped: bool
    #: Later files of the same name (a shipped one included), which -p NAME never reaches.
    shadows: tuple[Path, ...] = ()


def catalog() -> list[Listed]:
    """Every playbook on the search path by name, the first of each name winning. In a folder of yours, a YAML file
    is a playbook when it has a top-level steps: (an inventory or a vars file beside it is not)."""
    found: dict[str, Listed] = {}
    shipped_dir = shipped_folder()
    for folder in search_path():
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if file.suffix not in SUFFIXES or not file.is_file() or not (folder == shipped_dir or looks_like_playbook(file)):
                continue
            listed = found.get(file.stem)
            if listed is None:
                found[file.stem] = Listed(file.stem, file, folder == shipped_dir)
            elif listed.path != file:
                found[file.stem] = replace(listed, shadows=(*listed.shadows, file))
    return sorted(found.values(), key=lambda listed: listed.name)


def looks_like_playbook(path: Path) -> bool:
    """A YAML file with a top-level steps: key (read as text: a broken playbook still looks like one)."""
    try:
        with path.open("rb") as f:
            head = f.read(source.MAX_DOCUMENT_BYTES)
    except OSError:
        return False
    return re.search(rb"^steps\s*:", head, re.M) is not None


def shadowed(path: Path) -> Path | None:
    """The shipped playbook that path, a playbook of a folder on the search path, hides by having its name."""
    if path.parent.resolve() not in {folder.resolve() for folder in search_path()[:-1]}:
        return None
    found = _in_folder(shipped_folder(), _stem(path.name))
    return found if found is not None and found.resolve() != path.resolve() else None


def shipped() -> list[Path]:
    """The playbooks that ship with remediate."""
    folder = resources.files("remediate.playbooks")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yml"))


def argument(path: Path) -> str:
    """How `-p` names this playbook file from here: its name when -p NAME finds this very file, else its path
    (relative to the current folder when it is below it), quoted for a shell."""
    try:
        if locate(path.stem).resolve() == path.resolve():
            return path.stem
    except InputError:
        pass
    relative = os.path.relpath(path)
    return shlex.quote(str(path.resolve()) if relative.startswith("..") else relative)


def resolve_fix(fix: str, playbook_path: Path, where: str) -> Path:
    """The playbook a diagnose check's fix: names. A path is read from the playbook's folder; a name is looked up in
    the playbook's own folder first (runbooks that fix each other sit together), then on the search path."""
    folder = playbook_path.parent
    if "/" in fix or fix.endswith(SUFFIXES):
        path = Path(fix).expanduser()
        path = path if path.is_absolute() else folder / path
        if path.is_file():
            return path
        raise InputError(f"{where}: fix: {fix!r}: no such playbook file (a relative path is read from {folder})")
    found = _in_folder(folder, fix)
    for other in search_path():
        found = found or _in_folder(other, fix)
    if found is not None:
        return found
    beside = [p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()] if folder.is_dir() else []
    known = {*beside, *(listed.name for listed in catalog())}
    raise InputError(f"{where}: fix: {fix!r} names no playbook, neither beside {playbook_path.name} nor on the "
                     "search path", hint=did_you_mean(fix, known) + f"searched {folder}, then {describe_search_path()}")
