"""H9's attacks on serve's people (issue #27) that need no real serve: the four-eyes decision racing a re-plan, the
tokens file's own protection, names that would forge audit lines, grants read as a hostile rules file or insider
would. An attack that succeeds today is an xfail(strict) naming its finding; one that fails is a regression test."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediate.errors import InputError
from remediate.serve import approvals as approvals_mod
from remediate.serve import engine as engine_mod
from remediate.serve.backend import EngineBackend, plan_identity
from remediate.serve.identity import Person, Tokens
from remediate.serve.roles import Grant, Role, Roles

from . import test_serve as base
from .test_serve import Serve, alert, fake_host, make

receiver = base.receiver  # the fixture: an outgoing webhook's far end
ALICE, BOB, CAROL = (Person(name, frozenset({"oncall"}), "token") for name in ("alice", "bob", "carol"))


@pytest.fixture
def two(tmp_path: Path, receiver: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    made = make(tmp_path, {"h1": fake_host("h1")}, receiver, approvals=2, approval_expires="10m")
    yield made
    made.engine.stop()


def test_an_approval_racing_a_replan_never_applies_the_new_plan(two: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """approve() reads the incident (plan A), decides, then moves PENDING -> RUNNING; replan() does not take the
    engine's decision lock and leaves the state PENDING, so the move still matches. Interleaved deterministically:
    the re-plan (the host changed meanwhile, so plan B differs) lands between the read and the move."""
    number = two.post(alert())[0]["id"]
    EngineBackend(two.engine).approve(number, BOB)
    first = two.engine.get(number)
    decide = approvals_mod.decide
    raced = threading.Event()

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not raced.is_set():
            raced.set()
            two.fakes["h1"].put("/etc/app.conf", "changed by someone\n")
            two.engine.manual.replan(number, CAROL)  # another request thread: no engine lock taken
            two.engine.idle()  # plan B is made and stored
        return decide(*args, **kwargs)

    monkeypatch.setattr(approvals_mod, "decide", racing)  # engine.py calls approvals.decide
    try:
        EngineBackend(two.engine).approve(number, ALICE, plan_identity(first))
    except engine_mod.Refused:
        pass
    two.engine.idle()
    now = two.engine.get(number)
    assert plan_identity(now) != plan_identity(first)  # the race happened: another plan is held
    # nobody approved plan B: it must wait, and the host must keep what carol's re-plan saw
    assert now.state == "pending", (now.state, now.approvals)
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"changed by someone\n"


def test_a_world_writable_tokens_file_is_refused(tmp_path: Path) -> None:
    """Another local user who can write tokens.json adds an admin token of theirs (sshd's StrictModes refuses such an
    authorized_keys). serve should refuse the file, as it refuses a short shared token."""
    tokens = Tokens(tmp_path)
    tokens.add("alice", ["oncall"])
    os.chmod(tmp_path / "tokens.json", 0o666)
    planted = Tokens(tmp_path / "planter")  # what the other user writes: an admin token they hold, in our file
    secret = planted.add("mallory", ["admin"])
    (tmp_path / "tokens.json").write_text((tmp_path / "planter" / "tokens.json").read_text())
    with pytest.raises(InputError):
        tokens.person(secret)


def test_a_tokens_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root to chown (CI runs as root)")
    tokens = Tokens(tmp_path)
    secret = tokens.add("mallory", ["admin"])
    os.chown(tmp_path / "tokens.json", 65534, 65534)  # nobody
    with pytest.raises(InputError):
        tokens.person(secret)


def test_a_tokens_file_swapped_for_a_symlink_is_not_written_through(tmp_path: Path) -> None:
    """`tokens add` refuses a symlinked tokens.json (H9 finding 5: never read through) and never writes the file it
    pointed to."""
    target = tmp_path / "elsewhere.json"
    target.write_text('{"version": 1, "tokens": []}')
    state = tmp_path / "state"
    state.mkdir()
    (state / "tokens.json").symlink_to(target)
    with pytest.raises(InputError, match="symlink"):
        Tokens(state).add("alice", ["oncall"])
    assert target.read_text() == '{"version": 1, "tokens": []}'
    assert (state / "tokens.json").is_symlink()  # left for its owner to look at


@pytest.mark.parametrize("planted", ["a link to their folder", "their folder"])
def test_tokens_add_in_a_state_dir_another_user_controls_makes_nothing(tmp_path: Path, planted: str) -> None:
    """`serve tokens add --state-dir DIR` where DIR is not yet made: never made through a link another user
    planted, nor in a folder of theirs; refused before anything is written, as serve itself refuses it."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o777)
    os.chown(theirs, 65534, 65534)
    state = tmp_path / "state"
    if planted == "a link to their folder":
        state.symlink_to(theirs)
    else:
        state = theirs / "state"  # missing: it would be made in their folder
    with pytest.raises(InputError, match="serve keeps its incidents and people's tokens in its state directory") as e:
        Tokens(state).add("alice", ["oncall"])
    assert "--state-dir" in str(e.value.hint) and "XDG_STATE_HOME" not in str(e.value)
    assert list(theirs.iterdir()) == []


@pytest.mark.parametrize("name", ["alice\nincident 1: approved by bob", "alice\r", "al ice", "alice\x1b[2J", "",
                                  "-alice", "a" * 65, "alice\u200b", "ali\u0441e"])
def test_a_name_that_could_forge_an_audit_line_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputError):
        Tokens(tmp_path).add(name, ["oncall"])
    with pytest.raises(InputError):
        Tokens(tmp_path).add("alice", [name])


def test_tokens_add_for_a_live_name_is_refused_and_keeps_the_first_token(tmp_path: Path) -> None:
    tokens = Tokens(tmp_path)
    first = tokens.add("alice", ["oncall"])
    with pytest.raises(InputError, match="alice has a token already"):
        tokens.add("alice", ["admin"])
    found = tokens.person(first)
    assert found is not None and found.roles == frozenset({"oncall"})


def test_revoked_foreign_and_reprefixed_tokens_are_nobody(tmp_path: Path) -> None:
    tokens = Tokens(tmp_path / "a")
    alice = tokens.add("alice", ["admin"])
    foreign = Tokens(tmp_path / "b").add("alice", ["admin"])
    assert tokens.person(foreign) is None  # a token of another state dir, same name
    assert tokens.person("xyz_" + alice[4:]) is None and tokens.person(alice[4:]) is None
    assert tokens.person(alice + " ") is None and tokens.person(alice.upper()) is None
    assert tokens.revoke("alice")
    assert tokens.person(alice) is None
    again = tokens.add("alice", ["oncall"])
    assert tokens.person(alice) is None and tokens.person(again) is not None


def test_a_grant_on_one_rule_and_host_glob_allows_nothing_else() -> None:
    roles = Roles({"mx": Role("mx", frozenset({"alice"}),
                              (Grant(frozenset({"approve", "request", "rollback", "pause"}), ("mail",),
                                     ("ec2-mx[0-9]",)),))})
    alice = Person("alice", frozenset(), "token")
    assert roles.allows(alice, "approve", "mail", "ec2-mx1")
    for action, rule, host in (("approve", "web", "ec2-mx1"), ("approve", "mail", "ec2-mx-evil"),
                               ("approve", "mail", "EC2-MX1"), ("rollback", "web", "ec2-mx1"),
                               ("request", None, "ec2-mx1"), ("approve", "mail", None), ("deny", "mail", "ec2-mx1"),
                               ("pause", None, None)):
        assert not roles.allows(alice, action, rule, host), (action, rule, host)
    # an unknown role (a token's, not in the rules file) grants nothing, and says so
    ghost = Person("ghost", frozenset({"oncal"}), "token")
    assert not roles.allows(ghost, "approve", "mail", "ec2-mx1")
    assert "not in the rules file: oncal" in roles.refusal(ghost, "approve", "mail", "ec2-mx1")


def test_a_rules_file_redefining_admin_is_refused(tmp_path: Path) -> None:
    from remediate.serve import roles as roles_mod
    from remediate.serve import rules as rules_mod

    book = tmp_path / "book.yml"
    book.write_text(base.BOOK)
    path = tmp_path / "rules.yml"
    path.write_text(f"rules:\n  - name: app\n    match: {{alertname: A}}\n    playbook: {book}\n"
                    "roles:\n  admin: {members: [mallory], allow: [{actions: [approve]}]}\n")
    with pytest.raises(InputError, match="built in"):
        roles_mod.load(rules_mod.load(path))


def test_a_restart_days_after_the_approval_does_not_apply_on_expired_approvals(two: Serve) -> None:
    """serve commits the approval (running) and dies before the apply starts; it comes back a day later. The
    recovery starts the apply on approvals that expired 23 hours ago (the rule says they count for ten minutes)."""
    number = two.post(alert())[0]["id"]
    incident = two.engine.get(number)
    identity = plan_identity(incident)
    given = [{"by": p.name, "via": "token", "at": two.clock.now, "plan": identity} for p in (ALICE, BOB)]
    moved = two.engine.store.transition(number, ["pending"], "running", "approved", "by bob (token) (2 of 2)",
                                        approvals=given, approved_by="alice, bob")
    assert moved is not None  # what approve() commits before it hands the apply to a worker: serve dies here
    two.clock.now += 86400
    two.engine.recover()
    two.engine.idle()
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    assert two.engine.get(number).state == "pending"


def test_an_apply_that_begins_after_the_approvals_expired_does_not_apply(two: Serve) -> None:
    """The approval is committed and the apply waits (the host's job queue is busy) a day, serve never restarting:
    the apply asks the approvals' age again and goes back to pending, as a restart would."""
    number = two.post(alert())[0]["id"]
    identity = plan_identity(two.engine.get(number))
    given = [{"by": p.name, "via": "token", "at": two.clock.now, "plan": identity} for p in (ALICE, BOB)]
    assert two.engine.store.transition(number, ["pending"], "running", "approved", "by bob (token) (2 of 2)",
                                       approvals=given, approved_by="alice, bob") is not None
    two.clock.now += 86400
    two.engine.execution.run(number)
    two.engine.idle()
    assert two.fakes["h1"].files["/etc/app.conf"].content == b"broken\n"
    assert two.engine.get(number).state == "pending"


@pytest.mark.parametrize(("age", "counts"), [(600.0, True), (600.001, False), (-5.0, True)])
def test_an_approval_counts_for_exactly_its_rules_expiry(age: float, counts: bool) -> None:
    approval = {"by": "alice", "via": "token", "at": 1000.0, "plan": "p"}
    kept, dropped = approvals_mod.held([approval], "p", 1000.0 + age, 600.0)
    assert bool(kept) is counts and bool(dropped) is not counts
    decided = approvals_mod.decide([approval], "bob", "slack", "p", 1000.0 + age, needed=2, expires=600.0,
                                   requested_by="carol")
    assert decided.enough is counts and decided.refused is None
    assert approvals_mod.decide([approval], "carol", "proxy", "p", 1000.0, needed=2, expires=600.0,
                                requested_by="carol").refused


def test_an_escalation_masks_the_secrets_an_incident_picked_up() -> None:
    """What an alert, a person or a run wrote into an incident goes to the escalation's far end masked."""
    from remediate.serve.notify import escalation

    secrets = ("hunter2-in-a-label", "sk-live-bearer-0123456789", "pw-in-a-url-userinfo", "smtp-pass-in-the-diff",
               "api-key-in-evidence")
    incident = {"id": 7, "state": "failed", "run_id": "r1", "host": "h1", "rule": "app", "alertname": "A",
                "reason": "escalate: POST https://ops:pw-in-a-url-userinfo@hooks.example/x failed",
                "labels": {"db_password": "hunter2-in-a-label", "instance": "h1:9100"},
                "plan_diff": "-relay_password = old\n+smtp_password: smtp-pass-in-the-diff\n",
                "history": [{"at": "x", "what": "denied", "detail": "by alice (token): curl -H 'Authorization: "
                                                                   "Bearer sk-live-bearer-0123456789'"}],
                "evidence": {"api": {"api_key": "api-key-in-evidence"}}}
    sent = json.dumps(escalation(incident))
    for secret in secrets:
        assert secret not in sent, secret
    assert '"instance": "h1:9100"' in sent  # what a pager needs stays


def test_an_escalation_masks_a_pass_key_in_the_diff_as_it_does_as_a_key() -> None:
    from remediate.serve.notify import escalation

    incident = {"id": 7, "state": "failed", "labels": {"smtp_pass": "as-a-key"},
                "plan_diff": "-smtp_pass: old-one\n+smtp_pass: as-a-line\n", "history": [], "evidence": None,
                "reason": None, "run_id": None, "host": "h1", "rule": "app", "alertname": "A"}
    sent = json.dumps(escalation(incident))
    assert "as-a-key" not in sent  # held: the key is a secret's
    assert "as-a-line" not in sent and "old-one" not in sent


def test_a_revoke_racing_an_add_in_another_process_stays_revoked(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command reads the file, changes its copy and renames a new file over it; the lock is a thread lock, per
    process. The add reads, the revoke (another process) commits, the add writes what it read plus bob."""
    from remediate.serve import identity

    Tokens(tmp_path).add("bob-old", ["oncall"])
    stolen = Tokens(tmp_path).add("alice", ["admin"])  # alice's token leaked: the admin revokes it
    read = identity._read
    raced = threading.Event()

    def racing(path: Path) -> Any:
        found = read(path)
        if not raced.is_set():
            raced.set()
            assert Tokens(tmp_path).revoke("alice")  # the other process, between this one's read and its write
        return found

    monkeypatch.setattr(identity, "_read", racing)
    Tokens(tmp_path).add("bob", ["oncall"])
    monkeypatch.setattr(identity, "_read", read)
    assert raced.is_set()
    assert Tokens(tmp_path).person(stolen) is None


def test_one_slack_user_is_never_mapped_to_two_live_people(tmp_path: Path) -> None:
    tokens = Tokens(tmp_path)
    tokens.add("alice", ["oncall"], chat={"slack": "U0ALICE"})
    with pytest.raises(InputError):
        tokens.add("mallory", ["admin"], chat={"slack": "U0ALICE"})


def test_a_tokens_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "world"
    secret = Tokens(elsewhere).add("mallory", ["admin"])
    os.chmod(elsewhere / "tokens.json", 0o666)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "tokens.json").symlink_to(elsewhere / "tokens.json")
    with pytest.raises(InputError):
        Tokens(state).person(secret)


@pytest.mark.parametrize(("peer", "trusted"), [("127.0.0.1", True), ("127.0.0.21", True), ("::1", True),
                                               ("10.0.0.5", False), ("192.168.1.1", False), ("::ffff:10.0.0.1", False),
                                               (None, False), ("testclient", False), ("", False)])
def test_without_a_secret_the_proxy_header_counts_from_loopback_alone(peer: str | None, trusted: bool) -> None:
    from remediate.serve.access import Proxy

    proxy = Proxy("X-Forwarded-User")
    assert (proxy.user({"x-forwarded-user": "alice"}, peer) == "alice") is trusted
    with_secret = Proxy("X-Forwarded-User", "s" * 40)
    assert with_secret.user({"x-forwarded-user": "alice"}, peer) is None  # loopback is no secret
    assert with_secret.user({"x-forwarded-user": "alice", "x-remediate-proxy-secret": "s" * 40}, peer) == "alice"


@pytest.mark.parametrize(("shown", "sent"), [
    ({"id": 4, "state": "pending", "host": "h1", "plan_identity": "plan-a", "plan_diff": "-broken\n+fixed\n"}, "plan-a"),
    ({"id": 4, "state": "pending", "host": "h1", "plan_identity": None, "plan_diff": None}, "none"),
])
def test_remediate_approve_names_the_plan_it_showed(shown: dict[str, Any], sent: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """H9 finding 7: `remediate approve N` sent {}, so serve approved whatever plan it held when the POST landed. It
    shows the plan and names it; with none shown (not planned yet) it names none, which serve refuses."""
    from click.testing import CliRunner

    from remediate.cli import main as cli
    from remediate.serve import client as client_mod

    calls: list[tuple[str, str, Any]] = []

    def call(self: client_mod.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        calls.append((method, path, body))
        return shown if method == "GET" else {"id": 4, "state": "pending", "approved_by": None}

    monkeypatch.setattr(client_mod.Client, "call", call)
    monkeypatch.setenv(client_mod.TOKEN_ENV, "rmt_not-a-real-one")
    result = CliRunner().invoke(cli.cli, ["approve", "4", "--server", "http://127.0.0.19:9"])
    assert result.exit_code == 0, result.output
    assert calls == [("GET", "/incidents/4", None), ("POST", "/incidents/4/approve", {"plan_identity": sent})]
    assert ("+fixed" in result.output) is (sent == "plan-a")


def test_whose_approval_still_stands(tmp_path: Path) -> None:
    """H9 finding 6: an approval stands while its person does: a token's while the name has a live token, a Slack
    click's while a live token maps a Slack user, a proxy's always; a tokens file serve refuses stands for nobody."""
    tokens = Tokens(tmp_path)
    tokens.add("alice", ["oncall"], chat={"slack": "U0ALICE"})
    tokens.add("bob", ["oncall"])
    assert engine_mod.stands(tmp_path, "alice", "token") and engine_mod.stands(tmp_path, "alice", "slack")
    assert engine_mod.stands(tmp_path, "bob", "session") and not engine_mod.stands(tmp_path, "bob", "slack")
    assert tokens.revoke("alice")
    assert not engine_mod.stands(tmp_path, "alice", "token") and not engine_mod.stands(tmp_path, "alice", "slack")
    assert engine_mod.stands(tmp_path, "alice", "proxy")
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / "tokens.json").symlink_to(tmp_path / "gone.json")
    assert not engine_mod.stands(dangling, "bob", "token") and engine_mod.stands(dangling, "bob", "proxy")
