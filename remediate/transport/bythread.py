"""Attributes whose value each thread has its own of: a connection that hosts running in parallel share (a step that
targets another host of the run) keeps each host's run's state apart. Each instance keeps them in a threading.local,
so a thread's values end with it (a later thread that gets its identifier starts with none); a pooled worker that
runs one host after another keeps them from one to the next, so each run leaves none behind (its journal's end,
forget_ahead). An instance holding them is neither copied nor pickled (nothing does either to a transport)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


def _local(instance: Any, slot: str) -> threading.local:
    found: threading.local | None = vars(instance).get(slot)
    if found is None:
        found = vars(instance).setdefault(slot, threading.local())
    return found


class ByThread(Generic[T]):
    """A descriptor: on each instance, what this thread last set (None when it set nothing, or None)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_by_thread"

    def __get__(self, instance: Any, owner: type | None = None) -> T | None:
        if instance is None:  # on the class: a dataclass field's default
            return None
        value: T | None = getattr(_local(instance, self.slot), "value", None)
        return value

    def __set__(self, instance: Any, value: T | None) -> None:
        _local(instance, self.slot).value = value


class MadeByThread(Generic[T]):
    """A descriptor for a class variable: on each instance, this thread's own value, made (make()) when it first
    asks. Never set: the value is changed in place."""

    def __init__(self, make: Callable[[], T]) -> None:
        self.make = make

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_by_thread"

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> MadeByThread[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object, owner: type | None = None) -> T | MadeByThread[T]:
        if instance is None:  # on the class (dataclasses looks there): the descriptor itself
            return self
        local = _local(instance, self.slot)
        if not hasattr(local, "value"):
            local.value = self.make()
        value: T = local.value
        return value
