"""The errors remediate raises: one root, a few kinds, each with its exit code."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_CHANGES: Final = 2
EXIT_FINDINGS: Final = 3
EXIT_ROLLBACK_INCOMPLETE: Final = 4
#: A rollout stopped because failures exceeded its budget: hosts not yet started were skipped.
EXIT_ABORTED: Final = 5
#: The same, and the hosts this rollout had already fixed were rolled back (--rollback-fleet-on-abort).
EXIT_FLEET_ROLLED_BACK: Final = 6


class RemediateError(Exception):
    """Root of every error remediate reports to its user."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class InputError(RemediateError):
    """Bad inventory, playbook, compose file or flag: nothing was touched."""


class ConnectError(RemediateError):
    """A host could not be reached or refused us."""


class HostKeyError(ConnectError):
    """A host key was unknown or did not match known_hosts."""


class CommandError(RemediateError):
    """A remote or local command failed."""


class JournalWriteError(CommandError):
    """The run's journal could not reach the host, so the mutation it preceded never ran."""


class RunFolderError(JournalWriteError):
    """The run's folder on the host was refused or could not be made: nothing of the run is written there."""


class StepError(RemediateError):
    """A step failed to apply or verify."""


class NotReversed(StepError):
    """A step's undo cannot reverse what it did (a command without `undo:`): the rollback says so and stays
    incomplete until the operator skips the step; the files it did not touch are restored and a restart still runs."""


class ConflictError(RemediateError):
    """The host changed under us, or another run holds the lock."""


class LeaseLost(ConflictError):
    """A leased run's lock no longer carries its token: another attempt of the same run took it over, and the run (its
    undo, its lock, the host's journal) is that attempt's now."""
