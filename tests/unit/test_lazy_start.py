"""What `remediate apply` and `plan` do not load at start-up (issue #28): serve and logging, importlib.metadata for
plug-in discovery, the queue probe, difflib, rich's emoji table. Each check runs a fresh interpreter and reads its
sys.modules (never a time). The plug-in rules still hold when the entry points are read without importlib.metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from remediate import kinds
from remediate.contract import entrypoints
from remediate.errors import InputError
from remediate.inputs import playbook

ROOT = Path(__file__).resolve().parents[2]

START = """
import json, sys
from remediate.deferred import Deferred
import remediate.cli.entry, remediate.cli.main
print("MODULES " + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))
"""

PLAYBOOKS = """
import json, sys
from remediate.deferred import Deferred
from remediate.inputs import playbook
for name in sys.argv[1:]:
    playbook.load(playbook.locate(name))
print("MODULES " + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))
"""

RENDER = """
import json, sys
from remediate.deferred import Deferred
from remediate.cli.render import HumanRenderer
render = HumanRenderer()
render.out.print("a reason with :warning: in it")
print("MODULES " + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))
"""


def loaded(code: str, *args: str) -> tuple[set[str], str]:
    env = {**os.environ, "CI": "true", "COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)
    last = done.stdout.rstrip().rpartition("\n")[2]
    assert last.startswith("MODULES "), done.stdout[-500:] + done.stderr[-2000:]
    return set(json.loads(last.removeprefix("MODULES "))), done.stdout


def under(modules: set[str], *names: str) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_the_command_line_starts_without_serve_rollouts_logging_or_importlib_metadata() -> None:
    modules, _ = loaded(START)
    assert "remediate.cli.run_commands" in modules  # apply and plan are registered
    assert under(modules, "remediate.serve", "remediate.cli.rollouts", "remediate.cli.inspect_commands", "logging",
                 "importlib.metadata", "email", "zipfile", "concurrent.futures", "difflib") == []


def test_reading_the_bench_and_lab_playbooks_loads_their_kinds_and_checks_without_importlib_metadata() -> None:
    modules, _ = loaded(PLAYBOOKS, str(ROOT / "bench" / "fleet" / "remediate.yml"), "smtp-to-lmtp")
    assert {"remediate.kinds.compose_env", "remediate.kinds.compose_restart", "remediate.diagnostics.postfix",
            "remediate.diagnostics.logs"} <= modules  # the kinds and check types the two playbooks name
    assert under(modules, "remediate.kinds.queue_flush", "remediate.kinds.tls_reload", "remediate.diagnostics.queue",
                 "remediate.diagnostics.tls") == []  # and only those
    assert under(modules, "importlib.metadata", "email", "zipfile", "logging", "remediate.probes.queue", "difflib",
                 "concurrent.futures", "remediate.serve") == []


def test_a_playbook_without_checks_loads_no_check_type_nor_their_package_and_compiles_no_log_signature() -> None:
    modules, _ = loaded(PLAYBOOKS, str(ROOT / "bench" / "fleet" / "remediate.yml"))
    assert "remediate.kinds.compose_env" in modules  # the playbook was read
    assert under(modules, "remediate.diagnostics") == []  # diagnose: checks and assert steps alone need them


def test_load_kinds_and_load_checks_still_load_them_all_and_a_playbook_sees_every_name() -> None:
    code = ("import json, sys\nfrom remediate.deferred import Deferred\nfrom remediate import kinds, diagnostics\n"
            "from remediate.inputs import playbook\n"
            "playbook.load(playbook.locate('toy'))\nnames = sorted(kinds.REGISTRY)\n"
            "lazy = 'remediate.kinds.queue_flush' not in sys.modules\n"
            "kinds.load_kinds()\ndiagnostics.load_checks()\n"
            "print(json.dumps([names, lazy, sorted(kinds.REGISTRY.later), sorted(diagnostics.REGISTRY.later)]))\n"
            "print('MODULES ' + json.dumps(sorted(n for n, m in sys.modules.items()\n"
            "                                   if not isinstance(m, Deferred))))\n")
    modules, out = loaded(code)
    names, lazy, kinds_left, checks_left = json.loads(out.splitlines()[-2])
    assert lazy and "queue-flush" in names and "file" in names  # named before imported
    assert kinds_left == [] == checks_left
    assert {"remediate.kinds.queue_flush", "remediate.kinds.tls_reload", "remediate.diagnostics.queue"} <= modules


def test_the_human_renderer_does_not_load_richs_emoji_table_and_prints_a_code_as_written() -> None:
    modules, out = loaded(RENDER)
    assert "a reason with :warning: in it" in out
    assert "rich._emoji_codes" not in modules


def test_the_lazily_registered_commands_are_the_ones_their_modules_register() -> None:
    code = ("import json\nfrom remediate.cli.main import cli\nimport click\nctx = click.Context(cli)\n"
            "listed = cli.list_commands(ctx)\nwaiting = sorted(cli.lazy)\n"
            "found = [cli.get_command(ctx, n) for n in listed]\n"
            "print(json.dumps([listed, waiting, sorted(cli.commands), [c is not None for c in found],\n"
            "                  sorted(cli.lazy)]))\n"
            "print('MODULES []')\n")
    _, out = loaded(code)
    listed, waiting, registered, found, left = json.loads(out.splitlines()[-2])
    assert set(waiting) == {"serve", "incidents", "approve", "deny", "pause", "resume", "rollouts", "runs", "validate",
                            "inventory", "playbooks", "kinds", "checks"}
    assert listed == registered and all(found) and left == []  # each module registered exactly the names it stood for


@pytest.mark.parametrize("group", ["remediate.kinds", "remediate.checks", "remediate.playbooks"])
def test_the_entry_points_read_without_importlib_metadata_are_its_own(group: str) -> None:
    mine, theirs = list(entrypoints.entry_points(group)), list(metadata.entry_points(group=group))
    assert [(e.name, e.value, e.dist.metadata["Name"], e.dist.metadata["Version"]) for e in mine] == \
        [(e.name, e.value, e.dist.metadata["Name"], e.dist.metadata["Version"]) for e in theirs]
    assert all(e.load() is t.load() for e, t in zip(mine, theirs))


@pytest.fixture
def shadowing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed package (its metadata in a site folder on sys.path) that declares its own `file` step kind."""
    info = tmp_path / "site" / "evil_kinds-6.6.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-kinds\nVersion: 6.6\n")
    (info / "entry_points.txt").write_text("[remediate.kinds]\nfile = remediate.kinds.file:FileContent\n")
    monkeypatch.syspath_prepend(str(info.parent))
    saved = dict(kinds.REGISTRY), dict(kinds.ORIGIN), dict(kinds.BROKEN)
    for table in (kinds.REGISTRY, kinds.ORIGIN, kinds.BROKEN):
        table.clear()
    try:
        yield info
    finally:
        for table, before in zip((kinds.REGISTRY, kinds.ORIGIN, kinds.BROKEN), saved):
            table.clear()
            table.update(before)  # type: ignore[attr-defined]


def test_an_installed_package_shadowing_a_shipped_kind_is_still_refused(shadowing_package: Path) -> None:
    assert [e.name for e in entrypoints.entry_points("remediate.kinds")].count("file") == 2  # importlib.metadata's
    with pytest.raises(InputError, match=r"step kind 'file' is given by two installed packages, evil-kinds 6.6 and "
                                         r"remediate \S+; refusing to choose one"):  # its folder is first on the path
        kinds.load_kinds()
    with pytest.raises(InputError, match="evil-kinds"):
        playbook.load(playbook.locate("toy"))


def test_a_package_seen_after_the_first_reading_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path is walked again at each reading: a folder added to sys.path, or a package installed, counts."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    assert "more" not in [e.name for e in entrypoints.entry_points("remediate.checks")]
    info = site / "more_checks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: more-checks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[remediate.checks]\nmore = more_checks:More\n")
    os.utime(site, ns=(os.stat(site).st_atime_ns, os.stat(site).st_mtime_ns + 1_000_000))  # a coarse clock's tick
    assert "more" in [e.name for e in entrypoints.entry_points("remediate.checks")]



NOT_INSTALLED = """
import json, sys
import remediate.contract.entrypoints as found
from remediate.kinds.file import FileContent

class Greeter(FileContent):
    kind = "lazy-start-greeter"

class Entry:
    name, value, dist = "lazy-start-greeter", "greeters:Greeter", found.Dist({"Name": "greeters", "Version": "1"})
    def load(self):
        return Greeter

from remediate import kinds
kinds.entry_points = lambda group: [Entry()]  # no remediate entry: not installed
kinds.load_kinds()
print(json.dumps([kinds.REGISTRY["lazy-start-greeter"] is Greeter, kinds.REGISTRY["file"] is FileContent,
                  kinds.ORIGIN["lazy-start-greeter"], kinds.REGISTRY.get("no-such-kind"), len(kinds.REGISTRY)]))
print("MODULES []")
"""


def test_a_source_tree_that_is_not_installed_takes_a_plug_in_beside_its_own_kinds() -> None:
    """No remediate entry point (a source tree on PYTHONPATH): the shipped kinds are imported, and a plug-in whose
    name is not theirs is taken (the registry's get() answers a name it lacks with the default, as a dict's does)."""
    _, out = loaded(NOT_INSTALLED)
    assert json.loads(out.splitlines()[-2]) == [True, True, "greeters 1", None, len(kinds.SHIPPED) + 1]


SSH_RUN = """
import json, sys
from remediate.deferred import Deferred
import remediate.api, remediate.transport.ssh, paramiko
modules = sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))
from importlib.metadata import distribution, version  # the real module from here on
print(json.dumps([paramiko.__version__, distribution("paramiko").version, type(sys.modules["importlib.metadata"]).__name__,
                  paramiko.metadata.version("ruamel.yaml") == version("ruamel.yaml")]))
print("MODULES " + json.dumps(modules))
"""


def test_an_ssh_run_gets_paramikos_version_without_importing_importlib_metadata() -> None:
    """paramiko's __init__ asks importlib.metadata for its version (its SSH banner): the stand-in answers that from the
    METADATA file, the very string the real module gives, and hands the real module every other question."""
    modules, out = loaded(SSH_RUN)
    assert "paramiko.transport" in modules
    assert under(modules, "remediate.api.catalog", "remediate.api.diagnosis") == []  # `remediate kinds`, diagnose
    assert under(modules, "importlib.metadata", "email", "zipfile", "csv") == []
    ours, real, then, same = json.loads(out.splitlines()[-2])
    assert ours == real and then == "module" and same


def test_the_library_leaves_its_catalogue_and_diagnose_modules_until_one_of_their_names_is_asked_for() -> None:
    code = ("import json, sys\nfrom remediate.deferred import Deferred\nimport remediate.api as api\n"
            "before = [m for m in ('remediate.api.catalog', 'remediate.api.diagnosis') if m in sys.modules]\n"
            "from remediate.api import Diagnosis\nfrom remediate.api.diagnosis import Diagnosis as Real\n"
            "from remediate.api import catalog\n"
            "try:\n    api.no_such_name\n    missing = False\nexcept AttributeError:\n    missing = True\n"
            "print(json.dumps([before, Diagnosis is Real, api.checks is catalog.checks, api.kinds is catalog.kinds,\n"
            "                  api.next_options is sys.modules['remediate.api.diagnosis'].next_options, missing,\n"
            "                  sorted(set(api.__all__) - set(dir(api)))]))\n"
            "print('MODULES []')\n")
    _, out = loaded(code)
    before, same, checks, kinds, options, missing, absent = json.loads(out.splitlines()[-2])
    assert before == [] and same and checks and kinds and options and missing and absent == []


def test_a_yaml_inventory_loads_no_ini_reader_and_an_ini_one_does(tmp_path: Path) -> None:
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    (tmp_path / "hosts").write_text("[web]\nh2 ansible_host=127.0.0.2\n")
    code = ("import json, sys\nfrom pathlib import Path\nfrom remediate.deferred import Deferred\n"
            "from remediate.inputs import inventory\n"
            "first = list(inventory.load(Path(sys.argv[1])).hosts)\n"
            "ini_then = 'remediate.inputs.inventory_ini' in sys.modules\n"
            "second = list(inventory.load(Path(sys.argv[2])).hosts)\n"
            "print(json.dumps([first, ini_then, second]))\n"
            "print('MODULES ' + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))\n")
    modules, out = loaded(code, str(tmp_path / "inventory.yml"), str(tmp_path / "hosts"))
    assert json.loads(out.splitlines()[-2]) == [["h1"], False, ["h2"]] and "remediate.inputs.inventory_ini" in modules
