"""What start-up does not load, and the caches made for the per-event cost (issue #28): they keep every promise the
code without them kept. The module checks run a fresh interpreter and read its sys.modules (never a time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from remediate import redact
from remediate.cli.render import shown
from remediate.contract.plan import PlanStatus, ShownDiff, ShownPlan
from remediate.engine import events

#: Heavy modules no help text needs: asyncio (serve's Temporal client), cryptography (SSH and the TLS probe), rich
#: (the human renderer), paramiko (SSH).
HEAVY = ("asyncio", "cryptography", "rich", "paramiko")

RUN_CLI = """
import json, sys
from remediate.deferred import Deferred
from remediate.cli.entry import main
sys.argv = ["remediate", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
print("\\nMODULES " + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))
"""

PLAN_MODULES = """
import json, sys
from remediate.deferred import Deferred
import remediate.api, remediate.cli.render
from remediate.diagnostics import load_checks
from remediate.kinds import load_kinds
load_kinds()
load_checks()
print("MODULES " + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))
"""


def loaded(code: str, *args: str) -> set[str]:
    env = {**os.environ, "CI": "true", "COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60, check=False)
    last = done.stdout.rstrip().rpartition("\n")[2]
    assert last.startswith("MODULES "), done.stdout[-500:] + done.stderr[-2000:]
    return set(json.loads(last.removeprefix("MODULES ")))


def top(modules: set[str], name: str) -> list[str]:
    return sorted(m for m in modules if m == name or m.startswith(name + "."))


@pytest.mark.parametrize("argv", [["--help"], ["plan", "--help"], ["apply", "--help"]])
def test_help_loads_no_ssh_no_crypto_no_rich_no_asyncio_no_journal(argv: list[str]) -> None:
    modules = loaded(RUN_CLI, json.dumps(argv))
    assert "remediate.cli.main" in modules  # the command line did run
    for name in HEAVY:
        assert top(modules, name) == [], f"remediate {' '.join(argv)} imported {name}"
    assert "remediate.engine.journal" not in modules  # nor the journal and its run index: only what reads runs


SSH_MODULES = """
import json, sys
from remediate.deferred import Deferred
import remediate.api, remediate.transport.ssh, paramiko
print("MODULES " + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))
invoke = paramiko.config.invoke  # paramiko's own reference, for `Match exec`: the real invoke once used
print(invoke.run.__module__, invoke.Result.__name__)
print("MODULES " + json.dumps(sorted(n for n, m in sys.modules.items() if not isinstance(m, Deferred))))
"""


def test_what_an_ssh_run_imports_leaves_invoke_until_ssh_config_runs_a_command() -> None:
    """paramiko imports invoke (and it unittest.mock and asyncio, 40-60 ms) for `Match exec` only; no fabric."""
    done = subprocess.run([sys.executable, "-c", SSH_MODULES], capture_output=True, text=True, timeout=60, check=True)
    before, used, after = done.stdout.strip().split("\n")
    modules = set(json.loads(before.removeprefix("MODULES ")))
    assert "paramiko.config" in modules and "remediate.transport.endpoint" in modules
    for name in ("invoke", "unittest", "asyncio", "fabric", "tenacity", "concurrent"):
        assert [m for m in top(modules, name) if m != "invoke"] == [], f"an SSH run imported {name}"
    assert used == "invoke Result"
    assert "invoke.runners" in set(json.loads(after.removeprefix("MODULES ")))


def test_loading_every_kind_and_check_does_not_import_the_tls_probe_or_x509() -> None:
    """tls-reload and tls-certificate import the probe (and cryptography.x509, ~20 ms) when they validate or run."""
    modules = loaded(PLAN_MODULES)
    assert "remediate.kinds.tls_reload" in modules and "remediate.diagnostics.tls" in modules
    assert "remediate.probes.tls" not in modules
    assert top(modules, "cryptography.x509") == []


def test_the_become_password_set_changed_or_unset_after_masking_began_is_followed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(redact.BECOME_PASSWORD_ENV, raising=False)
    assert redact.text("sudo said: Zq7-later-secret") == "sudo said: Zq7-later-secret"  # the secrets are sorted now
    monkeypatch.setenv(redact.BECOME_PASSWORD_ENV, "Zq7-later-secret")
    assert redact.text("sudo said: Zq7-later-secret") == f"sudo said: {redact.MASK}"
    monkeypatch.setenv(redact.BECOME_PASSWORD_ENV, "Xr9-another-one")
    assert redact.text("sudo said: Xr9-another-one") == f"sudo said: {redact.MASK}"
    os.environ[redact.BECOME_PASSWORD_ENV] = "Wp4-set-directly"  # os.environ, as a library caller would
    assert redact.text("echo Wp4-set-directly") == f"echo {redact.MASK}"
    monkeypatch.delenv(redact.BECOME_PASSWORD_ENV)
    assert redact.text("echo Wp4-set-directly") == "echo Wp4-set-directly"


def test_a_secret_registered_after_masking_began_is_masked_and_a_forgotten_one_is_not() -> None:
    assert redact.text("token-free line Kb2-registered") == "token-free line Kb2-registered"
    try:
        redact.register("Kb2-registered")
        assert redact.text("a line with Kb2-registered in it") == f"a line with {redact.MASK} in it"
        redact.register("Kb2-registered-longer")  # longest first: the longer one is masked whole
        assert redact.text("x Kb2-registered-longer") == f"x {redact.MASK}"
    finally:
        redact._known.discard("Kb2-registered")
        redact._known.discard("Kb2-registered-longer")
    assert redact.text("a line with Kb2-registered in it") == "a line with Kb2-registered in it"


def test_secrets_registered_by_many_threads_while_others_mask_are_all_masked() -> None:
    secrets = [f"Tt{i}-thread-secret" for i in range(40)]
    start = threading.Barrier(8)

    def mask() -> None:
        start.wait()
        for _ in range(300):
            redact.text("nothing here")

    def add(part: list[str]) -> None:
        start.wait()
        for s in part:
            redact.register(s)

    workers = [threading.Thread(target=mask) for _ in range(4)]
    workers += [threading.Thread(target=add, args=(secrets[i::4],)) for i in range(4)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert all(redact.text(f"said {s}") == f"said {redact.MASK}" for s in secrets)
    finally:
        for s in secrets:
            redact._known.discard(s)


def test_an_event_is_shown_masked_without_altering_it_and_one_with_nothing_to_mask_is_not_copied() -> None:
    diff = ShownDiff(path="/srv/.env", diff="-SMTP_PASSWORD=hunter2-secret\n+SMTP_PASSWORD=new\x1b[31m\n")
    plan = ShownPlan(step="env", kind="file", target="/srv/.env", status=PlanStatus.CHANGE, reason="edit",
                     diffs=(diff,))
    event = events.StepPlanned(host="h1", plan=plan)
    seen = shown(event)
    assert seen is not event and seen.plan.diffs[0].diff == f"-SMTP_PASSWORD={redact.MASK}\n+SMTP_PASSWORD={redact.MASK}\n"
    assert event.plan.diffs[0] is diff and "hunter2-secret" in diff.diff  # the original is what the journal keeps
    assert seen.plan.step == "env" and seen.plan.status is PlanStatus.CHANGE and isinstance(seen.plan.diffs, tuple)
    plain = events.StepPlanned(host="h1", plan=ShownPlan(step="s", kind="file", target="/f", status=PlanStatus.OK,
                                                         reason="already so", commands=("true",)))
    assert shown(plain) is plain
    record: dict[str, Any] = {"user": "ops", "api_key": "k-123", "nested": [{"x": "ok"}]}
    masked = shown(record)
    assert masked == {"user": "ops", "api_key": redact.MASK, "nested": [{"x": "ok"}]} and record["api_key"] == "k-123"


COMPILED_CLASSES = """
import dataclasses, json, sys
import remediate.api, remediate.cli.main, remediate.cli.render, remediate.transport.ssh
from remediate.kinds import load_kinds
from remediate.diagnostics import load_checks
load_kinds()
load_checks()
found = sorted(f"{name}.{v.__qualname__}" for name, module in list(sys.modules.items()) if name.startswith("remediate")
               for v in vars(module).values() if isinstance(v, type) and v.__module__ == name
               and dataclasses.is_dataclass(v) and getattr(getattr(v.__dict__.get("__eq__"), "__code__", None),
                                                           "co_filename", "") == "<string>")
print(json.dumps(found))
"""

def test_the_records_plan_and_apply_make_at_start_up_compile_no_eq_repr_or_hash_of_their_own() -> None:
    """A @dataclass compiles each method it adds (Python 3.11): @record (remediate.records) makes __eq__, __repr__ and
    __hash__ without that. A dataclass with a compiled __eq__ added to a module plan or apply loads fails here."""
    done = subprocess.run([sys.executable, "-c", COMPILED_CLASSES], capture_output=True, text=True, timeout=60,
                          check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_masking_patterns_are_compiled_when_a_text_first_holds_a_needle_and_mask_as_before() -> None:
    code = ("import json\nfrom remediate import redact\n"
            "plain = redact.text('  ~ relay (compose-env on host) will change: RELAYHOST=[127.0.0.11]:2525')\n"
            "before = redact._patterns.cache_info().currsize\n"
            "masked = [redact.text(t) for t in ('SMTP_PASSWORD=hunter2', 'sent Bearer abc.def to',\n"
            "                                   'smtp://ops:s3cret@mx.example:25', 'db_pass: \"x y\"')]\n"
            "print(json.dumps([plain, before, masked, redact._patterns.cache_info().currsize]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    plain, before, masked, after = json.loads(done.stdout)
    assert plain.endswith("RELAYHOST=[127.0.0.11]:2525") and before == 0 and after == 1
    assert masked == [f"SMTP_PASSWORD={redact.MASK}", f"sent Bearer {redact.MASK} to",
                      f"smtp://ops:{redact.MASK}@mx.example:25", f'db_pass: "{redact.MASK}"']
