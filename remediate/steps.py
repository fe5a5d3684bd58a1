"""Deprecated alias of `remediate.kinds`, the step-kind API (moved in 0.2): `remediate.steps` and its modules
(`remediate.steps.file` ...) are the modules of `remediate.kinds`, with a DeprecationWarning, until 0.3."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from remediate import kinds

#: A package with no folder of its own: its modules are found by _Alias, as the modules of remediate.kinds.
__path__: list[str] = []


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is now {new}; import from there ({old} goes in 0.3)", DeprecationWarning, stacklevel=3)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    _warn("remediate.steps", "remediate.kinds")
    return getattr(kinds, name)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """remediate.steps.X is remediate.kinds.X itself (the same module object: a kind is never registered twice)."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None) -> ModuleSpec | None:
        if not fullname.startswith(__name__ + "."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self) -> None:
        self.specs: dict[str, ModuleSpec | None] = {}

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        new = "remediate.kinds." + spec.name.rpartition(".")[2]
        _warn(spec.name, new)
        module = importlib.import_module(new)
        self.specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when remediate.kinds imported it; the import machinery has just given it the alias's spec:
        it keeps its own (its name, for pickling and reloading)."""
        module.__spec__ = self.specs[module.__name__]


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.append(_Alias())
