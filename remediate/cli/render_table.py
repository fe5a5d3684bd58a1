"""The human output's tables (a fleet's summary, diagnose's checks): rich's Table, or, where every cell fits on one line
and rich would add no colour, the very same bytes written without rich's layout (a tenth of its CPU: a 100-host
summary took 40% of the renderer's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.cells import cell_len

if TYPE_CHECKING:
    from rich.console import Console


def show(console: Console, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
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


def _plain(console: Console, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """Write the table as rich would print it, when rich would change nothing but the layout: no colours, no
    recording, not a terminal (output.plain's case), and every cell on one line with nothing for rich to trim or
    expand. False (nothing written) otherwise."""
    if console.color_system is not None or not console.soft_wrap or console.record or console.is_terminal:
        return False
    cells = [[_text(console, cell) for cell in row] for row in (columns, *rows)]
    if any(not text.isprintable() or text != text.strip() for row in cells for text in row):
        return False  # tabs, zero-width characters, edge spaces: rich's own rules decide
    lengths = [[cell_len(text) for text in row] for row in cells]
    widths = [max(column) + 2 for column in zip(*lengths)]  # each cell padded by one space on either side
    options = console.options
    if sum(widths) + len(widths) + 1 > options.max_width:
        return False  # rich would fold cells to fit: its layout decides
    frame = box.HEAVY_HEAD.substitute(options, safe=console.safe_box)
    lines = [frame.get_top(widths)]
    for n, (row, sizes) in enumerate(zip(cells, lengths)):
        left, divider, right = ((frame.head_left, frame.head_vertical, frame.head_right) if n == 0 else
                                (frame.foot_left, frame.foot_vertical, frame.foot_right) if n == len(cells) - 1 else
                                (frame.mid_left, frame.mid_vertical, frame.mid_right))
        lines.append(left + divider.join(f" {text}{' ' * (width - size - 1)}"
                                         for text, size, width in zip(row, sizes, widths)) + right)
        if n == 0:
            lines.append(frame.get_row(widths, "head", edge=True))
    lines.append(frame.get_bottom(widths))
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()
    return True


def _text(console: Console, markup: str) -> str:
    """The text rich shows for a cell's markup: rich's own reading of it (markup, emoji codes), unless it holds
    neither."""
    if "[" not in markup and ":" not in markup:
        return markup
    return console.render_str(markup).plain
