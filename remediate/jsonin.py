"""JSON from outside remediate (-e, plan files, webhooks) -> Python values, nesting bounded, errors as InputError."""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any, Final

from remediate.errors import InputError

#: How deep JSON or YAML from outside may nest. Inventories, playbooks, plans and alerts nest a dozen levels at most;
#: Python's parsers, and every recursive walk over what they return, give up somewhere near a thousand.
MAX_DEPTH: Final = 64

# A string, or an unclosed one to the end of the text: one pass, never a second try from a later quote.
_STRING: Final = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_STEPS: Final = str.maketrans({"[": "\x01", "{": "\x01", "]": "\xff", "}": "\xff"})  # +1 and -1 as signed bytes


def loads(text: str | bytes, *, what: str, hint: str | None = None) -> Any:
    """text parsed as JSON, or an InputError that names `what` ("-e '{...'", "plan.json") and the problem.

    Nesting deeper than MAX_DEPTH is refused before parsing, so no caller meets a RecursionError."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{what} is not UTF-8 (byte {e.start})") from None
    deepest = depth(text) if text.count("[") + text.count("{") > MAX_DEPTH else 0  # fewer brackets: shallow enough
    if deepest > MAX_DEPTH:
        raise InputError(f"{what} nests {deepest} levels deep; JSON deeper than {MAX_DEPTH} levels is refused",
                         hint=hint or "flatten the value")
    try:
        return json.loads(text)
    except RecursionError:  # only if the scan and the parser disagree on malformed input
        raise InputError(f"{what} nests too deeply to be read", hint=hint) from None
    except ValueError as e:
        raise InputError(f"{what} is not valid JSON: {e}", hint=hint) from None


def depth(text: str) -> int:
    """How deep the brackets of a JSON text nest, strings left out; in linear time without recursion."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_STEPS)
    return max(accumulate(array("b", brackets.encode("latin-1"))), default=0)


def last_object(raw: bytes) -> Any:
    """The record of a file a writer adds whole lines of JSON to (a run's journal): its last line ended by its
    newline. What follows that line was cut short by a kill or a power cut before its write completed, and is not
    read. Any other line is never read in its place: a last whole line that is not a JSON object is damage
    (ValueError). A file that is one JSON text (one line, or one object spread over lines by hand) is that text,
    whatever it holds: the caller checks that it is a record, as it always has."""
    try:
        return json.loads(raw)
    except ValueError:
        lines = raw.split(b"\n")
        if len(lines) == 1 or (len(lines) == 2 and not lines[1]):
            raise  # one line, whole or not: nothing before it to be the record
    found = json.loads(lines[-2])
    if not isinstance(found, dict):
        raise ValueError("the last whole line is not a JSON object")
    return found
