"""Deprecated alias of `remediate.contract.plan` (Plan, Applied and FileChange; moved in 0.2): importing from here
still works, with a DeprecationWarning, until 0.3."""

from __future__ import annotations

import warnings
from typing import Any

from remediate.contract import plan as _new


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    warnings.warn("remediate.plan is now remediate.contract.plan; import from there (remediate.plan goes in 0.3)",
                  DeprecationWarning, stacklevel=2)
    return getattr(_new, name)
