"""Python's cycle collector, held back while a command starts (cli/entry.py) and let go once its library is loaded."""

from __future__ import annotations

import gc


def started() -> None:
    """The command's modules are loaded: from here on the collector runs as usual, on what the work creates (the
    objects made so far are set aside for good). For a command that can run long (apply, serve)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
