"""The journal copy that rides with a mutation: written first, exactly, privately, or the mutation never runs.
Runs the real shell script with the local transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from remediate.errors import JournalWriteError
from remediate.transport.local import LocalTransport

JOURNAL = b'{"run_id": "r", "steps": []}\n' * 300  # larger than a pipe's first read


def test_the_journal_goes_first_and_the_command_gets_the_rest_of_stdin(tmp_path: Path) -> None:
    t = LocalTransport(name="local")
    journal, out = tmp_path / "journal.json", tmp_path / "out"
    t.pending_journal = lambda: (str(journal), JOURNAL)
    result = t.run(["sh", "-c", 'test -s "$1" && cat > "$2"', "sh", str(journal), str(out)], stdin=b"the file\n")
    assert result.ok, result
    assert journal.read_bytes() == JOURNAL and journal.stat().st_mode & 0o777 == 0o600
    assert out.read_bytes() == b"the file\n"
    assert t.pending_journal is None and result.command.startswith(f"write {journal} (sha256 ")


def test_no_journal_no_mutation(tmp_path: Path) -> None:
    t = LocalTransport(name="local")
    out = tmp_path / "out"
    t.pending_journal = lambda: (str(tmp_path / "missing" / "journal.json"), JOURNAL)
    with pytest.raises(JournalWriteError, match="the run's journal could not be written, so .* did not run"):
        t.run(["touch", str(out)])
    assert not out.exists()


def test_a_command_under_other_privileges_still_finds_the_journal_written_first() -> None:
    from .fakes import FakeTransport

    t = FakeTransport(name="gw", become=True)
    t.expect(["id"])
    t.pending_journal = lambda: ("/var/lib/remediate/r/journal.json", JOURNAL)
    t.run(["id"], sudo=False)  # not the journal's own privileges: the copy is written on its own, before
    assert t.writes == ["/var/lib/remediate/r/journal.json"] and t.ran == ["id"]
    assert t.files["/var/lib/remediate/r/journal.json"].content == JOURNAL and t.pending_journal is None
