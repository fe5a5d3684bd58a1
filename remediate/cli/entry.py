"""The console script: the command line with Python's cycle collector held back while it starts and ends.

Start-up creates some 70,000 objects the collector tracks (modules, classes, functions), which live until exit;
the collector would walk them again and again while they are made, and once more at exit. `hyperfine` of a
one-host `remediate plan`: 425 ms against 465 ms (bench/README.md)."""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from remediate.cli.main import main as command_line
        command_line()
    finally:
        gc.freeze()  # what is alive now is left to exit, not walked by its last collections

