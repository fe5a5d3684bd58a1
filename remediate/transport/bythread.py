"""An attribute whose value each thread has its own of: a connection that runs in parallel hosts share (a step that
targets another host of the run) keeps each host's run's state apart."""

from __future__ import annotations

import threading
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ByThread(Generic[T]):
    """A descriptor: on each instance, what this thread last set (None when it set nothing, or None)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_by_thread"

    def __get__(self, instance: Any, owner: type | None = None) -> T | None:
        if instance is None:
            return None
        by_thread: dict[int, T] = vars(instance).get(self.slot, {})
        return by_thread.get(threading.get_ident())

    def __set__(self, instance: Any, value: T | None) -> None:
        by_thread = vars(instance).setdefault(self.slot, {})
        if value is None:
            by_thread.pop(threading.get_ident(), None)
        else:
            by_thread[threading.get_ident()] = value
