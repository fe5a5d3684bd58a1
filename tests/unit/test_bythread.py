"""Per-thread attributes (transport/bythread.py): each thread sees only what it set or made, and a thread's values
end with it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from remediate.records import record
from remediate.transport.bythread import ByThread, MadeByThread


@record
class Holder:
    name: str
    pending: ByThread[str] = ByThread()
    made = MadeByThread(list)  # a class variable: not an argument


def in_thread(work: Callable[[], object]) -> object:
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(work()))
    worker.start()
    worker.join()
    return out[0]


def test_each_thread_sees_only_its_own() -> None:
    h = Holder("h")
    assert h.pending is None and h.made == []
    h.pending = "mine"
    h.made.append(1)

    def other() -> object:
        seen = (h.pending, list(h.made))
        h.pending = "theirs"
        h.made.append(2)
        return seen, (h.pending, list(h.made))

    assert in_thread(other) == ((None, []), ("theirs", [2]))
    assert (h.pending, h.made) == ("mine", [1])
    h.pending = None
    assert h.pending is None


def test_a_threads_values_end_with_it() -> None:
    """A later thread, which often gets the ended one's identifier, starts with none of its values."""
    h = Holder("h")

    def leave() -> object:
        h.pending = "left behind"
        h.made.append("left behind")
        return threading.get_ident()

    for _ in range(5):
        in_thread(leave)
        assert in_thread(lambda: (h.pending, h.made)) == (None, [])


def test_instances_keep_theirs_apart_and_a_field_default_is_none() -> None:
    a, b = Holder("a"), Holder("b", pending="given")
    a.made.append("a")
    assert (a.pending, b.pending, b.made) == (None, "given", [])
