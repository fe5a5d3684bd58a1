"""Playbooks that installed packages declare (entry-point group remediate.playbooks), each read where it is used: a
broken declaration names its package and what to do, and stops no other playbook."""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path
from typing import Final

from remediate.contract import plugins
from remediate.contract.entrypoints import entry_points
from remediate.errors import InputError
from remediate.records import record

#: `[project.entry-points."remediate.playbooks"] NAME = "package.module"`: that package's folder holds NAME.yml.
ENTRY_POINTS: Final = "remediate.playbooks"
SUFFIXES: Final = (".yml", ".yaml")
DOC: Final = "docs/writing-runbooks.md"
_MODULE: Final = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def in_folder(folder: Path, name: str) -> Path | None:
    """folder/NAME.yml (or .yaml), when it is a file."""
    for suffix in SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


@record(frozen=True)
class Declared:
    """One playbook an installed package declares: the name -p takes, the entry's value (the import name of the
    package whose folder holds NAME.yml) and the distribution that declared it ("name version")."""

    name: str
    value: str
    package: str

    def __str__(self) -> str:
        return f"playbook {self.name!r} ({self.value}, from {self.package})"

    def path(self) -> Path:
        """The playbook file inside the installed package; an InputError naming the package when there is none."""
        dist = self.package.split()[0]
        fix = f"reinstall {dist}, or uninstall it; see {DOC} for how a package declares a playbook"
        authors = f"a mistake in {dist}'s entry points, for its authors to fix (see {DOC}); uninstall it meanwhile"
        if not _MODULE.fullmatch(self.value):
            raise InputError(f"{self}: the value must be the import name of a package whose folder holds "
                             f"{self.name}.yml (as {self.name} = \"mypackage.playbooks\"), not {self.value!r}",
                             hint=authors)
        try:
            module = import_module(self.value)
        except Exception as e:  # noqa: BLE001 - the package's own import error, named where it is used
            raise InputError(f"{self} cannot be loaded: {type(e).__name__}: {e}", hint=fix) from None
        folders = [Path(folder) for folder in getattr(module, "__path__", [])]  # a namespace package has several
        if not folders:
            raise InputError(f"{self}: {self.value} is a module, not a package (a folder) holding {self.name}.yml",
                             hint=authors)
        for folder in folders:
            found = in_folder(folder, self.name)
            if found is not None:
                return found
        raise InputError(f"{self}: {', '.join(map(str, folders))} holds no {self.name}.yml (nor .yaml)",
                         hint=f"the package must ship it as package data ([tool.setuptools.package-data]); {fix}")


def declared() -> dict[str, list[Declared]]:
    """Every playbook the installed packages declare, by name, in the order importlib.metadata gives them (a name
    two packages declare has two). remediate's own entries, if it ever declares any, are its shipped folder's."""
    found: dict[str, list[Declared]] = {}
    seen: dict[int, str] = {}
    for entry in entry_points(group=ENTRY_POINTS):
        package = plugins.package_of(entry, seen)
        declared = Declared(entry.name, entry.value, package)
        if package.split()[0] != "remediate" and declared not in found.get(entry.name, []):
            found.setdefault(entry.name, []).append(declared)
    return found
