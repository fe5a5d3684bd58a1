"""The human output's tables: written without rich's layout where that gives the same bytes as rich, by rich
everywhere else; never a byte different from rich's own table."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.table import Table

from remediate.cli import render_table
from remediate.cli.render import HumanRenderer, escape
from remediate.engine import events
from remediate.engine.outcome import Mode, Status

COLUMNS = ("host", "status", "run", "message")


def rich_bytes(columns: tuple[str, ...], rows: list[tuple[str, ...]], **console: object) -> str:
    """The table as rich prints it (what HumanRenderer printed before render_table)."""
    out = io.StringIO()
    table = Table(show_header=True, header_style="bold", expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(file=out, highlight=False, soft_wrap=True, **console).print(table)  # type: ignore[arg-type]
    return out.getvalue()


def shown_bytes(columns: tuple[str, ...], rows: list[tuple[str, ...]], **console: object) -> str:
    out = io.StringIO()
    render_table.show(Console(file=out, highlight=False, soft_wrap=True, **console), columns, rows)  # type: ignore[arg-type]
    return out.getvalue()


cell = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=25),  # printable ASCII, markup's too
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),  # anything: wide, zero-width, controls
    st.text(st.sampled_from("ab [/]\\:smile:漢é\u0301 "), max_size=20),  # markup, emoji codes, wide, combining
    st.builds(escape, st.text(max_size=20)),  # what the renderer gives: escaped text
    st.sampled_from(["[green]changed[/]", "[red]failed[/]", "", "4 step(s) applied and verified"]),
)


@settings(max_examples=500, deadline=None)
@given(rows=st.lists(st.tuples(cell, cell, cell, cell), max_size=6), width=st.sampled_from([None, 30, 80, 200]),
       emoji=st.booleans())
def test_a_table_is_byte_for_byte_what_rich_prints(rows: list[tuple[str, ...]], width: int | None,
                                                   emoji: bool) -> None:
    try:
        expected = rich_bytes(COLUMNS, rows, width=width, emoji=emoji)
    except Exception:  # noqa: BLE001 - markup rich itself refuses: nothing to compare
        return
    assert shown_bytes(COLUMNS, rows, width=width, emoji=emoji) == expected


def test_a_fleet_summary_is_written_without_rich_layout_and_as_rich_would(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(f"h{n}", "[green]changed[/]", f"20261206T120743Z-{n:06x}", "4 step(s) applied and verified")
            for n in range(100)]
    expected = rich_bytes(COLUMNS, rows)
    monkeypatch.setattr(Table, "__rich_console__", lambda *a: pytest.fail("rich laid the table out"))
    assert shown_bytes(COLUMNS, rows) == expected and expected.count("\n") == 104


@pytest.mark.parametrize("console", [{"width": 40}, {"force_terminal": True}, {"color_system": "truecolor"},
                                     {"record": True}])
def test_rich_lays_out_what_it_would_change(console: dict[str, object]) -> None:
    """A table too wide for the console (rich folds it), or printed in colour or recorded: rich prints it."""
    rows = [("h1", "[green]changed[/]", "20261206T120743Z-abcdef", "4 step(s) applied and verified")]
    assert shown_bytes(COLUMNS, rows, **console) == rich_bytes(COLUMNS, rows, **console)
    if "width" in console:
        assert max(len(line) for line in shown_bytes(COLUMNS, rows, **console).splitlines()) <= 40


def test_a_fleets_summary_through_the_renderer() -> None:
    out = io.StringIO()
    renderer = HumanRenderer(Console(file=out, highlight=False, soft_wrap=True), Console(file=io.StringIO()))
    renderer(events.RolloutStarted(mode=Mode.APPLY, hosts=["h1", "h[2]"], forks=2, serial=None, max_fail_percent=0))
    renderer(events.Summary("h1", Status.CHANGED, 0, "r1", "1 step(s) applied and verified"))
    renderer(events.Summary("h[2]", Status.FAILED, 1, "r2", "step 'x' failed: no :smile: here"))
    renderer(events.RolloutFinished(hosts=2, statuses={"changed": 1, "failed": 1}, exit_code=1))
    table = out.getvalue().split("\n", 1)[1]
    assert table == rich_bytes(COLUMNS, [("h1", "[green]changed[/]", "r1", "1 step(s) applied and verified"),
                                         (escape("h[2]"), "[red]failed[/]", "r2",
                                          escape("step 'x' failed: no :smile: here"))])
    assert "h[2]" in table and "😄" in table


short = st.text(st.sampled_from("abcXYZ019 -_.'()[]/\\:漢é"), max_size=12).map(str.strip)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(short, short, short, short), max_size=8), emoji=st.booleans())
def test_a_table_that_fits_is_written_without_rich_and_as_rich_prints_it(rows: list[tuple[str, ...]],
                                                                         emoji: bool) -> None:
    try:
        expected = rich_bytes(COLUMNS, rows, width=120, emoji=emoji)
    except Exception:  # noqa: BLE001 - markup rich itself refuses: nothing to compare
        return
    out = io.StringIO()
    written = render_table._plain(Console(file=out, highlight=False, soft_wrap=True, width=120, emoji=emoji),
                                  COLUMNS, rows)
    assert out.getvalue() == (expected if written else "")
    text = "".join("".join(row) for row in rows)
    assert written or "[" in text or ":" in text  # 4 cells of at most 24 columns fit in 120: only markup declines
