"""The run index: one row per run journal, cached in one private file, so that plan, a no-op apply, `runs` and
rollback cost the same with 10,000 past runs as with none. The journals stay the truth: the index is rebuilt from
them whenever it is missing, damaged, or may not match them.

The file (runs.index, 0600 in the 0700 state home, beside runs/ and never in it, so that writing it does not touch
the folder it describes) is lines, each "CRC32 JSON" (the crc32 of that JSON, 8 hex digits):
    the header   the format; the runs folder's stamp (mtime_ns, inode) as it was before the journals were listed;
                 racy, when that stamp cannot be trusted; the count of rows, their length in bytes and the
                 catalog's; the names in runs/ that are not journals, with their stamps; the journals whose run
                 was still running, with their stamps (open); the count of rows per host; and the heads: for each
                 key a row gives (runrecord.summary's: a host's newest run that may have changed something, its
                 newest that applied a playbook), where the newest such row is (offset and length).
    the rows     one per journal, newest first (started, then run id, as history() sorts them): what `runs` shows.
    the catalog  one line: for each row, in order, its file's name and stamp (mtime_ns, size, inode), whether that
                 stamp was sure when the journal was read, its order, host and heads, and whether its run was still
                 running: what a refresh needs, so that it keeps unchanged rows as the bytes they are, never parsed.
Only what a question needs is read: the header (one read), a head's row (one pread), the newest rows for `runs`. A
file whose size is not the header's, or a line whose crc32 does not match, is torn or foreign: it is rebuilt.

Current: the index answers only while the runs folder's stamp is the one it recorded and not racy, and every
journal that was still running then has the stamp it had. A journal is created, and written whole at its run's
end, as a new file renamed into runs/ (private.write_bytes), and a rename, a create or a delete changes the
folder's mtime; in between, its run appends to it (runrecord.KeptFile), which leaves the folder alone but grows the
file: one stat of the folder and one per running journal decide, whatever the history's size. A journal a killed
run left stays running, and costs that one stat. Otherwise the folder is listed, one lstat per name:
a row whose stamp is unchanged (and was sure) is kept, every other journal is read again, and the index is written
anew. A journal edited in place (by hand: remediate never does) leaves the folder's stamp alone; what a head names
is checked against its journal when it is read (journal.py), and a mismatch refreshes the index.

Racy: file systems stamp times from a coarse clock, so two writes within one tick can leave the same mtime. A stamp
within RACY_NS of the scan is not sure: the file is read again at the next scan, and a folder that was that fresh,
or changed while it was listed, makes the index racy, so that the next reader lists it again.

SIGKILL: the index is written to a private temporary file, fsynced, then renamed over the old one: a kill at any
point leaves the old index or the new, never a mix (a stale one is caught by the stamp, a short one by its size);
a reader keeps the file it opened, whatever is renamed over it. A temporary file a killed writer left behind is
removed by a later write. Nothing is followed through a link: the index and the journals are opened with
O_NOFOLLOW and must be regular files of ours, and a link in runs/ is never taken for a journal."""

from __future__ import annotations

import collections
import json
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from remediate import private
from remediate.engine import runrecord
from remediate.errors import InputError
from remediate.records import record

FORMAT: Final = 4
NAME: Final = "runs.index"
#: A stamp this close to the scan (ns) may share its mtime with a later write: not sure (see the module's doc).
RACY_NS: Final = 2_000_000_000
#: What ends each part of a head's key (journal.py's keys: "changed", host; "applied", playbook, host).
SEP: Final = "\x1f"
#: How much of the index one read takes (the header, then the rows, newest first).
CHUNK: Final = 65536
#: A temporary file of the index older than this (s) was left by a killed writer: removed.
LEFTOVER_S: Final = 600

Row = dict[str, Any]
#: A journal's record as its row (without name and stamp), or None when the file is not a run journal. The row's
#: "heads" lists the keys it may be the newest of.
Summarise = Callable[[Any], "Row | None"]


class Damaged(Exception):
    """A line of the index whose crc32 does not match: the index is rebuilt (journal.py asks again)."""


class Index:
    """The rows of every journal, newest first, read and parsed only as far as a question needs."""

    def __init__(self, header: dict[str, Any], read_at: Callable[[int, int], bytes], close: Callable[[], None]) -> None:
        self.header = header
        self._read_at = read_at  # (offset from the first row, length) -> bytes: the rows, then the catalog
        self.close = close

    def catalog(self) -> list[list[Any]]:
        """Each row's entry (see Entry.listed), in the rows' order: what a refresh needs, without parsing rows."""
        found: list[list[Any]] = json.loads(_checked(self._read_at(int(self.header["bytes"]),
                                                                 int(self.header["catalog"]))))
        return found

    def rows_bytes(self) -> bytes:
        return self._read_at(0, int(self.header["bytes"]))

    def __len__(self) -> int:
        return int(self.header["rows"])

    def head(self, key: str) -> Row | None:
        """The newest row giving key, or None."""
        where = self.header["heads"].get(key)
        return None if where is None else parse(self._read_at(where[0], where[1]))

    def heads(self, prefix: str, hosts: frozenset[str] | None = None) -> dict[str, Row]:
        """Every head whose key starts with prefix (and, given hosts, ends with one of them and SEP), by key."""
        return {k: parse(self._read_at(at, size)) for k, (at, size) in self.header["heads"].items()
                if k.startswith(prefix) and (hosts is None or k[:-1].rpartition(SEP)[2] in hosts)}

    def rows(self, *, host: str | None = None, needle: str | None = None) -> Iterator[Row]:
        """Newest first; only host's, and only rows whose line holds needle (a run id or a part of one), both
        looked for in the line before it is parsed."""
        wanted = [json.dumps(text)[1:-1].encode() for text in (host, needle) if text is not None]
        for line in self._lines():
            if all(w in line for w in wanted):
                row = parse(line)
                if host is None or row.get("host") == host:
                    yield row

    def count(self, host: str | None = None) -> int:
        """How many rows (host's only)."""
        return len(self) if host is None else int(self.header["hosts"].get(host, 0))

    def _lines(self) -> Iterator[bytes]:
        """The rows' lines, newest first, read CHUNK bytes at a time."""
        total, at, rest = int(self.header["bytes"]), 0, b""
        while at < total:
            chunk = self._read_at(at, min(CHUNK, total - at))
            if not chunk:
                raise Damaged("the index ends early")
            at += len(chunk)
            *lines, rest = (rest + chunk).split(b"\n")
            yield from lines
        if rest:
            raise Damaged("the index's last row has no end")


def parse(line: bytes) -> Row:
    """A line's JSON object, once its crc32 matches (Damaged)."""
    found: Row = json.loads(_checked(line))
    return found


def _checked(line: bytes) -> bytes:
    """A line's JSON text, once its crc32 matches (Damaged)."""
    body = line[9:].rstrip(b"\n")
    if line[:8] != b"%08x" % zlib.crc32(body):
        raise Damaged("a line of the index fails its crc32")
    return body


def _line(value: Any) -> bytes:
    body = json.dumps(value, default=str).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def current(runs: Path, path: Path, summarise: Summarise, *, rebuild: bool = False) -> Index:
    """The index of the journals in runs, from path when it is current, else refreshed from runs and written.
    rebuild: every journal read again (a damaged row was met)."""
    stamp = _folder_stamp(runs)
    old = None if rebuild else read(path)
    if old is not None and old.header["folder"] == stamp and not old.header["racy"] and _unchanged(runs, old):
        return old
    try:
        fresh = scan(runs, old, summarise)
    except (Damaged, ValueError, TypeError, KeyError):  # a damaged catalog: every journal read again
        fresh = scan(runs, None, summarise)
    finally:
        if old is not None:
            old.close()
    write(path, fresh)
    return fresh


def _unchanged(runs: Path, old: Index) -> bool:
    """Whether every journal whose run was still running when old was written has the stamp it had then."""
    for name, stamp in old.header["open"].items():
        try:
            info = os.lstat(runs / name)
        except OSError:
            return False
        if list(_stamp(info)) != stamp:
            return False
    return True


def _stamp(info: os.stat_result) -> tuple[int, int, int]:
    """A journal's stamp (mtime_ns, size, inode): what tells a file changed, an append included."""
    return info.st_mtime_ns, info.st_size, info.st_ino


def read(path: Path) -> Index | None:
    """The index at path, or None when it is missing, a link, not ours, torn or of another format. It keeps the
    file it opened (close() it), so that rows are read from that very file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise Damaged("not a regular file of ours")
        first = os.pread(fd, CHUNK, 0)
        while b"\n" not in first and len(first) < info.st_size:
            first += os.pread(fd, CHUNK, len(first))
        header = parse(first[:first.index(b"\n") + 1])
        start = first.index(b"\n") + 1
        if header.get("format") != FORMAT or info.st_size != start + header.get("bytes", -1) + header.get("catalog", 0):
            raise Damaged("another format, or torn")
    except (Damaged, ValueError, OSError):
        os.close(fd)
        return None
    return Index(header, lambda at, size: os.pread(fd, size, start + at), lambda: os.close(fd))


@record(frozen=True)
class Entry:
    """One journal's row as the index writes it, with what a refresh and the header need of it."""

    file: str
    stamp: tuple[int, int, int]  # mtime_ns, size, inode
    sure: bool  # the stamp was older than RACY_NS when the journal was read
    order: tuple[str, str]  # started, run id: newest first
    host: str | None
    heads: tuple[str, ...]
    line: bytes
    running: bool  # its run was still running: its journal may grow (see the module's doc)

    @classmethod
    def of(cls, file: str, stamp: tuple[int, int, int], sure: bool, row: Row) -> Entry:
        heads = tuple(row.pop("heads", None) or ())
        host = row.get("host")
        return cls(file, stamp, sure, (str(row.get("started") or ""), str(row.get("run_id") or "")),
                   host if isinstance(host, str) else None, heads, _line({**row, "file": file}),
                   row.get("outcome") == "running")

    def listed(self) -> list[Any]:
        return [self.file, *self.stamp, self.sure, *self.order, self.host, list(self.heads), self.running]


def scan(runs: Path, old: Index | None, summarise: Summarise) -> Index:
    """List runs: keep the rows whose file is unchanged since old read it (and was sure then), read the rest."""
    before, now = _folder_stamp(runs), time.time_ns()
    known, others_known = _known(old)
    entries: list[Entry] = []
    others: dict[str, list[Any]] = {}
    racy = now - before[0] < RACY_NS
    with os.scandir(runs) as listing:
        for item in listing:
            if not item.name.endswith(".json"):
                continue
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since it was listed
            sure = now - info.st_mtime_ns >= RACY_NS
            racy |= not sure
            stamp = _stamp(info)
            kept = known.get(item.name)
            if kept is not None and kept.stamp == stamp and kept.sure:
                entries.append(kept)
            elif others_known.get(item.name) == [*stamp, True]:
                others[item.name] = [*stamp, True]
            else:
                row = _summary(runs / item.name, summarise)
                if row is None:
                    others[item.name] = [*stamp, sure]
                else:
                    entries.append(Entry.of(item.name, stamp, sure, row))
    racy |= _folder_stamp(runs) != before  # changed while it was listed: what was missed is caught next time
    return build(entries, before, racy=racy, others=others)


def build(entries: list[Entry], folder: list[int], *, racy: bool, others: dict[str, list[Any]]) -> Index:
    """The index of these rows (any order), with its heads and catalog, in memory."""
    entries.sort(key=lambda e: (e.order, e.file), reverse=True)
    heads: dict[str, list[int]] = {}
    at = 0
    for entry in entries:
        for key in entry.heads:
            heads.setdefault(key, [at, len(entry.line)])
        at += len(entry.line)
    data = b"".join(e.line for e in entries) + _line([e.listed() for e in entries])
    hosts = collections.Counter(e.host for e in entries if e.host is not None)
    header = {"format": FORMAT, "folder": folder, "racy": racy, "rows": len(entries), "bytes": at,
              "catalog": len(data) - at, "others": others, "heads": heads, "hosts": hosts,
              "open": {e.file: list(e.stamp) for e in entries if e.running}}
    return Index(header, lambda offset, size: data[offset:offset + size], lambda: None)


def write(path: Path, index: Index) -> None:
    """Replace the index at path, whole and fsynced; a failure to write (a full disk) only costs the next reader a
    scan. Temporary files killed writers left behind are removed first."""
    data = _line(index.header) + index._read_at(0, int(index.header["bytes"]) + int(index.header["catalog"]))
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


def _known(old: Index | None) -> tuple[dict[str, Entry], dict[str, list[Any]]]:
    """What old knew: each journal's entry (its line kept as it is), and the names that are not journals."""
    if old is None:
        return {}, {}
    rows, known, at = old.rows_bytes(), {}, 0
    for file, mtime, size, inode, sure, started, run_id, host, heads, running in old.catalog():
        end = rows.index(b"\n", at) + 1
        known[file] = Entry(file, (mtime, size, inode), sure, (started, run_id), host, tuple(heads), rows[at:end],
                            running)
        at = end
    return known, dict(old.header["others"])


def _summary(path: Path, summarise: Summarise) -> Row | None:
    """The row of the journal at path, or None: not ours (another user's, a link), not JSON, not a journal."""
    try:
        record = runrecord.read(path)
    except (OSError, ValueError, RecursionError, InputError):
        return None
    return summarise(record)


def _folder_stamp(runs: Path) -> list[int]:
    info = os.stat(runs)
    return [info.st_mtime_ns, info.st_ino]
