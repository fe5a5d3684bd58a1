"""Deprecated alias of `remediate.kinds`, the step-kind API (moved in 0.2): importing from here still works, with a
DeprecationWarning, until 0.3."""

from __future__ import annotations

import warnings
from typing import Any

from remediate import kinds


def __getattr__(name: str) -> Any:
    warnings.warn("remediate.steps is now remediate.kinds; import from there (remediate.steps goes in 0.3)",
                  DeprecationWarning, stacklevel=2)
    return getattr(kinds, name)
