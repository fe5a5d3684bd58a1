"""What was reviewed is what runs: a saved plan's identity is structural, its seal keyed, and "already fixed" true."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from remediate.engine import planfile
from remediate.engine.undo import DEFAULT_STATE_DIR, LOCK_NAME
from remediate.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_OK

from .fakes import FakeTransport
from .test_cli import invoke


def saved_plan(tmp_path: Path, inv: Path, book: Path, *extra: str) -> tuple[Path, str]:
    out = tmp_path / "fix.plan"
    code, text = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book), "--out", str(out), *extra)
    assert code == EXIT_CHANGES and out.exists(), text
    return out, text


def shown(out: Path) -> list[dict[str, object]]:
    return json.loads(out.read_text())["plans"]["h1"]["steps"]  # type: ignore[no-any-return]


def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inventory: str,
          *names: str) -> tuple[Path, Path, dict[str, FakeTransport]]:
    """A playbook that writes /etc/app.conf, an inventory, and a fake host for each name (its file "old")."""
    from remediate import api

    inv, book = tmp_path / "inventory.yml", tmp_path / "book.yml"
    book.write_text("name: unit\nsteps:\n  - id: conf\n    kind: file\n"
                    "    params: {path: /etc/app.conf, content: \"new\\n\"}\n")
    fakes = {name: FakeTransport(name=name) for name in names}
    for fake in fakes.values():
        fake.put("/etc/app.conf", "old\n")
    monkeypatch.setattr(api, "ssh_factory", lambda opts, emit, password: lambda host: fakes[host.name])
    inv.write_text(inventory)
    return inv, book, fakes


@pytest.mark.parametrize("before, swapped", [
    (b"api_password=REVIEWED-1\n", b"api_password=SWAPPED-99\n"),  # a secret changed at the same length
    (b"\x00\x01binary\xfe\xff", b"\x00\x02binary\xfe\xff"),  # a binary file changed at the same size
])
def test_a_change_the_shown_plan_cannot_show_makes_the_saved_plan_stale(
        setup, tmp_path: Path, before: bytes, swapped: bytes) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", before)
    out, _ = saved_plan(tmp_path, inv, book)
    fake.put("/etc/app.conf", swapped)
    (tmp_path / "again").mkdir()
    again, _ = saved_plan(tmp_path / "again", inv, book)
    assert shown(again) == shown(out), "the test needs two plans that read the same to people"
    code, text = invoke("apply", str(out))
    assert code == EXIT_ERROR and "not as the saved plan saw it" in text and "does not show" in text, text
    assert fake.files["/etc/app.conf"].content == swapped and fake.writes == []


def test_another_host_a_step_contacts_is_planned_as_the_inventory_reached_it(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A step on another inventory host (target: relay): its address, user and become after the review are not
    what was reviewed, though its file reads the same (a cloned machine). The saved plan is refused; nothing written."""
    from remediate import api

    inv = tmp_path / "inventory.yml"
    book = tmp_path / "book.yml"
    book.write_text("name: unit\nsteps:\n  - id: conf\n    kind: file\n    target: relay\n"
                    "    params: {path: /etc/relay.conf, content: \"new\\n\"}\n")
    machines = {address: FakeTransport(name=address) for address in ("127.0.0.21", "127.0.0.22", "127.0.0.23")}
    for machine in machines.values():
        machine.put("/etc/relay.conf", "old\n")
    monkeypatch.setattr(api, "ssh_factory", lambda opts, emit, password: lambda host: machines[host.address])
    relay = "relay: {ansible_host: 127.0.0.22, ansible_user: deploy}"
    inv.write_text(f"all:\n  hosts:\n    h1: {{ansible_host: 127.0.0.21}}\n    {relay}\n")
    out, _ = saved_plan(tmp_path, inv, book)
    inv.write_text(inv.read_text().replace(relay, "relay: {ansible_host: 127.0.0.23, ansible_user: root, "
                                                  "ansible_become: true}"))
    code, text = invoke("apply", str(out))
    assert code == EXIT_ERROR and "how the inventory reaches a host" in text, text
    assert all(m.writes == [] for m in machines.values())


def test_a_saved_plan_for_a_group_runs_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan covers the group web (h1, h2); h2 then leaves the group. Applying the plan to h1 alone would be a
    part of what was reviewed: refused, naming h2, and nothing is written anywhere."""
    inv, book, fakes = fleet(tmp_path, monkeypatch, "all:\n  children:\n    web:\n      hosts:\n        h1: {}\n"
                             "        h2: {}\n", "h1", "h2")
    out = tmp_path / "fix.plan"
    code, text = invoke("plan", "--host", "web", "-i", str(inv), "-p", str(book), "--out", str(out))
    assert code == EXIT_CHANGES, text
    inv.write_text("all:\n  hosts:\n    h2: {}\n  children:\n    web:\n      hosts:\n        h1: {}\n")
    code, text = invoke("apply", str(out))
    assert code == EXIT_ERROR and "h2: the saved plan covers this host and the inventory no longer selects it" in text
    assert all(fake.writes == [] for fake in fakes.values())


@pytest.mark.parametrize("upgrade", ["remediate", "plug-in"])
def test_a_plan_saved_by_other_code_is_refused(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               upgrade: str) -> None:  # type: ignore[no-untyped-def]
    """remediate, or the package a step's kind comes from, was upgraded between the plan and the apply: other code
    would apply and verify the steps, so the saved plan is refused, as Terraform refuses another version's plan."""
    from remediate.engine import runner
    from remediate.kinds import ORIGIN

    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    out, _ = saved_plan(tmp_path, inv, book)
    if upgrade == "remediate":
        monkeypatch.setattr(runner, "__version__", "99.0")
    else:
        monkeypatch.setitem(ORIGIN, "file", "acme-kinds 2.0")
    code, text = invoke("apply", str(out))
    assert code == EXIT_ERROR and "the version of remediate or of a plug-in" in text, text
    assert fake.writes == []


def test_a_secret_given_again_must_be_the_one_planned(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    out, _ = saved_plan(tmp_path, inv, book, "-e", "wanted=api_password={{ api_password }}",
                        "-e", "api_password=hunter22")
    assert "hunter22" not in out.read_text()
    code, text = invoke("apply", str(out), "-e", "api_password=hunter33")  # masked the same, not what was reviewed
    assert code == EXIT_ERROR and "not as the saved plan saw it" in text, text
    assert fake.files["/etc/app.conf"].content == b"old\n"
    code, text = invoke("apply", str(out), "-e", "api_password=hunter22")
    assert code == EXIT_OK, text
    assert fake.files["/etc/app.conf"].content == b"api_password=hunter22\n"


def test_a_bound_parameter_no_one_sees_is_part_of_the_plan(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    identities = []
    for undo in ("rm -f /tmp/a", "rm -rf /"):
        book.write_text("name: unit\nsteps:\n  - id: run\n    kind: command\n"
                        f"    params: {{command: touch /tmp/a, creates: /tmp/a, undo: {undo}}}\n")
        fake.expect("test -e /tmp/a", (1, "", ""))
        out, _ = saved_plan(tmp_path, inv, book)
        doc = json.loads(out.read_text())
        identities.append((doc["plans"]["h1"]["identity"], doc["plans"]["h1"]["steps"]))
    assert identities[0][1] == identities[1][1], "the undo command is not in what people are shown"
    assert identities[0][0] != identities[1][0]


def test_the_same_plan_made_twice_has_one_identity(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    first = json.loads(saved_plan(tmp_path, inv, book)[0].read_text())["plans"]["h1"]["identity"]
    second = json.loads(saved_plan(tmp_path, inv, book)[0].read_text())["plans"]["h1"]["identity"]
    assert first == second and len(first) == 64


def test_a_plan_file_is_sealed_with_a_key_not_a_checksum(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    out, _ = saved_plan(tmp_path, inv, book)
    key = Path(os.environ["XDG_STATE_HOME"]) / "remediate" / planfile.KEY_NAME
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert key.read_bytes().hex() not in out.read_text()
    # Someone who can write the plan file, but not read the key, changes a command and seals it again.
    doc = json.loads(out.read_text())
    doc["plans"]["h1"]["steps"][0]["reason"] = "harmless"
    body = {k: v for k, v in doc.items() if k != "seal"}
    doc["seal"] = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    out.write_text(json.dumps(doc))
    for command in (("show", str(out)), ("apply", str(out))):
        code, text = invoke(*command)
        assert code == EXIT_ERROR and "seal does not hold" in text, text
    assert fake.writes == []
    # A plan file of the older format (an unkeyed checksum) is refused as such.
    doc["format"] = "remediate-plan/1"
    out.write_text(json.dumps(doc))
    code, text = invoke("apply", str(out))
    assert code == EXIT_ERROR and "older remediate" in text and fake.writes == []


def test_a_plan_saved_under_another_key_is_refused(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    out, _ = saved_plan(tmp_path, inv, book)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "another-operator"))
    code, text = invoke("apply", str(out))
    assert code == EXIT_ERROR and "seal does not hold" in text and fake.writes == []


def test_nothing_to_do_while_another_run_holds_the_lock_names_the_holder(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    assert invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))[0] == EXIT_OK
    code, text = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))
    assert code == EXIT_OK and "already fixed by run" in text
    holder = {"run_id": "20261205T030000Z-abcdef", "operator": "alice", "started": "03:00", "pid": 1, "machine": "m"}
    fake.put(f"{DEFAULT_STATE_DIR}/{LOCK_NAME}", json.dumps(holder))
    for command in ("plan", "apply"):
        code, text = invoke(command, "--yes", "--host", "h1", "-i", str(inv), "-p", str(book)) if command == "apply" \
            else invoke(command, "--host", "h1", "-i", str(inv), "-p", str(book))
        assert code == EXIT_ERROR, text
        assert "already fixed" not in text and "20261205T030000Z-abcdef" in text and "alice" in text
        # in the words of a lock met while taking it: a script (or a test) reads one message whichever way it came
        assert f"another remediate run holds {DEFAULT_STATE_DIR}/{LOCK_NAME}" in text and "since 03:00" in text


def test_already_fixed_names_a_run_only_while_its_files_are_as_it_left_them(setup) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    assert invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book))[0] == EXIT_OK
    fake.put("/etc/app.conf", "fixed by hand\n")  # someone put another fix in place since
    code, text = invoke("apply", "--yes", "--host", "h1", "-i", str(inv), "-p", str(book), "-e", "wanted=fixed by hand")
    assert code == EXIT_OK and "nothing to do" in text and "already fixed by run" not in text, text


def test_a_plan_file_nested_without_end_is_refused_as_input(tmp_path: Path) -> None:
    out = tmp_path / "deep.plan"
    out.write_bytes(b"[" * 100000 + b"]" * 100000)
    code, text = invoke("show", str(out))
    assert code == EXIT_ERROR and "nests" in text and "internal error" not in text, text


def test_the_plan_key_is_never_seen_half_made_by_threads_making_it_at_once() -> None:
    """A fleet's hosts are planned in threads: each asks for the key, the first makes it (a run once read it empty)."""
    import threading

    start = threading.Barrier(16, timeout=30)
    found: list[bytes | BaseException] = []

    def ask() -> None:
        start.wait()
        try:
            found.append(planfile.key())
        except BaseException as e:  # noqa: BLE001 - what went wrong is the assertion below
            found.append(e)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(found) == 16 and all(isinstance(k, bytes) and len(k) == planfile.KEY_BYTES for k in found), found
    assert len(set(found)) == 1  # type: ignore[arg-type]


def test_a_secret_named_variable_is_masked_in_commands_diffs_and_the_plan_file(setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv, book, fake = setup
    fake.put("/etc/app.conf", "old\n")
    book.write_text("name: unit\nsteps:\n  - id: conf\n    kind: file\n    params: {path: /etc/app.conf, content: "
                    "\"{{ db_password }}\\n\"}\n  - id: run\n    kind: command\n    params: {command: \"sh -c 'echo "
                    "{{ api_token }} > /tmp/x'\"}\n")
    fake.expect(["sh", "-c", 'echo "${1}" > /tmp/x', "sh", "s3cretAAA"])
    out = tmp_path / "fix.plan"
    code, text = invoke("plan", "--host", "h1", "-i", str(inv), "-p", str(book), "--out", str(out), "--json",
                        "-e", "api_token=s3cretAAA", "-e", "db_password=correct horse battery staple")
    assert code == EXIT_CHANGES, text
    for where in (text, out.read_text()):
        assert "s3cretAAA" not in where and "correct horse" not in where and "battery staple" not in where, where


def test_the_identity_reads_any_yaml_value_and_keeps_types_apart() -> None:
    from remediate.engine.identity import canonical

    assert canonical({2: {"a": 1}, 1: [b"x"]}) == canonical({1: [b"x"], 2: {"a": 1}})  # non-string keys, any order
    assert canonical({"v": "1"}) != canonical({"v": 1}) and canonical([1, 2]) != canonical({1, 2})
    assert canonical(b"same") == canonical(b"same") and canonical(b"same") != canonical("same")


def test_what_a_plan_saw_in_its_words_is_not_its_identity_what_it_will_do_is() -> None:
    """A log-check's plan says how many lines match now, and the plan of the step before it (an RCPT probe) adds one:
    with the reason in the identity, every plan of relay-access was new, and serve refused each approved plan as
    changed underfoot. The words are for people; the identity is what will run and what was read."""
    from remediate.contract.plan import Plan
    from remediate.engine import identity

    def of(*plans: Plan) -> str:
        return identity.of_host(host="h1", playbook_text=b"name: p\n", variables={}, skipped=frozenset(),
                                steps=[(p.step_id, p.kind, p.target, {}, None) for p in plans], plans=plans,
                                reads={}, run_id="20261206T000000Z-abcdef", key=b"k" * 32)

    def check(seen: str, commands: tuple[str, ...] = ()) -> Plan:
        return Plan("no-new-rejects", "log-check", "host", f"check the log; now {seen}", commands=commands,
                    checks=("no line of its log matches 'Relay access denied'",))

    assert of(check("3 line(s) match")) == of(check("4 line(s) match"))
    assert of(check("3 line(s) match")) != of(check("3 line(s) match", commands=("postfix reload",)))
    assert of(check("x")) != of(Plan("no-new-rejects", "log-check", "host", "x", checks=("another proof",)))


def test_another_host_is_identified_as_its_inventory_says_not_where_that_inventory_is(tmp_path: Path) -> None:
    """The same inventory in two folders (a relative key path resolves to two places): the same plan. Its key file
    as written is part of it."""
    from remediate.engine.identity import reached
    from remediate.inputs import inventory

    seen = []
    for folder, key in (("one", "keys/relay"), ("two", "keys/relay"), ("three", "keys/other")):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "hosts.yml"
        path.write_text(f"all:\n  hosts:\n    relay: {{ansible_host: 127.0.0.22, ansible_ssh_private_key_file: {key}}}\n")
        seen.append(reached(inventory.load(path).get("relay", needed_by="a test")))
    assert seen[0] == seen[1] and seen[0] != seen[2]


def test_a_saved_plan_keeps_the_rollout_it_was_reviewed_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Canary first, and no failure allowed, was reviewed with the plan: apply PLANFILE runs that rollout, refuses
    another (a wider failure budget would let a bad change reach every host), and takes only --forks."""
    inv, book, fakes = fleet(tmp_path, monkeypatch, "all:\n  children:\n    web:\n      hosts:\n        h1: {}\n"
                             "        h2: {}\n        h3: {}\n", "h1", "h2", "h3")
    code, text = invoke("plan", "--host", "web", "-i", str(inv), "-p", str(book), "--serial", "1")
    assert code == 2 and "--serial is a rollout setting for apply; a plan keeps it only when saved" in text, text
    out = tmp_path / "fix.plan"
    code, text = invoke("plan", "--host", "web", "-i", str(inv), "-p", str(book), "--out", str(out), "--serial", "1,2",
                        "--max-fail-percent", "0", "--rollback-fleet-on-abort")
    assert code == EXIT_CHANGES, text
    code, text = invoke("show", str(out))
    assert "rollout: batches 1,2, each once the one before has verified, stopping at the first failure; then the " \
           "hosts already fixed are rolled back too" in text, text
    for flag in (["--max-fail-percent", "100"], ["--serial", "3"]):
        code, text = invoke("apply", str(out), *flag)
        assert code == 2 and f"{flag[0]}: a saved plan keeps the rollout it was reviewed with" in text, text
    assert all(fake.writes == [] for fake in fakes.values())
    doc = json.loads(out.read_text())
    doc["rollout"]["max_fail_percent"] = 100  # widened in the file: its seal no longer holds
    (tmp_path / "wide.plan").write_text(json.dumps(doc))
    code, text = invoke("apply", str(tmp_path / "wide.plan"))
    assert code == EXIT_ERROR and "changed after it was saved" in text
    code, text = invoke("apply", str(out), "--json", "--forks", "1")
    assert code == EXIT_OK, text
    started = [json.loads(line) for line in text.splitlines() if '"rollout_started"' in line]
    assert [(e["mode"], e["serial"], e["forks"]) for e in started] == [("apply", "1,2", 1)], started
    assert all(fake.files["/etc/app.conf"].content == b"new\n" for fake in fakes.values())


def test_a_plan_saved_before_plans_kept_a_rollout_says_so_and_takes_one_from_apply(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file without a rollout (made before, still sealed) never claims one was reviewed: show says it was not
    saved, and apply takes --serial as it did then. A sealed rollout remediate never writes is refused cleanly."""
    inv, book, _ = fleet(tmp_path, monkeypatch, "all:\n  hosts:\n    h1: {}\n    h2: {}\n", "h1", "h2")
    out = tmp_path / "fix.plan"
    code, text = invoke("plan", "--host", "all", "-i", str(inv), "-p", str(book), "--out", str(out))
    assert code == EXIT_CHANGES, text
    doc = json.loads(out.read_text())
    for rollout, said in ((None, "rollout: not saved with this plan"),
                          ({"serial": 2}, "the saved plan's rollout is not one remediate writes"),
                          ({"serial": "0"}, "the saved plan's rollout: --serial '0'"),
                          (["1"], "the saved plan's rollout is not one remediate writes"),
                          ({"max_fail_percent": "10"}, "the saved plan's rollout is not one remediate writes")):
        if rollout is None:
            doc.pop("rollout", None)
        else:
            doc["rollout"] = rollout
        doc["seal"] = planfile._seal(doc)  # sealed with this operator's key: as a file remediate itself wrote
        out.write_text(json.dumps(doc))
        code, text = invoke("show", str(out))
        assert said in text and "internal error" not in text, text
    doc.pop("rollout")
    doc["seal"] = planfile._seal(doc)
    out.write_text(json.dumps(doc))
    code, text = invoke("apply", str(out), "--json", "--serial", "1")
    assert code == EXIT_OK, text
    assert [json.loads(line)["serial"] for line in text.splitlines() if '"rollout_started"' in line] == ["1"]


def test_a_library_callers_rollout_is_saved_as_it_runs() -> None:
    from remediate.engine import fleet
    from remediate.engine.options import Options

    opts = Options(inventory=Path("i.yml"), hosts=("web",), rollout=fleet.Rollout(serial=((1, False), (20, True))))
    assert opts.saved_rollout()["serial"] == "1,20%"
