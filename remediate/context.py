"""Deprecated alias of `remediate.engine.context`, the engine's Context (moved in 0.2; a kind's ctx is now typed
`remediate.contract.host.StepContext`): importing from here still works, with a DeprecationWarning, until 0.3."""

from __future__ import annotations

import warnings
from typing import Any

from remediate.engine import context as _new


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    warnings.warn("remediate.context is now remediate.engine.context; import from there (remediate.context goes in "
                  "0.3)", DeprecationWarning, stacklevel=2)
    return getattr(_new, name)
