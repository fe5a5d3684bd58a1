"""Plug-ins found through entry points: any installed package may give step kinds (group remediate.kinds) or check
types (group remediate.checks), and both load by the same rules, written here once."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import field
from importlib import import_module
from typing import Any, TypeVar, cast

from remediate.errors import InputError
from remediate.records import record

C = TypeVar("C", bound=type)


class Registry(MutableMapping[str, C]):
    """Plug-ins of one group by name. remediate's own are imported when one is first asked for (a playbook imports the
    kinds it names, not all of them); asked for one it lacks (a journal's kind), it says why: its plug-in is broken,
    or no installed package gives it."""

    def __init__(self, what: str, plural: str, broken: dict[str, str]) -> None:
        self.what, self.plural, self.broken = what, plural, broken
        self._classes: dict[str, C] = {}
        #: remediate's own, by name, not imported yet: each imports its class (and checks it) when first asked for.
        self.later: dict[str, Callable[[], C]] = {}

    def __getitem__(self, name: str) -> C:
        found = self._classes.get(name)
        if found is not None:
            return found
        load = self.later.get(name)
        if load is None:
            return self.__missing__(name)
        cls = load()
        self[name] = cls
        return cls

    def __setitem__(self, name: str, cls: C) -> None:
        self._classes[name] = cls
        self.later.pop(name, None)

    def __delitem__(self, name: str) -> None:
        if self.later.pop(name, None) is None:
            del self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self.later

    def __iter__(self) -> Iterator[str]:
        return iter([*self._classes, *(name for name in self.later if name not in self._classes)])

    def __len__(self) -> int:
        return len(self._classes.keys() | self.later.keys())

    def get(self, name: str, default: Any = None) -> Any:  # a name it lacks is the default, not an error
        return self[name] if name in self else default

    def clear(self) -> None:
        self._classes.clear()
        self.later.clear()

    def load_all(self) -> None:
        """Import every class not imported yet (a listing of them all, or a caller that wants them all loaded)."""
        for name in list(self.later):
            self[name]

    def __missing__(self, name: str) -> C:
        if name in self.broken:
            raise InputError(self.broken[name], hint="reinstall or remove that package")
        raise InputError(f"no installed package gives the {self.what} {name!r}",
                         hint=f"installed {self.plural}: {', '.join(sorted(self))}")


@record
class Loaded:
    """What one entry-point group gave: the classes by name, the package each came from, and why others failed."""

    classes: dict[str, type] = field(default_factory=dict)
    #: The package ("name version") that declared each name, loaded or broken.
    packages: dict[str, str] = field(default_factory=dict)
    #: Names whose plug-in cannot be loaded, and why: only what uses one fails.
    broken: dict[str, str] = field(default_factory=dict)
    #: remediate's own entries, imported (and checked) when first used: by name, what loads each.
    later: dict[str, Callable[[], type]] = field(default_factory=dict)

    @property
    def remediate_installed(self) -> bool:
        """Whether remediate itself declared entries here (else it runs from a source tree that is not installed)."""
        return any(package.split()[0] == "remediate" for package in self.packages.values())


def load(entries: Iterable[Any], *, what: str, base: type, attr: str, doc: str) -> Loaded:
    """Load each entry point of one group. what: how a message names one ("step kind"); base: the class each must
    subclass; attr: the class attribute that must equal the entry's name ("kind", "name"); doc: where to read more.
    remediate's own entries are left in `later`, to be imported when one is first used.

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
        if found.packages[name].split()[0] == "remediate":
            found.later[name] = functools.partial(_checked, entry, name, origin, base, attr, doc)
            continue
        try:
            found.classes[name] = _checked(entry, name, origin, base, attr, doc)
        except InputError as e:
            found.broken[name] = e.message
    return found


def _checked(entry: Any, name: str, origin: str, base: type, attr: str, doc: str) -> type:
    """The class one entry point names, or InputError saying why it is none."""
    try:
        cls = entry.load()
    except Exception as e:  # noqa: BLE001 - a broken plug-in is named where it is used, not a traceback
        raise InputError(f"{origin} cannot be loaded: {e}", hint="reinstall or remove that package") from None
    if not (isinstance(cls, type) and issubclass(cls, base)) or getattr(cls, attr, None) != name:
        raise InputError(f"{origin} is not a {base.__name__} subclass whose {attr} is {name!r} (see {doc})",
                         hint="reinstall or remove that package")
    return cls


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
    registry.later.update({name: cast("Callable[[], C]", load) for name, load in found.later.items()
                           if name not in registry})
    origin.update({name: found.packages[name] for name in [*found.classes, *found.later]})
    for name in registry:
        origin.setdefault(name, "remediate")
