"""Output that needs no terminal library: JSON Lines for automation, plain columns, and text made safe to show.

Kept apart from render.py (rich) so that `remediate --help`, `--version` and `runs` start fast."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from remediate import redact
from remediate.engine import events
from remediate.engine.events import Event

if TYPE_CHECKING:
    from rich.console import Console

    from remediate.api.catalog import Described
    from remediate.cli.plainconsole import PlainConsole

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def _compact(column: str, value: Any) -> str:
    """A table cell: times without seconds' fractions and zone ("2026-11-29 13:49:08"), the rest as is."""
    text = str(value)
    return text[:19].replace("T", " ") if column == "started" and len(text) >= 19 else text


def visible(value: Any) -> Any:
    """Text safe for a terminal: every control character shown as caret notation (^[ for ESC) or \\x9b."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: _caret(m.group(0)), value)
    if isinstance(value, dict):
        return {k: visible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [visible(v) for v in value]
    return value


def plain(console: Console | PlainConsole, text: str) -> None:
    """A line of text as it is, no markup in it: written straight to the file where rich would change nothing (no
    colours, no wrapping, not recording, not a terminal), at a tenth of the CPU of rich's parse and render (a
    fleet's progress: 13 lines a host); else printed by rich, markup off."""
    if console.color_system is None and console.soft_wrap and not console.record and not console.is_terminal:
        console.file.write(text + "\n")
        console.file.flush()
    else:
        console.print(text, markup=False)


def _caret(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return "^" + chr(code + 64)
    return "^?" if code == 0x7F else f"\\x{code:02x}"


class JsonRenderer:
    """One JSON object per line on stdout, each with an event name and a timestamp."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()  # hosts run in threads: whole lines only

    def __call__(self, event: Event | Mapping[str, Any]) -> None:
        """Print one event (a mapping: its JSON form, as read back)."""
        masked = redact.data(as_json(event))
        assert isinstance(masked, dict)
        event = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **masked}
        line = json.dumps(event, sort_keys=False) + "\n"
        with self._lock:
            self.stream.write(line)
            self.stream.flush()

    def error(self, message: str, exit_code: int) -> None:
        self(events.Error(message, exit_code))

    def diagnosis(self, d: Any, again: str = "") -> None:
        for event in diagnosis_events(d):
            self(event)

    def table(self, title: str, rows: list[dict[str, Any]]) -> None:
        """Recorded runs (title: "run", the only table), one event each."""
        for row in rows:
            self(events.RunRecord(row))

    def kinds(self, kinds: list[Described], *, detail: bool) -> None:
        for kind in kinds:
            self(kind.event())

    def run_record(self, record: dict[str, Any]) -> None:
        self(events.RunRecord(record))


def as_json(event: Event | Mapping[str, Any]) -> dict[str, Any]:
    """An event's JSON form (events.Event.as_dict); a mapping is taken as that form already."""
    return event.as_dict() if isinstance(event, Event) else dict(event)


def diagnosis_events(d: Any) -> list[Event]:
    """A diagnosis (api.Diagnosis) as events: each check, each log signature, the probe, then the verdict."""
    found: list[Event] = [events.CheckResult(d.host, c.name, c.ok, c.evidence, c.fix, c.playbook, dict(c.suggest) or None)
                          for c in d.checks]
    found += [events.SignatureFound(d.host, s.name, s.meaning, s.count, s.first, s.last, len(s.bounced),
                                    dict(s.domains), dict(s.clients)) for s in d.signatures]
    found += [events.ProbeResult(d.host, p.target, p.verdict, p.evidence) for p in d.probes]
    found.append(verdict(d))
    return found


def verdict(d: Any) -> events.Diagnosed:
    """The last event of a diagnosis: healthy or not, the findings, and the playbooks that fix them."""
    fixes = sorted({c.fix for c in d.checks if c.fix and c.ok is False})
    return events.Diagnosed(d.host, d.exit_code == 0, d.exit_code, sum(c.ok is False for c in d.checks), fixes,
                            d.error, list(d.playbooks),
                            {f: {k: v for c in d.checks if c.fix == f for k, v in c.suggest.items()} for f in fixes})


def table_lines(rows: list[dict[str, Any]], *, width: int, terminal: bool) -> list[str]:
    """Rows as text: aligned columns on a terminal (the least needed columns left out, and named, when the width
    is too small, so that no cell ever wraps), one tab-separated line per row elsewhere (for grep and awk)."""
    cells = [{k: visible(_compact(k, v)) for k, v in row.items()} for row in rows]
    columns = list(rows[0])
    if not terminal:
        return ["\t".join(columns), *("\t".join(row[c] for c in columns) for row in cells)]
    wide = {c: max(len(c), *(len(r[c]) for r in cells)) for c in columns}
    for drop in ("operator", "playbook", "steps", "started"):
        if sum(wide[c] + 2 for c in columns) <= width:
            break
        columns.remove(drop)
    lines = ["  ".join(c.ljust(wide[c]) for c in columns).rstrip(),
             "  ".join("-" * wide[c] for c in columns)]
    lines += ["  ".join(row[c].ljust(wide[c]) for c in columns).rstrip() for row in cells]
    hidden = [c for c in rows[0] if c not in columns]
    if hidden:
        lines.append(f"(left out at this width: {', '.join(hidden)}; see --json)")
    return lines


def graph_lines(groups: Mapping[str, Mapping[str, Any]], root: str = "all") -> list[str]:
    """An inventory's groups as `ansible-inventory --graph` draws them: a group, then its child groups (each with
    theirs) and its own hosts one level in, in the inventory's order; a group in two parents is drawn in both."""
    lines: list[str] = []

    def draw(name: str, depth: int) -> None:
        lines.append(_graph_name(f"@{name}:", depth))
        for child in groups[name].get("children") or ():
            draw(child, depth + 1)
        lines.extend(_graph_name(host, depth + 1) for host in groups[name].get("direct_hosts") or ())

    draw(root, 0)
    return [str(visible(line)) for line in lines]


def _graph_name(name: str, depth: int) -> str:
    return "  |" * depth + "--" + name if depth else name
