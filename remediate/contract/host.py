"""The host a step works on, as a kind or a check type sees it: where it runs (HOST, LOCAL), the inventory host, and
the context the engine hands to plan(), apply(), verify() and rollback()."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol

from remediate.records import record

if TYPE_CHECKING:
    from remediate.contract.plan import FileChange, Plan
    from remediate.transport import FileState, Transport

#: Where a step runs: the host being remediated, or the operator's own machine (or another inventory host by name).
HOST: Final = "host"
LOCAL: Final = "local"


@record(frozen=True)
class Host:
    """One inventory host: how to reach it and its merged variables."""

    name: str
    address: str
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    become: bool = False
    become_password_prompt: bool = False
    known_hosts_file: str | None = None
    #: The python3 that runs remediate's own operations on the host (ansible_python_interpreter).
    python: tuple[str, ...] = ("python3",)
    #: Whether one process of it answers all of a run's commands (remediate_agent: false: one per operation).
    agent: bool = True
    vars: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    where: str = ""
    #: For each variable, where its value came from: "group mail (hosts.yml:12)" or "host (hosts.yml:20)".
    origins: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


class StepContext(Protocol):
    """What a kind sees of the run (remediate.engine.context.Context is the engine's implementation)."""

    host: Host
    vars: Mapping[str, Any]
    run_id: str
    #: The plans made so far in this run, in step order.
    plans: list[Plan]
    #: Rollback only: overwrite files changed after the run with their before-image (the operator saw the diff).
    force: bool
    #: Folders that steps planned so far will create, per target.
    overlay_dirs: dict[str, set[str]]

    def changed_dependencies(self, spec: Any) -> list[str]:
        """The steps named in spec.when (its declared dependencies) planned so far to change something."""

    def transport(self, target: str) -> Transport:
        """The one connection of this run to target (HOST, LOCAL or an inventory host's name)."""

    def target_name(self, target: str) -> str:
        """target as a host name (HOST becomes the remediated host's name)."""

    def read(self, target: str, path: str) -> FileState | None:
        """A file as it will be once the steps planned before this one have run."""

    def expect(self, change: FileChange, like: FileState | None, new_mode: int | None = None) -> None:
        """Tell later steps that this file will hold change.after."""

    def record(self, step_id: str, via: Transport | None = None, **fields: Any) -> None:
        """Journal what undo needs; call before the mutation it describes."""

    def note(self, step_id: str, **fields: Any) -> None:
        """Journal what a step learned or did that undo does not need."""

    def earlier_states(self, step_id: str, file: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
        """Rollback only: each earlier step of the run that wrote a file of step_id's journal entry too, and its own
        entry for that file (its before-state), first step first; not those this rollback leaves as they are
        (--skip); none under --force. A file found in one of their before-states is already undone past step_id's
        (kinds.file.undone)."""

    def backup_dir(self, target: str, path: str) -> str:
        """Where a step keeps the before-image of path."""
