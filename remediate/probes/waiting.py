"""Bounded waits that say what they waited for, what they saw last, and what to change."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Final, TypeVar

from remediate.errors import StepError
from remediate.records import record

T = TypeVar("T")
POLL: Final = 0.25


class NotYet(Exception):
    """What a wait is waiting for has not happened yet (a transient state: worth asking again).

    seen: what the probe observed (e.g. the values read), when it can be compared: the same observation, read again
    and again, is a state that has settled, not one on its way (see Stalled)."""

    def __init__(self, message: str, *, seen: Hashable | None = None) -> None:
        super().__init__(message)
        self.seen = seen


@record(frozen=True)
class Stalled:
    """When to stop waiting early: the probe saw the same thing `reads` times in a row over at least `seconds`.
    explain(seen) says what holds it there (or ""); the wait then fails at once instead of running out its time."""

    reads: int = 5
    seconds: float = 5.0
    explain: Callable[[Hashable], str] | None = None


def wait(seconds: float, what: str, probe: Callable[[], T], *, explain: Callable[[], str] | None = None,
         hint: str | None = None, stalled: Stalled | None = None) -> T:
    """Call probe until it returns without NotYet, for at most `seconds`; then say what never came and why.

    Any other exception (a permanent refusal) ends the wait at once; so does, with stalled, the same observation
    read over and over (a value that is wrong and stays wrong)."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed  # (and concurrent.futures)

    same = _Same(stalled, what, seconds, hint) if stalled is not None else None
    try:
        for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(POLL),
                                retry=retry_if_exception_type(NotYet), reraise=True):
            with attempt:
                try:
                    return probe()
                except NotYet as e:
                    if same is not None:
                        same.saw(e)
                    raise
    except NotYet as e:
        extra = ""
        if explain is not None:
            try:
                extra = explain()
            except Exception as why:  # noqa: BLE001 - the explanation must never hide the timeout itself
                extra = f"(could not gather more evidence: {why})"
        raise StepError(f"{what} within {seconds:g} s: {e}" + (f"; {extra}" if extra else ""), hint=hint) from None
    raise AssertionError("unreachable")


class _Same:
    """How long the probe has seen the same thing; a StepError once that is Stalled's limit."""

    def __init__(self, stalled: Stalled, what: str, seconds: float, hint: str | None) -> None:
        self.stalled, self.what, self.seconds, self.hint = stalled, what, seconds, hint
        self.seen: Hashable | None = None
        self.reads = 0
        self.since = 0.0

    def saw(self, e: NotYet) -> None:
        now = time.monotonic()
        if e.seen is None or e.seen != self.seen:
            self.seen, self.reads, self.since = e.seen, 1, now
            return
        self.reads += 1
        if self.reads < self.stalled.reads or now - self.since < self.stalled.seconds:
            return
        why = ""
        if self.stalled.explain is not None:
            try:
                why = self.stalled.explain(e.seen)
            except Exception as error:  # noqa: BLE001 - the explanation must never hide the finding itself
                why = f"(could not gather more evidence: {error})"
        raise StepError(f"{self.what}: {e}, the same in {self.reads} reads over {now - self.since:.0f} s: it has "
                        f"settled there, so remediate stops waiting (it would have waited {self.seconds:g} s)"
                        + (f"; {why}" if why else ""), hint=self.hint)
