"""Bounded waits that say what they waited for, what they saw last, and what to change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from ..errors import StepError

T = TypeVar("T")
POLL: Final = 0.25


class NotYet(Exception):
    """What a wait is waiting for has not happened yet (a transient state: worth asking again)."""


def wait(seconds: float, what: str, probe: Callable[[], T], *, explain: Callable[[], str] | None = None,
         hint: str | None = None) -> T:
    """Call probe until it returns without NotYet, for at most `seconds`; then say what never came and why.

    Any other exception (a permanent refusal) ends the wait at once."""
    try:
        for attempt in Retrying(stop=stop_after_delay(seconds), wait=wait_fixed(POLL),
                                retry=retry_if_exception_type(NotYet), reraise=True):
            with attempt:
                return probe()
    except NotYet as e:
        extra = ""
        if explain is not None:
            try:
                extra = explain()
            except Exception as why:  # noqa: BLE001 - the explanation must never hide the timeout itself
                extra = f"(could not gather more evidence: {why})"
        raise StepError(f"{what} within {seconds:g} s: {e}" + (f"; {extra}" if extra else ""), hint=hint) from None
    raise AssertionError("unreachable")
