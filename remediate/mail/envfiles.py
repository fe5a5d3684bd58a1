"""Compose's variables as compose reads them: `.env` and env_file syntax, and ${VAR} interpolation. Pure text.

Interpolation follows the compose specification: $$ is a literal $, $VAR and ${VAR}, ${VAR:-default} and
${VAR-default}, ${VAR:?error} and ${VAR?error}, ${VAR:+replacement} and ${VAR+replacement}. Env files hold
KEY=VALUE lines; '#' starts a comment line; `export ` is allowed; matching quotes around a value are removed
(single quotes keep the text as it is, double quotes and bare values are interpolated).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from remediate.errors import InputError
from remediate.records import record

NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*"
_BRACED: Final = re.compile(r"\$\{(?P<name>" + NAME + r")(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>[^}]*))?\}")
_BARE: Final = re.compile(r"\$(?P<name>" + NAME + ")")
_REFERENCE: Final = re.compile(r"\$(?:\{(" + NAME + r")|(" + NAME + "))")
_LINE: Final = re.compile(r"^\s*(?:export\s+)?(?P<key>" + NAME + r")\s*=\s*(?P<value>.*?)\s*$")


class Unresolved(InputError):
    """A ${VAR:?message} whose variable is unset, or a malformed ${...}; `reason` is the message without where."""

    def __init__(self, where: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{where}: {reason}", hint=hint)
        self.reason = reason


@record(frozen=True)
class EnvLine:
    """One KEY=VALUE line of an env file: its value as written (quotes included) and as compose reads it."""

    key: str
    raw: str
    value: str
    line: int  # 1-based
    quoted: str  # '', "'" or '"'


def interpolate(text: str, variables: Mapping[str, str], where: str) -> str:
    """text with every variable reference replaced as compose replaces it."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        braced = _BRACED.match(text, i)
        if braced:
            out.append(_apply(braced["name"], braced["op"], braced["arg"], variables, where))
            i = braced.end()
            continue
        bare = _BARE.match(text, i)
        if bare:
            out.append(variables.get(bare["name"], ""))
            i = bare.end()
            continue
        if text.startswith("${", i):
            raise Unresolved(where, f"{text!r} has a malformed variable reference at {text[i:i + 20]!r}",
                             hint="write ${NAME}, ${NAME:-default} or $$ for a literal $")
        out.append("$")
        i += 1
    return "".join(out)


def _apply(name: str, op: str | None, arg: str | None, variables: Mapping[str, str], where: str) -> str:
    value = variables.get(name)
    unset, empty = value is None, not value
    if op is None:
        return value or ""
    fallback = interpolate(arg or "", variables, where)
    if op == ":-":
        return fallback if empty else str(value)
    if op == "-":
        return fallback if unset else str(value)
    if op in (":?", "?"):
        if (op == ":?" and empty) or (op == "?" and unset):
            raise Unresolved(where, f"{name} is {'unset' if unset else 'empty'}, so compose itself would refuse this "
                                    f"file ({fallback or 'required variable'})")
        return str(value)
    if op == ":+":
        return "" if empty else fallback
    return "" if unset else fallback  # "+"


def references(text: str) -> list[str]:
    """The variable names text refers to, in order ($$ is not a reference)."""
    return [m.group(1) or m.group(2) for m in _REFERENCE.finditer(text.replace("$$", ""))]


def parse(text: str, name: str, variables: Mapping[str, str] | None = None) -> list[EnvLine]:
    """The KEY=VALUE lines of an env file (.env or an env_file), values read as compose reads them."""
    lines: list[EnvLine] = []
    known = dict(variables or {})
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise InputError(f"{name}:{number}: not a KEY=VALUE line: {stripped[:60]!r}",
                             hint="env files hold KEY=VALUE lines and # comments")
        raw, quoted = match["value"], ""
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            quoted, body = raw[0], raw[1:-1]
        else:
            body = re.sub(r"\s+#.*$", "", raw)  # an inline comment after a bare value
        value = body if quoted == "'" else interpolate(body, known, f"{name}:{number}")
        known[match["key"]] = value
        lines.append(EnvLine(match["key"], raw, value, number, quoted))
    return lines


def values(lines: list[EnvLine]) -> dict[str, str]:
    """KEY -> value, the last definition winning, as compose reads a file."""
    return {line.key: line.value for line in lines}


def edit(text: str, name: str, *, remove: frozenset[str] = frozenset(),
         replace: Mapping[str, tuple[str, str]] | None = None) -> str:
    """text with the lines of `remove` deleted and the last line of each `replace` key rewritten as NEW=value
    (its other lines deleted), every other byte kept; refused unless re-reading shows exactly that change."""
    replace = dict(replace or {})
    lines = text.splitlines(keepends=True)
    parsed = parse(text, name)
    last = {line.key: line.line for line in parsed}
    doomed, rewritten = set(), {}
    for line in parsed:
        if line.key in remove or (line.key in replace and line.line != last[line.key]):
            doomed.add(line.line)
        elif line.key in replace:
            new_key, value = replace[line.key]
            ending = lines[line.line - 1][len(lines[line.line - 1].rstrip("\r\n")):]
            rewritten[line.line] = f"{new_key}={value}{ending or chr(10)}"
    result = "".join(rewritten.get(i, chunk) for i, chunk in enumerate(lines, 1) if i not in doomed)
    wanted = values(parsed)
    for key in remove:
        wanted.pop(key, None)
    for key, (new_key, value) in replace.items():
        if key in wanted:
            wanted.pop(key)
            wanted[new_key] = value
    got = values(parse(result, name))
    if got != wanted:
        raise InputError(f"{name}: refusing the edit: the file would read {got}, not {wanted}",
                         hint="edit it by hand")
    return result
