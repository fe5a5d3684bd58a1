"""Commands from templates: split first, substitute after, so a variable is always exactly one argument.

A value never becomes code. Wherever a shell is given a script with -c (`sh -c`, `sh -e -c`, `bash -o pipefail -c`,
`env sh -c`, `docker exec C sh -c`, `timeout 5 bash -euc`, ...), each {{ var }} in the script becomes a positional
parameter ("$1", "$2" ...) whose value is passed as its own argument. In the code argument of another interpreter
(`python3 -c`, `perl -e`, `awk PROGRAM`, `sed SCRIPT`, ...) or of a command that hands its arguments to a shell
(`ssh`, `su -c`, `watch`), where it cannot be made an argument, a template is refused with the place it stands.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from typing import Any, Final

from remediate.errors import InputError

TEMPLATE: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*|steps\.[a-z0-9][a-z0-9_-]*\.[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SHELLS: Final = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "yash", "posh", "busybox"})
#: Interpreters, and where each takes its code: after these options (clusters such as `-ne` included), or as the
#: first operand (awk, sed) unless a script file is named.
INTERPRETERS: Final = {
    "python": ("c",), "perl": ("e", "E"), "ruby": ("e",), "node": ("e", "p", "-eval", "-print"), "php": ("r",),
    "lua": ("e",), "Rscript": ("e",), "julia": ("e",), "osascript": ("e",), "pwsh": ("c", "Command"),
    "expect": ("c",), "script": ("c", "-command"), "su": ("c", "-command"), "runuser": ("c", "-command"),
    "flock": ("c", "-command"), "tar": ("I", "F", "-checkpoint-action", "-to-command", "-use-compress-program",
                                         "-info-script", "-new-volume-script"), "rsync": ("e", "-rsh"),
}
OPERAND_PROGRAMS: Final = frozenset({"awk", "gawk", "mawk", "nawk", "sed"})
#: Commands that join their arguments into one string for a shell: no template may follow them.
JOINS_FOR_A_SHELL: Final = frozenset({"ssh", "watch", "eval"})
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
        try:
            split = shlex.split(_holed(value, names))
        except ValueError as e:
            raise InputError(f"{where}: the command {value!r} cannot be split into arguments: {e}",
                             hint="balance its quotes, or write it as a list") from None
        words = [_filled(w, names) for w in split]
    else:
        return value  # type: ignore[no-any-return]  # not a command: the param's own validation refuses it
    return _render_words(words, lookup, where)


def _render_words(words: list[str], lookup: Lookup, where: str) -> list[str]:
    """argv with variables substituted: positional in a shell's -c script, refused in other code (module doc)."""
    for index, word in enumerate(words):
        name = _program(word)
        script = _shell_script(words, index + (name == "busybox")) if name in SHELLS else None
        if script is not None:
            _refuse_code(words[index:script], where)  # the shell's own options
            for command in _commands(words[script]):
                _refuse_code(command, where, inner=True)  # a shell or an interpreter inside the script
                if TEMPLATE.search(words[script]):
                    _reevaluates(command, words[script], where)
            _refuse_code(words[script + 2:], where)  # what the script is given to run ("$@")
            return [_text(w, lookup) for w in words[:script]] + _shell(words[script:], lookup, where)
        _refuse_code(words[index:], where, only_first=True)
    return [_text(w, lookup) for w in words]


def _refuse_code(words: list[str], where: str, *, inner: bool = False, only_first: bool = False) -> None:
    """Refuse a template where a value would become code: a script inside a script, an interpreter's code, or the
    arguments of a command that joins them for a shell. only_first: words[0] alone is the program looked at."""
    for index, word in enumerate(words[:1] if only_first else words):
        name = _program(word)
        found, why = None, ""
        if name in SHELLS and inner:
            script = _shell_script(words, index + (name == "busybox"))
            found, why = (script, "it is the script of a shell inside a script") if script is not None else (None, "")
        elif name in JOINS_FOR_A_SHELL or (name == "env" and any(_splits_string(w) for w in words[index + 1:])):
            found = next((i for i in range(index + 1, len(words)) if TEMPLATE.search(words[i])), None)
            why = (f"{name} joins its arguments into a command line for a shell" if name != "env" else
                   "env -S splits it into a command line")
        else:
            found, why = _code_argument(name, words, index), f"it is code for {name}"
        if found is not None and TEMPLATE.search(words[found]):
            raise InputError(f"{where}: {TEMPLATE.search(words[found]).group(0)} stands in {words[found]!r}, and "  # type: ignore[union-attr]
                             f"{why}: a value put there would become code",
                             hint="pass the value as an argument of its own (sh -c 'do \"$1\"' sh {{ var }}; "
                                  "python3 -c 'import sys; ...sys.argv[1]' {{ var }})")


def _reevaluates(command: list[str], script: str, where: str) -> None:
    """Refuse a script holding a template when one of its commands makes text code again, wherever the value may
    have gone meanwhile (a variable, a pipe): eval, trap, source, a command word that is an expansion, or a shell or
    interpreter reading its program from stdin."""
    first = command[0]
    name = _program(first)
    why = None
    if first in ("eval", "trap", "source", "."):
        why = f"the script runs `{first}`, which makes text code again"
    elif first.startswith("$") or "`" in first:
        why = "the script runs a command whose name is an expansion"
    elif (name in SHELLS or name in INTERPRETERS) and not any(not w.startswith("-") for w in command[1:]):
        why = f"the script pipes text into `{first}`, which runs it as code"
    if why:
        raise InputError(f"{where}: a variable stands in a shell script, and {why}: its value could become code",
                         hint="pass the value as an argument of its own to a command that uses it as data, not code")


def _commands(script: str) -> list[list[str]]:
    """A shell script's simple commands, as words (best effort: a script shlex cannot split gives none)."""
    names: list[str] = []
    lexer = shlex.shlex(_holed(script, names), posix=True, punctuation_chars=";&|()<>\n")
    lexer.whitespace = " \t"
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token and set(token) <= set(";&|()<>\n"):
                commands.append([])
            else:
                commands[-1].append(_filled(token, names))
    except ValueError:
        return []
    return [c for c in commands if c]


def _program(word: str) -> str:
    """The program a word names, as the lists above spell it: /usr/bin/python3.11 -> python."""
    base = posixpath.basename(word)
    return re.sub(r"^(python|pypy|lua|luajit|perl|ruby|php)[0-9.]*$", lambda m: "python" if m.group(1) == "pypy" else
                  "lua" if m.group(1) == "luajit" else m.group(1), base).replace("nodejs", "node")


def _shell_script(words: list[str], index: int) -> int | None:
    """For a shell at words[index], the index of the script it runs with -c, or None (a script file, stdin)."""
    i, has_c = index + 1, False
    while i < len(words):
        word = words[i]
        if word == "--":
            i += 1
            break
        if word.startswith("--"):  # bash's long options; two of them take a value
            i += 2 if word in ("--rcfile", "--init-file") else 1
            continue
        if len(word) > 1 and word[0] in "-+":
            flags = word[1:]
            has_c = has_c or (word[0] == "-" and "c" in flags)
            i += 1 + sum(flags.count(f) for f in "oO")  # -o NAME, -O NAME (also in clusters: -eo pipefail)
            continue
        break
    return i if has_c and i < len(words) else None


def _code_argument(name: str, words: list[str], index: int) -> int | None:
    """For an interpreter at words[index], the index of the word it runs as code, or None."""
    if name in OPERAND_PROGRAMS:
        i = index + 1
        while i < len(words) and words[i].startswith("-") and words[i] != "-":
            word = words[i]
            if word in ("-e", "--expression") or (name != "sed" and word == "--source"):
                return i + 1 if i + 1 < len(words) else None
            if word in ("-f", "--file"):
                return None  # the program is a file
            i += 2 if name != "sed" and word in ("-F", "-v") else 1
        return i if i < len(words) else None
    options = INTERPRETERS.get(name)
    if options is None:
        return None
    for i in range(index + 1, len(words)):  # --command=CODE, --checkpoint-action=exec=CODE: code in the word itself
        option = words[i].split("=", 1)[0]
        if "=" in words[i] and option.startswith("--") and option[1:] in options:
            return i
    # Every word that could be its code option, options that take values (python3 -X utf8 -c ...) or not: a false
    # match only refuses a template, never lets one through.
    for i in range(index + 1, len(words) - 1):
        flags = words[i][1:] if words[i].startswith("-") and words[i] != "--" else None
        if flags and (flags in options or (not flags.startswith("-") and any(len(o) == 1 and o in flags for o in options))):
            return i + 1
    return None


def _splits_string(word: str) -> bool:
    """env's -S / --split-string (in any of its spellings): the rest is split into a command line."""
    return word.startswith("--split-string") or (word.startswith("-") and not word.startswith("--") and "S" in word)


def _holed(text: str, names: list[str]) -> str:
    """text with each template replaced by a hole that splitting keeps whole (names collects them, in order)."""
    def hole(match: re.Match[str]) -> str:
        names.append(match.group(0))
        return _HOLE.format(len(names) - 1)
    return TEMPLATE.sub(hole, text)


def _filled(word: str, names: list[str]) -> str:
    return re.sub("\x00(\\d+)\x00", lambda m: names[int(m.group(1))], word)


def _text(word: str, lookup: Lookup) -> str:
    return TEMPLATE.sub(lambda m: "" if (v := lookup(m.group(1))) is None else str(v), word)


def _shell(words: list[str], lookup: Lookup, where: str) -> list[str]:
    """SCRIPT [NAME ARG...] of a shell's -c: variables in SCRIPT become positional parameters appended after the
    others."""
    rest = [_text(w, lookup) for w in words[1:]] or ["sh"]  # rest[0] is $0
    script, values = [], []
    position, quote = 0, ""
    for match in TEMPLATE.finditer(words[0]):
        quote = _quote_state(words[0][:match.start()])
        if quote == "'":
            raise InputError(f"{where}: {match.group(0)} stands inside single quotes in a shell script, where it "
                             "cannot be passed safely", hint="move it outside the single quotes")
        script.append(words[0][position:match.start()])
        values.append(lookup(match.group(1)))
        index = len(rest) - 1 + len(values)
        script.append(f"${{{index}}}" if quote == '"' else f'"${{{index}}}"')
        position = match.end()
    script.append(words[0][position:])
    return ["".join(script), *rest, *("" if v is None else str(v) for v in values)]


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
