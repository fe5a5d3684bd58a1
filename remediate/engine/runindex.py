"""The run index: one row per run journal, cached in one private file, so that plan, a no-op apply, `runs` and
rollback cost the same with 10,000 past runs as with none. The journals stay the truth: the index is rebuilt from
them whenever it is missing, damaged, or may not match them.

The file (runs.index, 0600 in the 0700 state home, beside runs/ and never in it, so that writing it does not touch
the folder it describes) is lines of JSON:
    the header   the format; the runs folder's stamp (mtime_ns, inode) as it was before the rows were read; racy,
                 when that stamp cannot be trusted; the count of rows; the names in runs/ that are not journals,
                 with their stamps; and the heads: for each key a row gives (journal.py's: the newest run of a host
                 that changed something, the newest that applied a playbook), the number of the newest such row.
    the rows     one per journal, newest first (started, then run id, as history() sorts them), each with its
                 file's name and stamp (mtime_ns, size, inode) and whether that stamp was sure when it was read.
    the trailer  "sha256 HEX" of every line above, and the count in the header: a torn, truncated or foreign file
                 fails one of them and is rebuilt.

Current: the index answers only while the runs folder's stamp is the one it recorded and not racy. Every journal
write is a new file renamed into runs/ (private.write_bytes), and a rename, a create or a delete changes the
folder's mtime: one stat decides, whatever the history's size, and rows are parsed only as far as a question needs.
Otherwise the folder is listed, one lstat per name: a row whose stamp is unchanged (and was sure) is kept, every
other journal is read again, and the index is written anew.

Racy: file systems stamp times from a coarse clock, so two writes within one tick can leave the same mtime. A stamp
within RACY_NS of the scan is not sure: the file is read again at the next scan, and a folder that was that fresh,
or changed while it was listed, makes the index racy, so that the next reader lists it again.

SIGKILL: the index is written to a private temporary file, fsynced, then renamed over the old one: a kill at any
point leaves the old index or the new, never a mix (a stale one is caught by the stamp; a short one, after a power
loss, by the trailer); a temporary file a kill left behind is removed by a later write. Nothing is followed through
a link: the index and the journals are read with O_NOFOLLOW, and a link in runs/ is never taken for a journal."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from remediate import private
from remediate.errors import InputError

FORMAT: Final = 1
NAME: Final = "runs.index"
#: A stamp this close to the scan (ns) may share its mtime with a later write: not sure (see the module's doc).
RACY_NS: Final = 2_000_000_000
#: A temporary file of the index older than this (s) was left by a killed writer: removed.
LEFTOVER_S: Final = 600

Row = dict[str, Any]
#: A journal's record as its row (without name and stamp), or None when the file is not a run journal. The row's
#: "heads" lists the keys it may be the newest of.
Summarise = Callable[[Any], "Row | None"]


@dataclass(frozen=True)
class Index:
    """The rows of every journal, newest first, parsed on demand."""

    header: dict[str, Any]
    lines: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.lines)

    def row(self, n: int) -> Row:
        found: Row = json.loads(self.lines[n])
        return found

    def head(self, key: str) -> Row | None:
        """The newest row giving key, or None."""
        n = self.header["heads"].get(key)
        return None if n is None else self.row(n)

    def heads(self, prefix: str) -> dict[str, Row]:
        """Every head whose key starts with prefix, by key."""
        return {k: self.row(n) for k, n in self.header["heads"].items() if k.startswith(prefix)}

    def rows(self, *, host: str | None = None, needle: str | None = None) -> Iterator[Row]:
        """Newest first; only host's, and only rows whose line holds needle (a run id or a part of one), both
        looked for in the line before it is parsed."""
        wanted = [json.dumps(text)[1:-1].encode() for text in (host, needle) if text is not None]
        for line in self.lines:
            if all(w in line for w in wanted):
                row = self.row_of(line)
                if host is None or row.get("host") == host:
                    yield row

    def count(self, host: str | None = None) -> int:
        """How many rows (host's only: counted from the lines, each parsed only when it may be host's)."""
        return len(self.lines) if host is None else sum(1 for _ in self.rows(host=host))

    @staticmethod
    def row_of(line: bytes) -> Row:
        found: Row = json.loads(line)
        return found


def current(runs: Path, path: Path, summarise: Summarise) -> Index:
    """The index of the journals in runs, from path when it is current, else refreshed from runs and written."""
    stamp = _folder_stamp(runs)
    old = read(path)
    if old is not None and old.header["folder"] == stamp and not old.header["racy"]:
        return old
    fresh = scan(runs, old, summarise)
    write(path, fresh)
    return fresh


def read(path: Path) -> Index | None:
    """The index at path, or None when it is missing, not ours, torn or of another format."""
    try:
        data = private.read_bytes(path)
    except (OSError, InputError):
        return None
    cut = data.rfind(b"\n", 0, len(data) - 1)
    if cut < 0 or data[cut + 1:] != b"sha256 " + hashlib.sha256(data[:cut + 1]).hexdigest().encode() + b"\n":
        return None
    lines = data[:cut].split(b"\n")
    try:
        header = json.loads(lines[0])
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("rows") != len(lines) - 1:
        return None
    return Index(header, tuple(lines[1:]))


def scan(runs: Path, old: Index | None, summarise: Summarise) -> Index:
    """List runs: keep the rows whose file is unchanged since old read it (and was sure then), read the rest."""
    before, now = _folder_stamp(runs), time.time_ns()
    known = _known(old)
    rows: list[Row] = []
    others: dict[str, list[Any]] = {}
    racy = now - before[0] < RACY_NS
    with os.scandir(runs) as entries:
        for entry in entries:
            if not entry.name.endswith(".json"):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since it was listed
            sure = now - info.st_mtime_ns >= RACY_NS
            racy |= not sure
            stamp = [info.st_mtime_ns, info.st_size, info.st_ino]
            kept = known.get(entry.name)
            if kept is not None and kept[0] == stamp and kept[1]:
                if kept[2] is None:
                    others[entry.name] = [*stamp, True]
                else:
                    rows.append(kept[2])
                continue
            row = _summary(runs / entry.name, summarise)
            if row is None:
                others[entry.name] = [*stamp, sure]
            else:
                rows.append({**row, "file": entry.name, "stamp": stamp, "sure": sure})
    racy |= _folder_stamp(runs) != before  # changed while it was listed: what was missed is caught next time
    return build(rows, before, racy=racy, others=others)


def build(rows: list[Row], folder: list[int], *, racy: bool, others: dict[str, list[Any]]) -> Index:
    """The index of rows (any order), with its heads."""
    rows.sort(key=lambda r: (str(r.get("started") or ""), str(r.get("run_id") or ""), r["file"]), reverse=True)
    heads: dict[str, int] = {}
    for n, row in enumerate(rows):
        for key in row.get("heads") or ():
            heads.setdefault(key, n)
    header = {"format": FORMAT, "folder": folder, "racy": racy, "rows": len(rows), "others": others, "heads": heads}
    return Index(header, tuple(json.dumps(row, default=str).encode() for row in rows))


def write(path: Path, index: Index) -> None:
    """Replace the index at path, whole and fsynced; a failure to write (a full disk) only costs the next reader a
    scan. Temporary files killed writers left behind are removed first."""
    body = b"\n".join([json.dumps(index.header).encode(), *index.lines]) + b"\n"
    data = body + b"sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n"
    try:
        _remove_leftovers(path)
        private.write_bytes(path, data, sync=True)
    except OSError:
        pass


def _remove_leftovers(path: Path) -> None:
    old = time.time() - LEFTOVER_S
    for leftover in path.parent.glob(f".{path.name}.*"):
        try:
            if leftover.lstat().st_mtime < old:
                leftover.unlink()
        except OSError:
            pass


def _known(old: Index | None) -> dict[str, tuple[list[Any], bool, Row | None]]:
    """What old knew of each name: (stamp, sure, row or None for a file that is not a journal)."""
    if old is None:
        return {}
    known: dict[str, tuple[list[Any], bool, Row | None]] = {
        name: (value[:3], bool(value[3]), None) for name, value in old.header["others"].items()}
    for line in old.lines:
        row = Index.row_of(line)
        known[row["file"]] = (row["stamp"], bool(row["sure"]), row)
    return known


def _summary(path: Path, summarise: Summarise) -> Row | None:
    """The row of the journal at path, or None: not ours (another user's, a link), not JSON, not a journal."""
    try:
        record = json.loads(private.read_bytes(path))
    except (OSError, ValueError, RecursionError, InputError):
        return None
    return summarise(record)


def _folder_stamp(runs: Path) -> list[int]:
    info = os.stat(runs)
    return [info.st_mtime_ns, info.st_ino]
