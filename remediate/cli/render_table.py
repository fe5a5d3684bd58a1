"""The human output's tables (a fleet's summary, diagnose's checks): rich's Table, or, where every cell fits on one line
and rich would add no colour, the very same bytes written without rich's layout (a tenth of its CPU: a 100-host
summary took 40% of the renderer's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from remediate.cli.plainconsole import PlainConsole, Unsure, cells, text_of

if TYPE_CHECKING:
    from rich.console import Console

#: rich.box.HEAVY_HEAD's characters as rich draws a table with a header and no row lines, on a UTF-8 stream: the top,
#: the header's row, the line under it, the other rows, the last row, the bottom (each: left, horizontal or blank,
#: divider, right).
HEAVY_HEAD: Final = ("┏━┳┓", "┃ ┃┃", "┡━╇┩", "│ ││", "│ ││", "└─┴┘")


def show(console: Console | PlainConsole, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table with a bold header and these columns (folded when too wide), one row per item of rows (cells are
    rich markup), printed on console."""
    if _plain(console, columns, rows):
        return
    from rich.table import Table
    table = Table(show_header=True, header_style="bold", expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _plain(console: Any, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """Write the table as rich would print it, when rich would change nothing but the layout: no colours, no
    recording, not a terminal (output.plain's case), and every cell on one line with nothing for rich to trim or
    expand. False (nothing written) otherwise."""
    if console.color_system is not None or not console.soft_wrap or console.record or console.is_terminal:
        return False
    try:
        texts = [[_text(console, cell) for cell in row] for row in (columns, *rows)]
    except Unsure:
        return False  # markup only rich can read: its layout decides
    if any(not text.isprintable() or text != text.strip() for row in texts for text in row):
        return False  # tabs, zero-width characters, edge spaces: rich's own rules decide
    lengths = [[cells(text) for text in row] for row in texts]
    widths = [max(column) + 2 for column in zip(*lengths)]  # each cell padded by one space on either side
    if sum(widths) + len(widths) + 1 > console.width:  # rich's console.options.max_width is its width
        return False  # rich would fold cells to fit: its layout decides
    top, head, under, mid, foot, bottom = _frame(console)
    lines = [_edge(top, widths)]
    for n, (row, sizes) in enumerate(zip(texts, lengths)):
        left, _, divider, right = tuple(head if n == 0 else foot if n == len(texts) - 1 else mid)
        lines.append(left + divider.join(f" {text}{' ' * (width - size - 1)}"
                                         for text, size, width in zip(row, sizes, widths)) + right)
        if n == 0:
            lines.append(_edge(under, widths))
    lines.append(_edge(bottom, widths))
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()
    return True


def _edge(chars: str, widths: list[int]) -> str:
    left, line, divider, right = tuple(chars)
    return left + divider.join(line * width for width in widths) + right


def _frame(console: Any) -> tuple[str, ...]:
    """HEAVY_HEAD's characters as console draws them (rich's console may substitute others: ASCII, legacy Windows)."""
    if isinstance(console, PlainConsole):  # UTF-8 and never legacy Windows (plainconsole.plain_suits)
        return HEAVY_HEAD
    from rich import box
    frame = box.HEAVY_HEAD.substitute(console.options, safe=console.safe_box)
    return (frame.top_left + frame.top + frame.top_divider + frame.top_right,
            frame.head_left + " " + frame.head_vertical + frame.head_right,
            frame.head_row_left + frame.head_row_horizontal + frame.head_row_cross + frame.head_row_right,
            frame.mid_left + " " + frame.mid_vertical + frame.mid_right,
            frame.foot_left + " " + frame.foot_vertical + frame.foot_right,
            frame.bottom_left + frame.bottom + frame.bottom_divider + frame.bottom_right)


def _text(console: Any, markup: str) -> str:
    """The text rich shows for a cell's markup: rich's own reading of it (markup, emoji codes), unless it holds
    neither."""
    if "[" not in markup and ":" not in markup:
        return markup
    if isinstance(console, PlainConsole):  # emoji codes off, as on rich's console of the human output
        return text_of(markup)
    return str(console.render_str(markup).plain)
