"""The console script: the command line with Python's cycle collector held back while it starts and ends, and the
process ended at once when it is done.

Start-up creates some 70,000 objects the collector tracks (modules, classes, functions), which live until exit;
the collector would walk them again and again while they are made, and once more at exit. `hyperfine` of a
one-host `remediate plan`: 425 ms against 465 ms (bench/README.md).

Once the command has returned, tearing the interpreter down (every module's namespace emptied, every object freed)
changes nothing anyone sees: `console` runs what was registered for the exit (atexit: logging's last flush,
paramiko's, weakref finalizers), flushes stdout and stderr, and ends the process with the command's status, 10-20 ms
sooner on a 20-host run (bench/README.md, round 16)."""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import NoReturn


def main() -> None:
    gc.disable()
    try:
        from remediate.cli.main import main as command_line
        command_line()
    finally:
        gc.freeze()  # what is alive now is left to exit, not walked by its last collections


def console() -> NoReturn:
    """The `remediate` command: main, then the end (see the module's doc). An exception other than SystemExit
    ends the process as Python ends it (a traceback), as does any end while a thread that is not a daemon still
    runs: Python waits for it."""
    try:
        main()
        status: str | int | None = None
    except SystemExit as e:
        status = e.code
    end(status)


def end(status: str | int | None) -> NoReturn:
    """Exit with status as SystemExit takes it (None: 0, an int as it is, else shown on stderr and 1), without the
    interpreter's teardown when nothing else runs; else, or when stdout or stderr cannot be flushed (a closed pipe),
    through Python's own exit, which says so as it always has."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(status)
    code = status if isinstance(status, int) else 0 if status is None else 1
    if status is not None and not isinstance(status, int):  # as Python shows it: SystemExit('why')
        print(status, file=sys.stderr)
    atexit._run_exitfuncs()  # and unregistered by it: Python's exit, below, would not run them twice
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)
