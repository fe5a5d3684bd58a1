"""serve's log: the standard logging module under the `remediate` logger, one stderr handler with UTC timestamps at
the level `serve --log-level` names. Every line it writes is one inert terminal line with secrets masked: whatever
an alert's label, a receiver's name or an approver typed, it can neither drive the terminal nor forge a line."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Final, TextIO

from remediate import redact
from remediate.cli.output import visible

LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMAT: Final = "%(asctime)s %(levelname)s %(message)s"
ROOT: Final = "remediate"


def one_line(value: Any) -> str:
    """A value on one terminal line: control characters made visible (output.visible), a newline as ^J too."""
    return str(visible(str(value))).replace("\n", "^J")


def log_line(incident_id: int, what: str, detail: str) -> str:
    """One decision as serve's log says it: always exactly one line."""
    return one_line(f"incident {incident_id}: {what}{': ' + detail if detail else ''}")


class OneLine(logging.Formatter):
    """The message on one line, secrets masked; a traceback follows on indented lines of its own, each inert too."""

    def __init__(self) -> None:
        super().__init__(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # logging's name
        return time.strftime(datefmt or "%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))

    def formatMessage(self, record: logging.LogRecord) -> str:  # logging's name
        return one_line(redact.text(super().formatMessage(record)))

    def formatException(self, ei: Any) -> str:  # logging's name
        return _inert(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # logging's name
        return _inert(super().formatStack(stack_info))


def _inert(text: str) -> str:
    """A traceback's lines, each inert and indented: no line of it can pass for a line of the log."""
    return "\n".join("  " + one_line(redact.text(line)) for line in text.splitlines())


def configure(level: str, stream: TextIO | None = None) -> logging.Handler:
    """remediate's loggers at `level` (debug, info, warning, error), to `stream` (stderr); the handler, to remove."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLine())
    logger = logging.getLogger(ROOT)
    logger.setLevel(LEVELS[level])
    logger.addHandler(handler)
    return handler


def unconfigure(handler: logging.Handler) -> None:
    logging.getLogger(ROOT).removeHandler(handler)
    handler.close()
