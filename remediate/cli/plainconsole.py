"""The human output where rich would add nothing: not a terminal, no colour asked for. Markup is read as rich reads it
(the same tag pattern, escapes and nesting rules) and the text written as rich would write it, byte for byte, without
importing rich (20-25 ms of CPU) or running its render pipeline for each line. Anything that is
not a line of markup (a table, highlighted YAML) goes to a real rich console made at that moment, with the same
settings; so does everything when stdout or stderr is a terminal or colour is forced (FORCE_COLOR, TTY_COMPATIBLE)."""

from __future__ import annotations

import builtins
import io
import os
import re
import sys
from typing import IO, TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from rich.console import Console

#: rich.markup.RE_TAGS: a tag, and the backslashes before it.
TAGS: Final = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")
#: What rich's Text drops from every string it is given (bell, backspace, vertical tab, form feed, carriage return).
DROPPED: Final = dict.fromkeys((7, 8, 11, 12, 13))
TAB_SIZE: Final = 8
#: The environment that makes rich colour or treat a pipe as a terminal, or changes what it writes.
RICH_ONLY: Final = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


class Unsure(ValueError):
    """Markup whose reading only rich can vouch for (an explicit closing tag, a handler tag): rich prints the line."""


def console(*, stderr: bool = False) -> Any:
    """The console of the human output: a PlainConsole where rich would write plain text, else rich's own."""
    stream = sys.stderr if stderr else sys.stdout
    if plain_suits(stream):
        return PlainConsole(stderr=stderr)
    from rich.console import Console
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def styled(console: Console | PlainConsole, text: str, style: str) -> None:
    """A line of text (no markup in it) in a style: as rich prints a Text of it, which on a PlainConsole is the text."""
    if isinstance(console, PlainConsole):
        console.line(text)
        return
    from rich.text import Text
    console.print(Text(text, style=style), soft_wrap=True)


def plain_suits(stream: IO[str]) -> bool:
    """Whether rich, writing to stream, would write text alone: not a terminal, no colour forced, UTF-8, no notebook."""
    isatty = getattr(stream, "isatty", None)
    try:
        terminal = isatty is not None and bool(isatty())
    except ValueError:  # a closed stream: rich's own console decides what happens then
        return False
    encoding = (getattr(stream, "encoding", None) or "utf-8").lower()
    return (not terminal and not any(name in os.environ for name in RICH_ONLY) and encoding.startswith("utf")
            and not hasattr(builtins, "get_ipython"))


def text_of(markup: str) -> str:
    """The text rich shows for markup: its tags read and dropped, its escapes undone, as rich.markup.render does."""
    if "[" not in markup:
        return markup
    parts: list[str] = []
    opened: list[str] = []
    position = 0
    for match in TAGS.finditer(markup):
        start, end = match.span()
        parts.append(markup[position:start].replace("\\[", "["))
        escapes, tag = match[2], match[3]
        position = end
        if escapes:
            backslashes, escaped = divmod(len(escapes), 2)
            parts.append("\\" * backslashes)
            if escaped:
                parts.append(match[1][len(escapes):].replace("\\[", "["))
                continue
        _tag(tag.partition("=")[0], opened)
    parts.append(markup[position:].replace("\\[", "["))
    return "".join(parts)


def _tag(name: str, opened: list[str]) -> None:
    """Keep rich's count of open tags: `[/]` closes the last one (rich raises MarkupError when none is open)."""
    if name == "/":
        if not opened:
            raise Unsure("a closing tag with nothing to close")
        opened.pop()
    elif name.startswith(("/", "@")):
        raise Unsure(f"[{name}]")  # rich's own style names decide which it closes, and what a handler means
    else:
        opened.append(name)


def line_of(text: str) -> str:
    """text as rich prints it in soft-wrap mode (no wrapping, no cropping): control codes dropped and tabs expanded,
    on each line, to the next multiple of 8 cells."""
    text = text.translate(DROPPED)
    if "\t" not in text:
        return text
    return "\n".join(_expand_tabs(line) if "\t" in line else line for line in text.split("\n"))


def _expand_tabs(line: str) -> str:
    out: list[str] = []
    column = 0
    *parts, last = line.split("\t")
    for part in parts:
        column += cells(part) + 1  # the tab becomes a space, then spaces up to the next multiple of 8
        pad = -column % TAB_SIZE
        out.append(part + " " * (1 + pad))
        column += pad
    out.append(last)
    return "".join(out)


def cells(text: str) -> int:
    """The cells text takes on a terminal, as rich counts them (its table only where the text needs it)."""
    if text.isascii() and text.isprintable():
        return len(text)
    from rich.cells import cell_len
    return cell_len(text)


class _Nowhere(io.StringIO):
    """Where a closed stream's writes go (rich's NULL_FILE): nothing kept, nothing raised."""

    def write(self, text: str) -> int:
        return len(text)


_NOWHERE: Final = _Nowhere()


class PlainConsole:
    """The part of rich's Console the human output uses, for a stream that is not a terminal (see console())."""

    color_system: Final = None
    soft_wrap: Final = True
    record: Final = False
    is_terminal: Final = False

    def __init__(self, *, stderr: bool = False) -> None:
        self.stderr = stderr
        self._rich: Console | None = None

    @property
    def file(self) -> IO[str]:
        """As rich's: the stream of the moment (tests swap it), past rich's own proxy of it while a live display
        runs on the terminal (what is written to it would be drawn there), and nowhere when it is closed (None)."""
        stream = sys.stderr if self.stderr else sys.stdout
        stream = getattr(stream, "rich_proxied_file", stream)
        return _NOWHERE if stream is None else stream

    @property
    def width(self) -> int:
        """rich's width for a stream that is not a terminal: the first standard stream that is one, else 80;
        COLUMNS over both."""
        width = 0
        for fd in (0, 1, 2):
            try:
                width = os.get_terminal_size(fd).columns
            except (AttributeError, ValueError, OSError):
                continue
            break
        columns = os.environ.get("COLUMNS")
        if columns is not None and columns.isdigit():
            width = int(columns)
        return width or 80

    def print(self, *objects: Any, markup: bool | None = None, soft_wrap: bool | None = None) -> None:
        """A line of markup (or, markup=False, of text) as rich prints it; anything else is printed by rich."""
        if len(objects) == 1 and isinstance(objects[0], str):
            try:
                self.line(objects[0] if markup is False else text_of(objects[0]))
                return
            except Unsure:
                pass
        self.rich().print(*objects, markup=markup, soft_wrap=soft_wrap)

    def line(self, text: str) -> None:
        """text, no markup in it, as rich prints a Text of it (styles are not shown here)."""
        self.write(line_of(text) + "\n")

    def write(self, text: str) -> None:
        file = self.file
        try:
            file.write(text)
            file.flush()
        except BrokenPipeError:  # as rich does: quiet from now on, and exit 1
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1) from None

    def rich(self) -> Console:
        """A rich console with the human output's settings, for what is not a line of text."""
        if self._rich is None:
            from rich.console import Console
            self._rich = Console(stderr=self.stderr, highlight=False, soft_wrap=True, emoji=False)
        return self._rich
