"""Modules imported only when first used: invoke, which paramiko imports at start-up and uses for `Match exec`, and
importlib.metadata, which paramiko imports at start-up for its own version.

paramiko's config module imports invoke whenever it is installed (paramiko requires it), and invoke's import brings
unittest.mock and asyncio: 40-60 ms of CPU at the start of every run that opens SSH, for an ssh_config feature few
use. Until one of its names is used, `invoke` is a stand-in module; the first use imports the real one, which then
answers that use and every later one (`Match exec` works as before, a moment later).

paramiko's `__init__` asks `importlib.metadata.version("paramiko")` (the version it puts in its SSH banner): importing
importlib.metadata (email, zipfile, csv...) and walking the path costs 10-20 ms of CPU. Its stand-in answers version()
from the distribution's METADATA file, read as importlib.metadata reads it (contract.entrypoints.version), and hands
anything else, and any version it cannot vouch for, to the real module."""

from __future__ import annotations

import importlib
import sys
import threading
import types
from importlib.machinery import ModuleSpec
from typing import Any

_LOCK = threading.Lock()


class Deferred(types.ModuleType):
    """A stand-in in sys.modules for a module not imported yet: any attribute asked of it (its `__path__` for a
    submodule's import, a name for a use) imports the module, which answers from then on. It carries the module's
    own spec, so `find_spec` and the import system's checks see the real thing without loading it."""

    def __init__(self, name: str, spec: ModuleSpec) -> None:
        super().__init__(name)
        self.__spec__ = spec

    def __getattr__(self, name: str) -> Any:
        with _LOCK:
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
            real = importlib.import_module(self.__name__)
        return getattr(real, name)


def defer(name: str) -> None:
    """Stand in for module `name` until it is used, unless it is imported already or is not installed."""
    if name in sys.modules:
        return
    from importlib.util import find_spec  # importlib.util is imported at start-up already

    spec = find_spec(name)
    if spec is not None:
        sys.modules[name] = Deferred(name, spec)


class _Metadata(Deferred):
    """importlib.metadata's stand-in: version() answered without importing it; the rest by the real module."""

    def version(self, distribution_name: str) -> str:
        if sys.modules.get(self.__name__) is self:
            from remediate.contract.entrypoints import version

            found = version(distribution_name)
            if found is not None:
                return found
        answer: str = self.__getattr__("version")(distribution_name)
        return answer


def defer_metadata() -> None:
    """Stand in for importlib.metadata until something asks it more than a version, unless it is imported already."""
    name = "importlib.metadata"
    if name in sys.modules:
        return
    from importlib.util import find_spec

    spec = find_spec(name)
    if spec is not None:
        stand_in = _Metadata(name, spec)
        sys.modules[name] = stand_in
        vars(importlib)["metadata"] = stand_in  # `import importlib.metadata` then reads it from the package
