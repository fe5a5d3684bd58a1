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
    """Exit with status (None: 0, or an int a process can end with) without the interpreter's teardown when nothing
    else runs. Python's own exit otherwise, which has always said what it says: any other status (a message, shown on
    stderr), a thread that is not a daemon still running, or stdout or stderr that cannot be flushed (a closed pipe)."""
    others = any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread())
    if others or not (status is None or type(status) is int and -2**31 <= status < 2**31):
        sys.exit(status)
    atexit._run_exitfuncs()  # and unregistered by it: Python's exit, below, would not run them twice
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: that descriptor was closed when the process began
                stream.flush()
    except (OSError, ValueError):
        sys.exit(status)
    os._exit(status or 0)
