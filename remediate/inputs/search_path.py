"""Where playbooks are found: $REMEDIATE_PLAYBOOK_PATH, then installed packages' (entry points remediate.playbooks),
then the shipped ones; a name or a path -> the file."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Final

from remediate import __version__
from remediate import yamlin as source
from remediate.errors import InputError
from remediate.inputs import packaged
from remediate.inputs.packaged import SUFFIXES as SUFFIXES
from remediate.inputs.packaged import in_folder as _in_folder
from remediate.kinds import did_you_mean
from remediate.records import record

DEFAULT_PLAYBOOK: Final = "smtp-to-lmtp"
#: Folders of runbooks of your own, searched in order before installed packages' and the shipped ones (as
#: ANSIBLE_ROLES_PATH): colon-separated.
PATH_ENV: Final = "REMEDIATE_PLAYBOOK_PATH"


def search_path() -> list[Path]:
    """The folders a playbook is looked up in by name: those of $REMEDIATE_PLAYBOOK_PATH in their order, then the
    shipped playbooks' (installed packages' playbooks come between the two: see find). Yours come first, as Ansible's
    roles_path and collections path come before what ships with it: a site can replace a shipped or a package's
    runbook by giving its own of the same name (which says so when used)."""
    configured = [Path(part).expanduser() for part in os.environ.get(PATH_ENV, "").split(os.pathsep) if part]
    return [*configured, shipped_folder()]


def shipped_folder() -> Path:
    """The shipped playbooks' folder: their package's own (importlib.resources would load zipfile for it, ~2 ms)."""
    package = import_module("remediate.playbooks")  # the top-level playbooks/ (pyproject's package-dir)
    return Path(str(package.__file__)).parent


def _stem(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def find(name: str) -> Path | None:
    """The playbook -p NAME runs: the first folder of yours that has one of that name, else the one an installed
    package declares, else the shipped one. A name two packages declare, or a package and remediate, is refused
    with both named, as is a package's broken declaration (InputError)."""
    for folder in search_path()[:-1]:
        found = _in_folder(folder, name)
        if found is not None:
            return found
    return _from_packages(name) or _in_folder(shipped_folder(), name)


def _from_packages(name: str) -> Path | None:
    """The playbook of that name an installed package declares (None: none does); InputError when it is refused."""
    entries = packaged.declared().get(name)
    if not entries:
        return None
    clash = _clash(name, entries)
    if clash is not None:
        raise clash
    return entries[0].path()


def _clash(name: str, entries: list[packaged.Declared]) -> InputError | None:
    """Why no package may give this name, if another package or remediate itself gives it too."""
    givers = [entry.package for entry in entries]
    if _in_folder(shipped_folder(), name) is not None:
        givers.insert(0, f"remediate {__version__} (shipped)")
    if len(givers) < 2:
        return None
    count = "two" if len(givers) == 2 else str(len(givers))
    return InputError(f"playbook {name!r} is given by {count} packages, {', '.join(givers[:-1])} and {givers[-1]}; "
                      "refusing to choose one", hint="uninstall one of the packages (or have it rename its playbook), "
                                                     f"or put the one you mean in a folder of ${PATH_ENV}, which "
                                                     "comes first")


def locate(name_or_path: str | None) -> Path:
    """A playbook file: a path that exists, else the first playbook of that name on the search path."""
    wanted = name_or_path or DEFAULT_PLAYBOOK
    path = Path(wanted)
    if path.is_file():
        return path
    if "/" not in wanted:
        found = find(_stem(wanted))
        if found is not None:
            return found
    names = sorted(listed.name for listed in catalog())
    raise InputError(f"{wanted}: no such playbook file, and no playbook on the search path has that name",
                     hint=did_you_mean(_stem(path.name), names) + f"searched {describe_search_path()}: "
                                                                   f"{', '.join(names)}")


def describe_search_path() -> str:
    """The search path in words, for errors and `remediate playbooks`."""
    configured = search_path()[:-1]
    packages = f"installed packages' playbooks (entry points {packaged.ENTRY_POINTS})"
    if not configured:
        return f"{packages}, then the shipped playbooks (${PATH_ENV} adds folders of your own, searched first)"
    shown = ", ".join(str(folder) + ("" if folder.is_dir() else " (missing)") for folder in configured)
    return f"${PATH_ENV} ({shown}), then {packages}, then the shipped playbooks"


@record(frozen=True)
class Listed:
    """A playbook found on the search path: the name -p takes, its file, where it comes from, and the files of that
    name it hides."""

    name: str
    path: Path
    shipped: bool
    #: Later files of the same name (a package's or a shipped one included), which -p NAME never reaches.
    shadows: tuple[Path, ...] = ()
    #: The installed package ("name version") that declares it (entry points remediate.playbooks); None: not one.
    package: str | None = None

    @property
    def source(self) -> str:
        """Where it comes from, as `remediate playbooks` shows it: shipped (remediate X.Y), package NAME VERSION, or
        the folder of yours that holds it."""
        if self.shipped:
            return f"shipped (remediate {__version__})"
        return f"package {self.package}" if self.package else str(self.path.parent)


def catalog() -> list[Listed]:
    """Every playbook on the search path by name, the first of each name winning. In a folder of yours, a YAML file
    is a playbook when it has a top-level steps: (an inventory or a vars file beside it is not). A name refused to
    the packages (see find) is left out, the shipped one of that name too, unless a folder of yours gives it."""
    found: dict[str, Listed] = {}

    def add(listed: Listed) -> None:
        first = found.setdefault(listed.name, listed)
        if first.path != listed.path:
            found[listed.name] = replace(first, shadows=(*first.shadows, listed.path))

    for folder in search_path()[:-1]:
        for file in sorted(folder.iterdir()) if folder.is_dir() else []:
            if file.suffix in SUFFIXES and file.is_file() and looks_like_playbook(file):
                add(Listed(file.stem, file, False))
    usable, unusable = _packages()
    for listed in usable:
        add(listed)
    for file in shipped():
        if file.stem in found or file.stem not in unusable:
            add(Listed(file.stem, file, True))
    return sorted(found.values(), key=lambda listed: listed.name)


def _packages() -> tuple[list[Listed], dict[str, InputError]]:
    """The playbooks installed packages declare that can be used, and why each of the others cannot, by name."""
    usable, unusable = [], {}
    for name, entries in packaged.declared().items():
        error = _clash(name, entries)
        if error is None:
            try:
                usable.append(Listed(name, entries[0].path(), False, package=entries[0].package))
                continue
            except InputError as e:
                error = e
        unusable[name] = error
    return usable, unusable


def refused() -> list[InputError]:
    """Why playbooks that installed packages declare cannot be used (a broken declaration, a name two packages
    give), but for those a folder of yours replaces: the others are listed and run as usual."""
    mine = search_path()[:-1]
    return [error for name, error in sorted(_packages()[1].items())
            if not any(_in_folder(folder, name) for folder in mine)]


def looks_like_playbook(path: Path) -> bool:
    """A YAML file with a top-level steps: key (read as text: a broken playbook still looks like one)."""
    try:
        with path.open("rb") as f:
            head = f.read(source.MAX_DOCUMENT_BYTES)
    except OSError:
        return False
    return re.search(rb"^steps\s*:", head, re.M) is not None


def shadowed(path: Path) -> Path | None:
    """The installed package's or shipped playbook that path, a playbook of a folder on the search path, hides by
    having its name."""
    if path.parent.resolve() not in {folder.resolve() for folder in search_path()[:-1]}:
        return None
    name = _stem(path.name)
    try:
        found = _from_packages(name)
    except InputError:  # refused to the packages: the shipped one of that name is what path hides
        found = None
    found = found or _in_folder(shipped_folder(), name)
    return found if found is not None and found.resolve() != path.resolve() else None


def shipped() -> list[Path]:
    """The playbooks that ship with remediate."""
    return sorted(p for p in shipped_folder().iterdir() if p.name.endswith(".yml"))


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
    try:
        found = _in_folder(folder, fix) or find(fix)
    except InputError as e:
        raise InputError(f"{where}: fix: {fix!r}: {e.message}", hint=e.hint) from None
    if found is not None:
        return found
    beside = [p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()] if folder.is_dir() else []
    known = {*beside, *(listed.name for listed in catalog())}
    raise InputError(f"{where}: fix: {fix!r} names no playbook, neither beside {playbook_path.name} nor on the "
                     "search path", hint=did_you_mean(fix, known) + f"searched {folder}, then {describe_search_path()}")
