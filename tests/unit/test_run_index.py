"""The run index (engine/runindex.py) gives the answers every journal gives, with 10,000 of them, and survives being
truncated, deleted, made stale behind its back, planted as a link and killed mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from remediate import api, private
from remediate.cli import main as cli
from remediate.engine import history as reference
from remediate.engine import journal, runindex
from remediate.errors import InputError

from .history_seed import PLAYBOOKS, seed

HOSTS = 20


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(private, "_trusted", set())


def state() -> Path:
    return Path(os.environ["XDG_STATE_HOME"])


def index_path() -> Path:
    return state() / "remediate" / runindex.NAME


@pytest.fixture
def every(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """history() read once (every journal), served to the reference code (engine/history.py) from memory."""
    records = journal.history()
    with monkeypatch.context() as m:
        m.setattr(journal, "history", lambda host=None: [r for r in records if host in (None, r.get("host"))])
        yield records


def old_summaries(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`runs` as it was computed before the index: from every journal."""
    return [{"run_id": r["run_id"], "started": r.get("started"), "operator": r.get("operator"), "host": r.get("host"),
             "playbook": r.get("playbook"),
             "steps": f"{sum(s.get('state') in ('verified', 'rolled-back') for s in r['steps'])}/{len(r['steps'])}",
             "outcome": journal.live_outcome(r), "for": r.get("for")} for r in records]


def old_find(records: list[dict[str, Any]], host: str) -> tuple[str, str | None]:
    """journal.find(host, None) as it was: ("run", id), ("refused", id of the run it names) or ("none", None)."""
    for r in records:
        if r.get("host") != host or r.get("outcome") in journal.NOTHING_CHANGED:
            continue
        return ("run" if r.get("outcome") in journal.ROLLBACKABLE else "refused", str(r["run_id"]))
    return ("none", None)


def new_find(host: str) -> tuple[str, str | None]:
    try:
        return ("run", journal.find(host, None).run_id)
    except InputError as e:
        if "no run that can be rolled back" in str(e):
            return ("none", None)
        return ("refused", str(e).split("something, ")[1].split(",")[0])


def test_ten_thousand_journals_answer_as_every_journal_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(state(), 10_000, hosts=HOSTS)
    fast = {"summaries": journal.summaries(), "applied": {p: api.last_applied(p) for p in (None, *PLAYBOOKS)},
            "fixed_by": {p: api.fixed_by(p) for p in PLAYBOOKS},
            "rolled_back": {f"h{n}": api.already_rolled_back(f"h{n}") for n in range(HOSTS)},
            "find": {f"h{n}": new_find(f"h{n}") for n in range(HOSTS)},
            "some": {p: api.last_applied(p, ["h1", "h12", "nowhere"]) for p in (None, *PLAYBOOKS)},
            "counts": {f"h{n}": journal.count(f"h{n}") for n in range(HOSTS)}}
    assert index_path().stat().st_mode & 0o777 == 0o600
    records = journal.history()
    monkeypatch.setattr(journal, "history", lambda host=None: [r for r in records if host in (None, r.get("host"))])
    assert len(records) == 10_000 and fast["summaries"] == old_summaries(records)
    for playbook, found in fast["applied"].items():
        assert {h: r["run_id"] for h, r in found.items()} == {
            h: r["run_id"] for h, r in reference.last_applied(playbook).items()}, playbook
        assert found and all(r["outcome"] == "applied" for r in found.values())
    assert fast["fixed_by"] == {p: reference.fixed_by(p) for p in PLAYBOOKS}
    assert {h: r and r["run_id"] for h, r in fast["rolled_back"].items()} == {
        h: (lambda r: r and r["run_id"])(reference.already_rolled_back(h)) for h in fast["rolled_back"]}
    assert any(fast["rolled_back"].values()) and not all(fast["rolled_back"].values())
    assert fast["find"] == {h: old_find(records, h) for h in fast["find"]}
    for playbook, found in fast["some"].items():
        assert {h: r["run_id"] for h, r in found.items()} == {
            h: r["run_id"] for h, r in reference.last_applied(playbook).items() if h in ("h1", "h12")}, playbook
    assert fast["counts"] == {h: sum(r["host"] == h for r in records) for h in fast["counts"]}


def test_runs_shows_the_newest_fifty_and_all_on_demand(tmp_path: Path) -> None:
    written = seed(state(), 10_000, hosts=HOSTS)
    newest = sorted(written, key=lambda r: r["started"], reverse=True)
    result = CliRunner().invoke(cli.cli, ["runs"])
    lines = result.stdout.splitlines()
    assert result.exit_code == 0 and len(lines) == 51 and lines[0].split("\t")[:2] == ["run_id", "started"]
    assert [line.split("\t")[0] for line in lines[1:]] == [r["run_id"] for r in newest[:50]]
    assert "the newest 50 of 10000 runs; --limit N or --all shows more" in result.stderr
    assert "incident " in result.stdout and "approved by alice (token)" in result.stdout
    every = [json.loads(line) for line in CliRunner().invoke(cli.cli, ["runs", "--all", "--json"]).stdout.splitlines()]
    assert [r["run_id"] for r in every] == [r["run_id"] for r in newest]
    some = [json.loads(line) for line in
            CliRunner().invoke(cli.cli, ["runs", "--host", "h3", "--limit", "7", "--json"]).stdout.splitlines()]
    assert [r["run_id"] for r in some] == [r["run_id"] for r in newest if r["host"] == "h3"][:7]
    named = newest[1234]["run_id"]
    assert journal.named(None, named[:18]).run_id == named


def build_index(count: int = 300) -> list[dict[str, Any]]:
    written = seed(state(), count, hosts=5)
    journal.index()
    return written


def age(seconds: float) -> None:
    """Make the runs folder look untouched for `seconds` (its mtime back), and the index current again."""
    runs = journal.runs_dir()
    then = datetime.now(UTC).timestamp() - seconds
    os.utime(runs, (then, then))
    journal.index()


def hosts_seen() -> set[str]:
    return {str(r["host"]) for r in journal.summaries()}


def whole_and_right(path: Path, count: int) -> None:
    """The index at path reads whole (every row's crc32 matches) and holds count rows."""
    found = runindex.read(path)
    assert found is not None
    try:
        assert len(list(found.rows())) == count == len(found)
    finally:
        found.close()


def test_a_truncated_or_damaged_or_deleted_or_linked_index_is_rebuilt(tmp_path: Path) -> None:
    written = build_index()
    age(60)
    path = index_path()
    whole = path.read_bytes()
    whole_and_right(path, len(written))
    hosts = {f"h{n}" for n in range(5)}
    for torn in (whole[: len(whole) // 2], whole[:-10], whole[:100], b""):
        path.write_bytes(torn)
        assert runindex.read(path) is None
        assert len(journal.summaries()) == len(written) and hosts_seen() == hosts
        whole_and_right(path, len(written))
    flipped = whole.replace(b'"host": "h1"', b'"host": "h7"')  # the size kept: each such row fails its crc32
    assert flipped != whole and len(flipped) == len(whole)
    path.write_bytes(flipped)
    assert hosts_seen() == hosts and journal.count("h1") == sum(r["host"] == "h1" for r in written)
    whole_and_right(path, len(written))
    path.unlink()
    assert len(journal.summaries()) == len(written) and path.exists()
    target = tmp_path / "elsewhere"
    target.write_bytes(whole)
    path.unlink()
    path.symlink_to(target)
    assert len(journal.summaries()) == len(written)
    assert not path.is_symlink() and path.stat().st_mode & 0o777 == 0o600 and target.read_bytes() == whole


def new_run(host: str, outcome: str, when: datetime, playbook: str = "toy") -> str:
    """A journal written behind the index's back, as the engine writes one (private.write_bytes)."""
    from .history_seed import journal as record_of
    run_id = when.strftime("%Y%m%dT%H%M%SZ") + "-abcdef"
    private.write_bytes(journal.runs_dir() / f"{run_id}.{host}.json",
                        json.dumps(record_of(run_id, host, playbook, outcome, when)).encode())
    return run_id


def test_a_journal_written_behind_its_back_is_seen(tmp_path: Path) -> None:
    build_index()
    age(60)
    run_id = new_run("h2", "applied", datetime.now(UTC))
    assert api.last_applied("toy")["h2"]["run_id"] == run_id and journal.find("h2", None).run_id == run_id
    assert journal.summaries(limit=1)[0]["run_id"] == run_id
    rolled = journal.Journal.load(journal.runs_dir() / f"{run_id}.h2.json")  # a rollback rewrites it in place
    rolled.record["outcome"] = "rolled-back"
    for step in rolled.record["steps"]:
        step["state"] = "rolled-back"
    rolled.save(remote=False)
    assert api.already_rolled_back("h2")["run_id"] == run_id  # type: ignore[index]
    assert "toy" not in {r.get("playbook") for r in api.last_applied("toy").values() if r["run_id"] == run_id}


def test_a_change_within_the_folders_clock_tick_is_still_seen(tmp_path: Path) -> None:
    """A write that leaves the runs folder's mtime as the index recorded it (a coarse clock): the index was racy
    when built (its folder that fresh), so the next reader lists the folder again and sees it."""
    build_index()
    stamp = os.stat(journal.runs_dir())
    found = runindex.read(index_path())
    assert found is not None
    header = found.header
    found.close()
    assert header["racy"] and header["folder"] == [stamp.st_mtime_ns, stamp.st_ino]
    run_id = new_run("h4", "applied", datetime.now(UTC) + timedelta(minutes=1))
    os.utime(journal.runs_dir(), ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # the same tick: the stamp unchanged
    assert journal.summaries(limit=1)[0]["run_id"] == run_id


def test_a_stale_index_with_a_valid_checksum_is_not_trusted(tmp_path: Path) -> None:
    """An index whose rows are whole but older than the journals (another process's, written before a run): its
    folder stamp no longer matches, and the journals win."""
    build_index()
    age(60)
    old = index_path().read_bytes()
    run_id = new_run("h1", "applied", datetime.now(UTC))
    journal.index()
    index_path().write_bytes(old)  # the older writer's rename lands last
    assert journal.find("h1", None).run_id == run_id and api.fixed_by(None)["h1"].startswith(run_id)


WRITER = """
import sys
from pathlib import Path
from remediate.engine import journal, runindex
runs, path = journal.runs_dir(), journal.state_home() / runindex.NAME
n = 0
while True:
    runindex.write(path, runindex.scan(runs, None, journal.summary))
    n += 1
    if n == 3:
        print("written", flush=True)
"""


def test_a_writer_killed_mid_write_leaves_an_index_that_answers_right(tmp_path: Path) -> None:
    written = build_index(2000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for _ in range(3):
        writer = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE, env=env)
        assert writer.stdout is not None and writer.stdout.readline() == b"written\n"
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert len(journal.summaries()) == len(written)
    whole_and_right(index_path(), len(written))
    torn = index_path().read_bytes()
    index_path().write_bytes(torn[: len(torn) * 2 // 3])  # what a power loss after a rename without fsync could leave
    assert [r["run_id"] for r in journal.summaries()] == [
        r["run_id"] for r in sorted(written, key=lambda r: r["started"], reverse=True)]


def test_a_cli_run_has_no_attribution_and_a_served_one_has_it(tmp_path: Path,
                                                              setup: tuple[Path, Path, Any]) -> None:
    inv, book, _ = setup
    opts = api.Options(inventory=inv, playbook=str(book), hosts=("h1",))
    factory = api.ssh_factory(opts, lambda e: None, None)  # type: ignore[arg-type]
    [cli_run] = api.apply(opts, lambda e: None, factory, lambda bound: True)
    assert "for" not in journal.named("h1", str(cli_run.run_id)).record
    served = {"incident": 7, "approvers": [{"by": "alice", "via": "token", "at": "2026-12-06T05:00:00+00:00"},
                                           {"by": "bob", "via": "slack", "at": "2026-12-06T05:01:00+00:00"}],
              "requested_by": "carol", "url": "https://serve.example/incidents/7"}
    undone = api.rollback(opts, None, lambda e: None, factory, lambda record: True, attribution=served)
    assert journal.named("h1", str(cli_run.run_id)).record["rollback_for"] == served and undone[0].exit_code == 0
    [run] = api.apply(opts, lambda e: None, factory, lambda bound: True, attribution=served)
    assert journal.named("h1", str(run.run_id)).record["for"] == served
    shown = CliRunner().invoke(cli.cli, ["runs"]).stdout.splitlines()
    rows = {line.split("\t")[0]: line.split("\t")[-1] for line in shown[1:]}
    assert shown[0].split("\t")[-1] == "for" and rows == {
        run.run_id: "incident 7, approved by alice (token), bob (slack)", cli_run.run_id: ""}
    shown_run = CliRunner().invoke(cli.cli, ["runs", "show", str(run.run_id)])
    assert shown_run.exit_code == 0, shown_run.output
    assert ("for: incident 7, approved by alice (token, 2026-12-06T05:00:00+00:00), bob (slack, "
            "2026-12-06T05:01:00+00:00), requested by carol, https://serve.example/incidents/7") in shown_run.output
    rolled = CliRunner().invoke(cli.cli, ["runs", "show", str(cli_run.run_id)]).output
    assert "rolled back for: incident 7" in rolled and "\nfor:" not in rolled
    as_json = {r["run_id"]: r for r in (json.loads(line) for line in
                                        CliRunner().invoke(cli.cli, ["runs", "--json"]).stdout.splitlines())}
    assert as_json[str(run.run_id)]["for"] == served and as_json[str(cli_run.run_id)]["for"] is None


def test_plan_apply_and_rollback_among_ten_thousand_runs(setup: tuple[Path, Path, Any]) -> None:
    """The library's own questions, end to end on a fake host, with 10,000 older runs of h1 and others recorded:
    a no-op plan names the run that fixed h1, rollback finds that run, and a second rollback has nothing to do."""
    inv, book, fake = setup
    seed(state(), 10_000, hosts=HOSTS)
    opts = api.Options(inventory=inv, playbook=str(book), hosts=("h1",))
    factory = api.ssh_factory(opts, lambda e: None, None)  # type: ignore[arg-type]
    [fixed] = api.apply(opts, lambda e: None, factory, lambda bound: True)
    assert fixed.exit_code == 0 and fake.files["/etc/app.conf"].content == b"new\n"
    planned = api.plan(opts, lambda e: None, factory).hosts["h1"].outcome
    assert planned is not None and planned.message == (
        f"nothing to do: already fixed by run {fixed.run_id} "
        f"({journal.named('h1', str(fixed.run_id)).record['started']})")
    [undone] = api.rollback(opts, None, lambda e: None, factory, lambda record: record.run_id == fixed.run_id)
    assert undone.exit_code == 0 and fake.files["/etc/app.conf"].content == b"old\n"
    [again] = api.rollback(opts, None, lambda e: None, factory, lambda record: False)
    assert again.exit_code == 0 and again.message.startswith(
        f"nothing to roll back: the last run that changed something, {fixed.run_id}, is already rolled back")


def test_records_of_a_run_or_since_a_time_read_only_those_journals_and_agree_with_every_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What serve's recovery and the Temporal takeover ask (this run's journal; the host's runs since a run began)
    read the journals the index names, not every one (they read all 10,000 before), and say what history() says."""
    written = build_index(300)
    everything = journal.history()
    target = written[150]
    host, run_id = str(target["host"]), str(target["run_id"])
    since = str(written[280]["started"])
    loaded: list[Path] = []
    real = private.read_bytes
    monkeypatch.setattr(private, "read_bytes", lambda path, *a, **k: (loaded.append(Path(path)), real(path, *a, **k))[1])
    found = journal.records(host, run_id=run_id)
    assert [r["run_id"] for r in found] == [run_id] and found[0] == next(r for r in everything if r["run_id"] == run_id)
    later = journal.records(host, since=since)
    expected = [r for r in everything if r.get("host") == host and str(r.get("started")) >= since]
    assert [r["run_id"] for r in later] == [r["run_id"] for r in expected] and expected
    journals = [p for p in loaded if p.parent == journal.runs_dir()]
    assert len(journals) == 1 + len(expected), journals  # not 300
    assert journal.records(host, run_id="20990101T000000Z-ffffff") == []
    # a journal rewritten in place behind the index's back: its new words, not the index's
    rolled = journal.named(host, run_id)
    rolled.record["outcome"] = "rolled-back"
    rolled.save(remote=False)
    assert journal.records(host, run_id=run_id)[0]["outcome"] == "rolled-back"
