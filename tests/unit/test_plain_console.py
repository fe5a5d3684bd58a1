"""The human output without rich, where rich would write text alone (not a terminal, no colour asked for): byte for
byte what rich writes, for any markup the renderer makes and for any text in it; rich itself wherever it would write
anything else (a terminal, FORCE_COLOR, a table too wide, a renderable that is not a line)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from remediate.cli import plainconsole
from remediate.cli.plainconsole import PlainConsole
from remediate.cli.render import HumanRenderer, escape
from remediate.contract.plan import PlanStatus, ShownDiff, ShownPlan
from remediate.engine import events
from remediate.engine.outcome import Action, Mode, RunEnd, Status

#: Text of every sort: markup's own characters, backslashes, tabs, control codes, wide and combining characters.
anything = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.text(st.sampled_from("ab [/]\\\t\r\x07\x1b:漢é\u0301 \n"), max_size=40),
)
#: Markup as the renderer writes it: its own tags around escaped text.
tag = st.sampled_from(["[bold]", "[dim]", "[red]", "[green]", "[yellow]", "[cyan]", "[/]", "[bold red]"])
markup = st.lists(st.one_of(tag, anything.map(escape)), max_size=8).map("".join)


def rich_prints(*objects: object, **options: object) -> str:
    out = io.StringIO()
    Console(file=out, highlight=False, soft_wrap=True, emoji=False).print(*objects, **options)  # type: ignore[arg-type]
    return out.getvalue()


def plain_prints(*objects: object, **options: object) -> str:
    out = io.StringIO()  # PlainConsole writes to the sys.stdout of the moment, as rich's console does
    with contextlib.redirect_stdout(out):
        PlainConsole().print(*objects, **options)  # type: ignore[arg-type]
    return out.getvalue()


@settings(max_examples=600, deadline=None)
@given(text=markup)
def test_a_line_of_the_renderers_markup_is_written_as_rich_writes_it(text: str) -> None:
    try:
        expected = rich_prints(text)
    except Exception:  # noqa: BLE001 - markup rich refuses ("[/]" with nothing open): rich raises it here too
        with pytest.raises(Exception):  # noqa: B017
            PlainConsole().print(text)
        return
    assert plain_prints(text) == expected


@settings(max_examples=400, deadline=None)
@given(text=anything)
def test_any_text_is_written_as_rich_writes_it(text: str) -> None:
    assert plain_prints(text, markup=False) == rich_prints(text, markup=False)
    from rich.text import Text
    styled = io.StringIO()
    with contextlib.redirect_stdout(styled):
        plainconsole.styled(PlainConsole(), text, "green")
    assert styled.getvalue() == rich_prints(Text(text, style="green"))
    try:
        expected = rich_prints(text)  # the raw text read as markup, whatever it holds
    except Exception:  # noqa: BLE001
        return
    assert plain_prints(text) == expected


@pytest.mark.parametrize("text", ["[/red]x", "[bold]x[/bold]", "[@click]x[/]", "[link=https://example.org]x[/link]",
                                  "[/]", "a [b]c[/b] [/]"])
def test_markup_only_rich_reads_is_left_to_rich(text: str) -> None:
    try:
        expected = rich_prints(text)
    except Exception as refused:  # noqa: BLE001
        with pytest.raises(type(refused)):
            PlainConsole().print(text)
        return
    assert plain_prints(text) == expected


@pytest.mark.parametrize("columns", [None, "", "40", "132", "wide"])
def test_the_width_is_richs(columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert PlainConsole().width == Console(file=io.StringIO()).width


@pytest.mark.parametrize("env", [{}, {"FORCE_COLOR": "1"}, {"TTY_COMPATIBLE": "1"}, {"TTY_INTERACTIVE": "0"}])
def test_rich_writes_wherever_it_would_write_more_than_text(env: dict[str, str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name in plainconsole.RICH_ONLY:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert plainconsole.plain_suits(io.StringIO()) is (not env)
    assert not plainconsole.plain_suits(Terminal())
    latin = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    assert not plainconsole.plain_suits(latin)  # rich draws another table frame there


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def events_of_a_run() -> list[events.Event]:
    step = ShownPlan("conf", "file", "h1", PlanStatus.CHANGE, "differs [in] \\ places\t(tabbed) \x07",
                     (ShownDiff("/etc/app.conf", "--- a\n+++ b\n@@ -1 +1 @@\n-old\tvalue\n+new [x] \\\n"),),
                     ("postfix reload",), ("grep -q x /etc/app.conf",))
    return [
        events.RunStarted("h[1]", "r1", "smtp-to-lmtp", Mode.APPLY),
        events.StepPlanned("h[1]", step, 0.1),
        events.StepStarted("h[1]", "conf", Action.APPLY),
        events.StepApplied("h[1]", "conf", 0.2),
        events.StepVerified("h[1]", "conf", "read back: a\\[b]", 0.1),
        events.StepFailed("h[1]", "conf", "exit 1: \\"),
        events.Command("h[1]", "postfix reload", 1, 0.5, "out\tput", "fatal: [no]"),
        events.Notice("h[1]", "a [bold]notice[/]"),
        events.RunFinished("h[1]", "r1", RunEnd.ROLLED_BACK, 1),
        events.Summary("h[1]", Status.FAILED, 1, "r1", "step 'conf' failed: exit 1: \\"),
        events.RolloutStarted(Mode.APPLY, ["h2", "h3"], 2, None, 0.0),
        events.StepStarted("h2", "conf", Action.APPLY),
        events.StepVerified("h2", "conf", "ok", 0.1),
        events.Summary("h2", Status.CHANGED, 0, "r2", "1 step(s) applied and verified"),
        events.Summary("h3", Status.SKIPPED, 4, None, "not started"),
        events.RolloutFinished(2, {"changed": 1, "skipped": 1}, 4),
    ]


def test_a_whole_run_is_shown_as_rich_shows_it(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    out, err = io.StringIO(), io.StringIO()
    by_rich = HumanRenderer(Console(file=out, highlight=False, soft_wrap=True, emoji=False),
                            Console(file=err, highlight=False, soft_wrap=True, emoji=False))
    plain = HumanRenderer()
    assert isinstance(plain.out, PlainConsole) and isinstance(plain.err, PlainConsole)
    for event in events_of_a_run():
        by_rich(event)
        plain(event)
    shown = capsys.readouterr()
    assert shown.out == out.getvalue() and shown.err == err.getvalue()
    assert "+new [x] \\" in shown.out and "│ h2   │ changed │ r2" in shown.out  # the diff, the fleet's table


def test_a_renderer_writing_to_a_pipe_never_imports_rich() -> None:
    """Into a pipe: the text rich would write, and rich never imported (20-25 ms of CPU spared)."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in plainconsole.RICH_ONLY}
    script = ("import sys, remediate.cli.render as r; from remediate.engine import events;"
              "h = r.HumanRenderer(); h(events.Notice('h1', 'hi [there]'));"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                          check=True)
    assert done.stdout.strip() == "[]" and done.stderr == "! hi [there]\n"


def test_a_closed_stdout_takes_the_lines_as_rich_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """`remediate playbooks >&-`: Python's sys.stdout is None; rich writes nowhere, and so does the plain console."""
    monkeypatch.setattr("sys.stdout", None)
    console = plainconsole.console()
    assert isinstance(console, PlainConsole)
    console.print("[bold]nothing[/] to see")  # no AttributeError
    HumanRenderer()(events.Notice("h1", "a notice"))  # stderr still there


def test_while_rich_draws_a_live_display_a_line_goes_to_the_file_behind_its_proxy(tmp_path: Path) -> None:
    """stdout a terminal (a live table), stderr a file: rich's Live puts a proxy in sys.stderr that draws what it is
    given on the terminal; an error line must go to the file, as rich's own console sends it."""
    from rich.console import Console
    from rich.live import Live
    terminal, log = io.StringIO(), tmp_path / "err.log"
    with log.open("w") as err, contextlib.redirect_stderr(err):
        console = plainconsole.console(stderr=True)
        with Live("working", console=Console(file=terminal, force_terminal=True), redirect_stderr=True):
            console.print("[red]ERROR-LINE[/] step failed")
    assert log.read_text() == "ERROR-LINE step failed\n" and "ERROR-LINE" not in terminal.getvalue()
