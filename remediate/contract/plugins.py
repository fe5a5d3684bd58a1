"""Plug-ins found through entry points: any installed package may give step kinds (group remediate.kinds) or check
types (group remediate.checks), and both load by the same rules, written here once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, TypeVar, cast

from remediate.errors import InputError

C = TypeVar("C", bound=type)


class Registry(dict[str, C]):
    """Plug-ins of one group by name. Asked for one it lacks (a journal's kind), it says why: its plug-in is broken,
    or no installed package gives it."""

    def __init__(self, what: str, plural: str, broken: dict[str, str]) -> None:
        super().__init__()
        self.what, self.plural, self.broken = what, plural, broken

    def __missing__(self, name: str) -> C:
        if name in self.broken:
            raise InputError(self.broken[name], hint="reinstall or remove that package")
        raise InputError(f"no installed package gives the {self.what} {name!r}",
                         hint=f"installed {self.plural}: {', '.join(sorted(self))}")


@dataclass
class Loaded:
    """What one entry-point group gave: the classes by name, the package each came from, and why others failed."""

    classes: dict[str, type] = field(default_factory=dict)
    #: The package ("name version") that declared each name, loaded or broken.
    packages: dict[str, str] = field(default_factory=dict)
    #: Names whose plug-in cannot be loaded, and why: only what uses one fails.
    broken: dict[str, str] = field(default_factory=dict)

    @property
    def remediate_installed(self) -> bool:
        """Whether remediate itself declared entries here (else it runs from a source tree that is not installed)."""
        return any(package.split()[0] == "remediate" for package in self.packages.values())


def load(entries: Iterable[Any], *, what: str, base: type, attr: str, doc: str) -> Loaded:
    """Load each entry point of one group. what: how a message names one ("step kind"); base: the class each must
    subclass; attr: the class attribute that must equal the entry's name ("kind", "name"); doc: where to read more.

    Two packages may not give one name: a plug-in never replaces a shipped one (or another plug-in's) unnoticed."""
    found = Loaded()
    packages: dict[int, str] = {}  # by distribution: each name and version is a parse of its METADATA file
    declared: dict[str, Any] = {}
    for entry in entries:
        package = package_of(entry, packages)
        if entry.name in declared:
            twice(what, entry.name, found.packages[entry.name], package)
        declared[entry.name], found.packages[entry.name] = entry, package
    for name, entry in declared.items():
        origin = f"{what} {name!r} ({entry.value}, from {found.packages[name]})"
        try:
            cls = entry.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in is named where it is used, not a traceback
            found.broken[name] = f"{origin} cannot be loaded: {e}"
            continue
        if not (isinstance(cls, type) and issubclass(cls, base)) or getattr(cls, attr, None) != name:
            found.broken[name] = f"{origin} is not a {base.__name__} subclass whose {attr} is {name!r} (see {doc})"
            continue
        found.classes[name] = cls
    return found


def package_of(entry: Any, packages: dict[int, str]) -> str:
    """The package ("name version") that declared an entry point, of any group; packages: those read so far, by
    distribution (each name and version is a parse of its METADATA file)."""
    dist = getattr(entry, "dist", None)
    if dist is None:
        return "an installed package"
    if id(dist) not in packages:
        metadata = dist.metadata
        packages[id(dist)] = f"{metadata['Name']} {metadata['Version']}"
    return packages[id(dist)]


def twice(what: str, name: str, first: str, second: str) -> None:
    """Refuse a name two packages give."""
    raise InputError(f"{what} {name!r} is given by two installed packages, {first} and {second}; refusing to "
                     "choose one", hint=f"uninstall one of them: a plug-in may not replace a {what} another package "
                                        "gives")


def load_into(registry: Registry[C], origin: dict[str, str], entries: Iterable[Any], *, base: type, attr: str,
              doc: str, package: str, shipped: Iterable[str]) -> None:
    """Fill registry (and origin: the package each name came from) from one group's entry points, remediate's own
    included. Run from a source tree that is not installed, the shipped modules of package are imported (each
    registers itself), and a plug-in giving one of their names is refused."""
    found = load(entries, what=registry.what, base=base, attr=attr, doc=doc)
    registry.broken.update(found.broken)
    if not found.remediate_installed:
        for module in shipped:
            import_module(f"{package}.{module}")
        for name, cls in found.classes.items():
            if registry.get(name, cls) is not cls:
                twice(registry.what, name, "remediate (this source tree)", found.packages[name])
    registry.update({name: cast(C, cls) for name, cls in found.classes.items() if issubclass(cls, base)})
    origin.update({name: found.packages[name] for name in found.classes})
    for name in registry:
        origin.setdefault(name, "remediate")
