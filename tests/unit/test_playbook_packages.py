"""Runbooks as packages (issue #26): a playbook an installed package declares under the entry-point group
remediate.playbooks is listed with its package, found by -p, fix: and diagnose, may not take a name another package
or remediate gives, and is named when broken; a folder of $REMEDIATE_PLAYBOOK_PATH still comes first."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import remediate
from remediate import api as session
from remediate.cli import main as cli
from remediate.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, InputError
from remediate.inputs import packaged, playbook, search_path
from remediate.serve import rules as rules_mod

from .fakes import FakeTransport
from .test_check_plugins import fresh_checks
from .test_plugins import PLUGIN, FakeDist, FakeEntry, example_kind  # noqa: F401 - example_kind: a fixture used here

PATH_ENV = "REMEDIATE_PLAYBOOK_PATH"
#: Where the example package keeps its playbook (its pyproject.toml: example-hello = "remediate_example_kind").
HELLO = PLUGIN / "remediate_example_kind" / "example-hello.yml"
SHIPPED = f"shipped (remediate {remediate.__version__})"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli.cli, list(args))
    return result.exit_code, result.output


def listed(out: str) -> dict[str, dict]:
    return {e["playbook"]: e for e in map(json.loads, out.splitlines()) if e.get("event") == "playbook"}


@pytest.fixture
def example(example_kind: dict[str, str], tmp_path: Path,  # noqa: F811 - the imported fixture
            monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTransport]:
    """The example package installed (its kind, check type and playbook; the kinds and check types loaded afresh);
    the working folder holds an inventory of h1, whose /etc/greeting says hi."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PATH_ENV, raising=False)
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 192.0.2.1\n")
    fake = FakeTransport(name="h1")
    fake.put("/etc/greeting", "hi\n")
    monkeypatch.setattr(session, "ssh_factory", lambda opts, emit, pw: (lambda host: fake))
    with fresh_checks():
        yield fake


@pytest.fixture
def declares(example: FakeTransport, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Have more installed packages declare playbooks, next to the real entry points (importlib.metadata's seam)."""
    real = list(packaged.entry_points(group=packaged.ENTRY_POINTS))

    def install(*fakes: tuple[str, str, str]) -> None:
        entries = [FakeEntry(name, value, FakeDist({"Name": dist, "Version": "1.0"}), None)
                   for name, value, dist in fakes]
        monkeypatch.setattr(packaged, "entry_points", lambda group: [*real, *entries])

    return install


def test_without_the_package_its_playbook_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PATH_ENV, raising=False)
    with pytest.raises(InputError, match="example-hello: no such playbook file"):
        playbook.locate("example-hello")


def test_remediate_playbooks_names_the_package_each_comes_from(example: FakeTransport) -> None:
    code, out = invoke("playbooks", "--json")
    books = listed(out)
    assert code == EXIT_OK, out
    hello = books["example-hello"]
    assert hello["source"] == "package remediate-example-kind 0.1.0" and hello["path"] == str(HELLO), hello
    assert hello["shipped"] is False and hello["steps"] == ["greet", "greeted"]
    assert books["toy"]["source"] == SHIPPED and books["toy"]["shipped"] is True
    code, out = invoke("playbooks")
    assert code == EXIT_OK and "source: package remediate-example-kind 0.1.0" in out and f"file: {HELLO}" in out, out
    assert f"source: {SHIPPED}" in out


def test_p_name_plans_and_applies_the_package_playbook_with_its_kind(example: FakeTransport) -> None:
    assert playbook.locate("example-hello") == HELLO
    assert playbook.argument(HELLO) == "example-hello"  # how diagnose's next: names it
    code, out = invoke("plan", "--host", "h1", "-i", "inventory.yml", "-p", "example-hello", "--out", "hello.plan")
    assert code == EXIT_CHANGES, out
    assert "+hello, operator" in out and "example-hello" in out, out
    saved = json.loads(Path("hello.plan").read_text())["playbook"]
    assert saved["path"] == str(HELLO.resolve()) and saved["text"] == HELLO.read_text()  # the file in the package
    code, out = invoke("apply", "hello.plan")
    assert code == EXIT_OK and example.files["/etc/greeting"].content == b"hello, operator\n", out
    [run] = [json.loads(line) for line in invoke("runs", "--json")[1].splitlines()]
    journal = json.loads(invoke("runs", "show", run["run_id"], "--json")[1])
    assert journal["playbook"] == "example-hello" and journal["playbook_path"] == str(HELLO.resolve()), journal
    code, out = invoke("validate", "-p", "example-hello")
    assert code == EXIT_OK and "fixed by example-hello" in out, out


def test_diagnose_uses_the_package_playbooks_checks_and_proposes_it_by_name(example: FakeTransport) -> None:
    assert "example-hello" in [b.name for b in session.diagnosed_playbooks(None)]
    code, out = invoke("diagnose", "--host", "h1", "-i", "inventory.yml", "-p", "example-hello")
    assert code == EXIT_FINDINGS, out
    assert re.search(r"next: remediate plan .*-p example-hello", out), out


def test_fix_and_serve_rules_name_a_package_playbook(example: FakeTransport, tmp_path: Path) -> None:
    fixer = tmp_path / "checks.yml"
    fixer.write_text("name: checks\nsteps: []\ndiagnose:\n  - id: greeted\n    check: example-greets\n"
                     "    fix: example-hello\n    params: {path: /etc/greeting, name: operator}\n")
    assert playbook.resolve_fix("example-hello", fixer, "checks.yml:5") == HELLO
    rules = tmp_path / "rules.yml"
    rules.write_text("rules:\n  - name: greet\n    match: {alertname: NoGreeting}\n    playbook: example-hello\n")
    assert rules_mod.load(rules).rules[0].playbook == str(HELLO)


def test_a_name_a_shipped_playbook_has_is_refused_with_both_packages_named(declares: Callable[..., None]) -> None:
    declares(("toy", "remediate_example_kind", "acme-runbooks"))
    both = r"playbook 'toy' is given by two packages, remediate \S+ \(shipped\) and acme-runbooks 1.0; refusing"
    with pytest.raises(InputError, match=both):
        playbook.locate("toy")
    code, out = invoke("playbooks", "--json")
    books = listed(out)
    assert code == EXIT_ERROR and "toy" not in books, out  # neither: -p toy would not say which it runs
    assert {"example-hello", "smtp-to-lmtp", "relay-access"} <= set(books)
    assert re.search(both, out), out
    code, out = invoke("plan", "--host", "h1", "-i", "inventory.yml", "-p", "toy")
    assert code == EXIT_ERROR and re.search(both, out), out


def test_two_packages_giving_one_name_are_both_named(declares: Callable[..., None], tmp_path: Path) -> None:
    declares(("example-hello", "remediate_example_kind", "other-runbooks"))
    both = ("playbook 'example-hello' is given by two packages, remediate-example-kind 0.1.0 and other-runbooks "
            "1.0; refusing to choose one")
    with pytest.raises(InputError, match=re.escape(both)):
        playbook.locate("example-hello")
    with pytest.raises(InputError, match=r"checks.yml:5: fix: 'example-hello': " + re.escape(both)):
        playbook.resolve_fix("example-hello", tmp_path / "checks.yml", "checks.yml:5")


@pytest.mark.parametrize(("value", "why"), [
    ("acme_gone.playbooks", r"\(acme_gone.playbooks, from acme-runbooks 1.0\) cannot be loaded: "
                            r"ModuleNotFoundError: No module named 'acme_gone'"),
    ("remediate_example_kind", r"\(remediate_example_kind, from acme-runbooks 1.0\): \S+remediate_example_kind "
                               r"holds no disk-full.yml"),
    ("remediate_example_kind:Greeting", r"\(remediate_example_kind:Greeting, from acme-runbooks 1.0\): the value "
                                        r"must be the import name of a package whose folder holds disk-full.yml"),
    ("json.decoder", r"\(json.decoder, from acme-runbooks 1.0\): json.decoder is a module, not a package"),
])
def test_a_broken_declaration_is_named_and_the_others_still_list(declares: Callable[..., None], value: str,
                                                                 why: str) -> None:
    declares(("disk-full", value, "acme-runbooks"))
    with pytest.raises(InputError, match=r"playbook 'disk-full' " + why) as raised:
        playbook.locate("disk-full")
    assert "acme-runbooks" in str(raised.value.hint)
    code, out = invoke("playbooks", "--json")
    books = listed(out)
    assert code == EXIT_ERROR and {"example-hello", "toy"} <= set(books) and "disk-full" not in books, out
    assert re.search(r"playbook 'disk-full' " + why, out), out
    assert "Traceback" not in out


def test_a_folder_of_yours_hides_a_package_playbook_and_says_so(example: FakeTransport, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "runbooks"
    mine.mkdir()
    (mine / "example-hello.yml").write_text(HELLO.read_text().replace("hello, ", "hi, "))
    monkeypatch.setenv(PATH_ENV, str(mine))
    assert playbook.locate("example-hello") == mine / "example-hello.yml"
    assert playbook.shadowed(mine / "example-hello.yml") == HELLO
    code, out = invoke("playbooks", "--json")
    hello = listed(out)["example-hello"]
    assert code == EXIT_OK and hello["source"] == str(mine) and hello["shadows"] == [str(HELLO)], out
    code, out = invoke("plan", "--host", "h1", "-i", "inventory.yml", "-p", "example-hello")
    assert code == EXIT_CHANGES and f"using {mine / 'example-hello.yml'}" in out and str(HELLO) in out, out


def test_a_folder_of_yours_settles_a_clash(declares: Callable[..., None], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    declares(("toy", "remediate_example_kind", "acme-runbooks"))
    mine = tmp_path / "runbooks"
    mine.mkdir()
    (mine / "toy.yml").write_text(HELLO.read_text())
    monkeypatch.setenv(PATH_ENV, str(mine))
    assert playbook.locate("toy") == mine / "toy.yml"
    assert search_path.refused() == []
    code, out = invoke("playbooks", "--json")
    assert code == EXIT_OK and listed(out)["toy"]["shadows"] == [str(playbook.shipped_folder() / "toy.yml")], out


def test_the_library_call_gives_the_sources_and_the_refused_and_diagnose_names_them(
        declares: Callable[..., None]) -> None:
    """remediate.api.playbooks(), as a script calls it, carries what the CLI shows: each source, and the package
    playbooks that cannot be used; diagnose over every playbook refuses rather than silently leave one out."""
    declares(("disk-full", "json.decoder", "acme-runbooks"))
    books, problems = session.playbooks()
    sources = {book.playbook: book.source for book in books}
    assert sources["example-hello"] == "package remediate-example-kind 0.1.0" and sources["toy"] == SHIPPED, sources
    assert any("playbook 'disk-full'" in p and "acme-runbooks" in p for p in problems), problems
    with pytest.raises(InputError, match=r"playbook 'disk-full' \(json.decoder, from acme-runbooks 1.0\)"):
        session.diagnosis.diagnosed_playbooks(None)
