"""What serve answers when an incident cannot be acted on: no such incident (404), or not in its present state (409).
Raised by the engine and what it delegates to (manual.py), and by the Temporal backend."""

from __future__ import annotations

__all__ = ["NotFound", "Refused"]


class NotFound(Exception):
    """No such incident."""


class Refused(Exception):
    """The action does not apply to the incident in its state."""
