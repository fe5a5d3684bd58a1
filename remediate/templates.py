"""Commands from templates: split first, substitute after, so a variable is always exactly one argument.

A value never becomes shell syntax: in a `sh -c SCRIPT` command, each {{ var }} in SCRIPT becomes a positional
parameter ("$1", "$2" ...) whose value is passed as its own argument."""

from __future__ import annotations

import posixpath
import re
import shlex
from typing import Any, Callable, Final

from .errors import InputError

TEMPLATE: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*|steps\.[a-z0-9][a-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SHELLS: Final = frozenset({"sh", "bash", "dash", "ash", "ksh", "zsh"})
_HOLE: Final = "\x00{}\x00"

Lookup = Callable[[str], Any]


def render_command(value: Any, lookup: Lookup, where: str) -> list[str]:
    """A command param (a string split like a shell would, or a list) as argv, variables substituted per argument."""
    whole = TEMPLATE.fullmatch(value.strip()) if isinstance(value, str) else None
    if whole:  # "{{ argv }}": a list variable is the argv; any other value is one argument
        found = lookup(whole.group(1))
        return [str(v) for v in found] if isinstance(found, list) else ["" if found is None else str(found)]
    if isinstance(value, list):
        words = [str(v) for v in value]
    elif isinstance(value, str):
        names: list[str] = []

        def hole(match: re.Match[str]) -> str:
            names.append(match.group(0))
            return _HOLE.format(len(names) - 1)

        try:
            split = shlex.split(TEMPLATE.sub(hole, value))
        except ValueError as e:
            raise InputError(f"{where}: the command {value!r} cannot be split into arguments: {e}",
                             hint="balance its quotes, or write it as a list") from None
        words = [re.sub("\x00(\\d+)\x00", lambda m: names[int(m.group(1))], w) for w in split]
    else:
        return value
    if len(words) >= 3 and posixpath.basename(words[0]) in SHELLS and re.fullmatch(r"-[a-z]*c[a-z]*", words[1]):
        return _shell(words, lookup, where)
    return [_text(w, lookup) for w in words]


def _text(word: str, lookup: Lookup) -> str:
    return TEMPLATE.sub(lambda m: "" if (v := lookup(m.group(1))) is None else str(v), word)


def _shell(words: list[str], lookup: Lookup, where: str) -> list[str]:
    """sh -c SCRIPT [NAME ARG...]: variables in SCRIPT become positional parameters appended after the others."""
    rest = [_text(w, lookup) for w in words[3:]] or ["sh"]  # rest[0] is $0
    script, values = [], []
    position, quote = 0, ""
    for match in TEMPLATE.finditer(words[2]):
        quote = _quote_state(words[2][:match.start()])
        if quote == "'":
            raise InputError(f"{where}: {match.group(0)} stands inside single quotes in a shell script, where it "
                             "cannot be passed safely", hint="move it outside the single quotes")
        script.append(words[2][position:match.start()])
        values.append(lookup(match.group(1)))
        index = len(rest) - 1 + len(values)
        script.append(f"${{{index}}}" if quote == '"' else f'"${{{index}}}"')
        position = match.end()
    script.append(words[2][position:])
    return [_text(words[0], lookup), words[1], "".join(script), *rest,
            *("" if v is None else str(v) for v in values)]


def _quote_state(text: str) -> str:
    """The quote open at the end of text in a POSIX shell script: '', "'" or '"'."""
    quote, i = "", 0
    while i < len(text):
        c = text[i]
        if quote == "'":
            quote = "" if c == "'" else quote
        elif c == "\\":
            i += 1
        elif quote == '"':
            quote = "" if c == '"' else quote
        elif c in "'\"":
            quote = c
        i += 1
    return quote
