"""People in serve (issue #27, identity): named tokens, roles per rule and host, the login, the trusted proxy, and
`remediate serve tokens`; each decision the verified person's, and each refusal a 403 that changes nothing."""

from __future__ import annotations

import dataclasses
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from remediate.errors import InputError
from remediate.serve import app as app_mod
from remediate.serve import roles as roles_mod
from remediate.serve import rules as rules_mod
from remediate.serve.access import PROXY_SECRET_HEADER, Proxy
from remediate.serve.identity import Tokens

from . import test_serve as base
from .test_serve import AUTH, TOKEN, Serve, alert, named

receiver = base.receiver  # the fixtures: an outgoing webhook's far end, and serve with hosts h1 and h2
serve = base.serve

PROXY_SECRET = "proxy-secret-0123456789abcdef0123456789"
ONCALL = {"oncall": {"members": ["erin"], "allow": [{"actions": ["approve", "deny"], "rules": ["app"],
                                                      "hosts": ["h1*"]}]},
          "elsewhere": {"allow": [{"actions": ["approve", "deny", "pause"], "rules": ["other"]}]},
          "pausers": {"allow": [{"actions": ["pause"]}]}}


def rebuild(serve: Serve, roles: dict[str, Any] | None = None, proxy: Proxy | None = None,
            address: str = "127.0.0.1") -> TestClient:
    """serve's app again over the same engine and tokens, with these roles (and a second rule, `other`) and proxy."""
    rules = serve.engine.rules
    other = dataclasses.replace(rules.rules[0], name="other", match={"alertname": "Other"})
    with_roles = dataclasses.replace(rules, rules=(*rules.rules, other), roles=roles)
    app = app_mod.build(serve.engine, TOKEN, tokens=Tokens(serve.db.parent), roles=roles_mod.load(with_roles),
                        proxy=proxy)
    return TestClient(app, client=(address, 50000))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def person(serve: Serve, name: str, *roles: str) -> dict[str, str]:
    """A new named token for `name` with these roles, as an Authorization header."""
    return bearer(Tokens(serve.db.parent).add(name, roles))


def history(serve: Serve, number: int) -> list[str]:
    return [f"{h['what']}: {h['detail']}" for h in serve.incident(number)["history"]]


# --- named tokens and the shared one -----------------------------------------------------------------------------------

def test_a_named_token_approves_and_the_decision_is_its_person_s(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    seen = serve.incident(number)["plan_identity"]
    done = serve.client.post(f"/incidents/{number}/approve", json={"by": "mallory", "plan_identity": seen},
                             headers=serve.people["bob"], params={"by": "mallory"})
    serve.engine.idle()
    assert done.status_code == 200 and done.json()["approved_by"].startswith("bob"), done.text
    assert serve.incident(number)["state"] == "waiting_resolved"
    assert any(line.startswith("approved: by bob (token)") for line in history(serve, number)), history(serve, number)
    assert "mallory" not in json.dumps(serve.incident(number))


def test_a_revoked_token_is_refused_at_its_next_request(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    assert serve.client.get("/incidents", headers=serve.people["bob"]).status_code == 200
    assert Tokens(serve.db.parent).revoke("bob")  # another process's Tokens, as `serve tokens revoke` is
    assert serve.client.get("/incidents", headers=serve.people["bob"]).status_code == 401
    assert serve.act(number, "approve", who="bob").status_code == 401
    assert serve.incident(number)["state"] == "pending"


@pytest.mark.parametrize("method,path", [("POST", "/incidents/1/approve"), ("POST", "/incidents/1/deny"),
                                         ("POST", "/pause"), ("POST", "/resume"), ("GET", "/incidents"),
                                         ("GET", "/incidents/1")])
def test_the_shared_token_is_no_person(serve: Serve, method: str, path: str) -> None:
    serve.post(alert())
    response = serve.client.request(method, path, headers=AUTH, json={"reason": "r", "by": "alertmanager"})
    assert response.status_code == 403 and "tokens add" in response.json()["error"], response.text
    assert serve.incident(1)["state"] == "pending" and serve.client.get("/healthz").json()["paused"] is False


def test_the_shared_token_still_opens_the_webhook_and_metrics(serve: Serve) -> None:
    assert serve.client.post("/alertmanager", json=base.webhook(alert()), headers=AUTH).status_code == 200
    assert serve.client.get("/metrics", headers=AUTH).status_code == 200
    assert serve.client.get("/metrics", headers=serve.people["alice"]).status_code == 200  # and a person too


# --- roles -------------------------------------------------------------------------------------------------------------

def test_a_person_without_the_role_is_refused_and_nothing_changes(serve: Serve) -> None:
    client = rebuild(serve, ONCALL)
    number = serve.post(alert())[0]["id"]
    viewer = person(serve, "frank", "viewer")  # a role the rules file does not have: no grant
    for action, body in (("approve", {}), ("deny", {"reason": "no"})):
        refused = client.post(f"/incidents/{number}/{action}", json=body, headers=viewer)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"].startswith(f"frank (token) may not {action} rule app on host h1: no role")
        assert "not in the rules file: viewer" in refused.json()["error"]
    assert client.post("/pause", json={}, headers=viewer).status_code == 403
    incident = serve.incident(number)
    assert incident["state"] == "pending" and incident["approved_by"] is None and incident["approvals"] == []
    assert not any(h["what"] in ("approved", "denied") for h in incident["history"])
    assert client.get("/incidents", headers=viewer).status_code == 200  # looking needs no role


def test_a_grant_limited_to_rules_and_hosts(serve: Serve) -> None:
    client = rebuild(serve, ONCALL)
    on_h1 = serve.post(alert("f1", "h1:9100"))[0]["id"]
    on_h2 = serve.post(alert("f2", "h2:9100"))[0]["id"]
    erin = person(serve, "erin", "viewer")  # oncall holds erin as a member, whatever her token's roles
    other = person(serve, "gus", "elsewhere")  # approves rule `other` only
    assert client.post(f"/incidents/{on_h1}/approve", json={}, headers=other).status_code == 403
    refused = client.post(f"/incidents/{on_h2}/approve", json={}, headers=erin)
    assert refused.status_code == 403 and "on host h2" in refused.json()["error"]
    done = client.post(f"/incidents/{on_h1}/approve", json={"plan_identity": serve.incident(on_h1)["plan_identity"]},
                       headers=erin)
    serve.engine.idle()
    assert done.status_code == 200 and serve.incident(on_h1)["approved_by"].startswith("erin")
    assert serve.incident(on_h2)["state"] == "pending"


def test_pause_needs_a_grant_on_every_rule_and_host(serve: Serve) -> None:
    client = rebuild(serve, ONCALL)
    limited = person(serve, "gus", "elsewhere")  # pause, but on rule `other` only
    assert client.post("/pause", json={}, headers=limited).status_code == 403
    assert serve.client.get("/healthz").json()["paused"] is False
    pauser = person(serve, "hal", "pausers")
    paused = client.post("/pause", json={"reason": "mx work"}, headers=pauser)
    assert paused.status_code == 200 and paused.json()["paused_by"].startswith("hal (token)")
    assert client.post("/resume", headers=limited).status_code == 403
    assert client.post("/resume", headers=pauser).status_code == 200


def test_the_roles_node_is_checked_with_file_and_line(tmp_path: Path) -> None:
    book = tmp_path / "book.yml"
    book.write_text(base.BOOK)
    head = f"rules:\n  - name: app\n    match: {{alertname: A}}\n    playbook: {book}\nroles:\n"
    cases = {"  admin:\n    allow: [{actions: [approve]}]\n": "rules.yml:6: the role 'admin' is built in",
             "  r:\n    allow:\n      - actions: [approve, fly]\n": "rules.yml:8: role 'r': 'fly' is not an action",
             "  r:\n    allow:\n      - actions: [approve]\n        rules: [nope]\n": "rules.yml:9: role 'r': no rule",
             "  r:\n    members: [alice]\n    extra: 1\n": "rules.yml:8: unknown role key 'extra'",
             "  r:\n    allow:\n      - actions: [deny]\n        hosts: 3\n": "rules.yml:9: role 'r': hosts: is a list"}
    path = tmp_path / "rules.yml"
    for body, said in cases.items():
        path.write_text(head + body)
        with pytest.raises(InputError) as refused:
            roles_mod.load(rules_mod.load(path))
        assert str(refused.value).removeprefix(f"{tmp_path}/").startswith(said), (body, str(refused.value))
    path.write_text(head + "  r:\n    members: [alice]\n    allow:\n      - actions: [approve]\n        hosts: ['mx*']\n")
    loaded = roles_mod.load(rules_mod.load(path))
    assert loaded.roles["r"].grants == (roles_mod.Grant(frozenset({"approve"}), None, ("mx*",)),)


# --- the login and the proxy -------------------------------------------------------------------------------------------

def test_the_login_takes_a_named_token_and_its_session_ends_with_the_token(serve: Serve) -> None:
    number = serve.post(alert())[0]["id"]
    assert serve.client.post("/login", data={"token": TOKEN}).status_code == 401  # the shared token: no person
    response = serve.client.post("/login", data={"token": named(serve, "dave")}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.cookies[app_mod.COOKIE]
    page = TestClient(serve.client.app, cookies={app_mod.COOKIE: cookie})
    csrf = serve.client.app.state.web.access.sessions.csrf(cookie)
    done = page.post(f"/incidents/{number}/approve", follow_redirects=False,
                     data={"by": "mallory", "csrf": csrf, "plan_identity": serve.incident(number)["plan_identity"]})
    serve.engine.idle()
    assert done.status_code == 303 and serve.incident(number)["approved_by"].startswith("dave")
    assert done.headers["location"] == f"/incidents/{number}"  # back on the incident's own page
    assert any("by dave (session)" in line for line in history(serve, number)), history(serve, number)
    assert page.get("/", follow_redirects=False).status_code == 200
    Tokens(serve.db.parent).revoke("dave")
    assert page.get("/", follow_redirects=False).headers.get("location") == "/login"  # the revoke ends the session


def test_the_proxy_s_user_header_is_a_person_only_with_the_proxy_s_secret(serve: Serve,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    number = serve.post(alert())[0]["id"]
    client = rebuild(serve, ONCALL, Proxy("X-Forwarded-User", PROXY_SECRET), address="10.1.2.3")
    erin = {"X-Forwarded-User": "erin"}
    with caplog.at_level(logging.WARNING, logger="remediate.serve.access"):
        for wrong in ({}, {PROXY_SECRET_HEADER: "guess"}, {PROXY_SECRET_HEADER: PROXY_SECRET[:-1]}):
            assert client.get("/incidents", headers={**erin, **wrong}).status_code == 401
            assert client.post(f"/incidents/{number}/approve", json={}, headers={**erin, **wrong}).status_code == 401
    ignored = [r.getMessage() for r in caplog.records if "ignored X-Forwarded-User" in r.getMessage()]
    assert ignored == ["ignored X-Forwarded-User from 10.1.2.3: without the proxy's secret"], ignored  # once
    assert "guess" not in caplog.text and PROXY_SECRET not in caplog.text
    proxied = {**erin, PROXY_SECRET_HEADER: PROXY_SECRET}
    assert client.get("/incidents", headers=proxied).status_code == 200
    forged = client.post(f"/incidents/{number}/approve", content=b"{}", headers={**proxied, "Content-Type": "text/plain"})
    assert forged.status_code == 415  # what a cross-site form could send: refused, nothing approved
    assert serve.incident(number)["state"] == "pending"
    done = client.post(f"/incidents/{number}/approve",
                       json={"by": "mallory", "plan_identity": serve.incident(number)["plan_identity"]}, headers=proxied)
    serve.engine.idle()
    assert done.status_code == 200 and serve.incident(number)["approved_by"].startswith("erin")
    assert any("by erin (proxy)" in line for line in history(serve, number))
    bad_name = client.get("/incidents", headers={"X-Forwarded-User": "a b\n", PROXY_SECRET_HEADER: PROXY_SECRET})
    assert bad_name.status_code == 401


def test_without_a_secret_the_proxy_s_header_counts_from_loopback_alone(serve: Serve) -> None:
    header = {"X-Forwarded-User": "erin"}
    near = rebuild(serve, ONCALL, Proxy("X-Forwarded-User"), address="127.0.0.1")
    far = rebuild(serve, ONCALL, Proxy("X-Forwarded-User"), address="192.0.2.7")
    assert near.get("/incidents", headers=header).status_code == 200
    assert far.get("/incidents", headers=header).status_code == 401
    assert serve.client.get("/incidents", headers=header).status_code == 401  # no --trust-user-header: never


# --- remediate serve tokens ------------------------------------------------------------------------------------------

def test_serve_tokens_add_list_revoke(tmp_path: Path) -> None:
    from remediate.cli.main import cli
    state = tmp_path / "state"
    runner = CliRunner()
    added = runner.invoke(cli, ["serve", "tokens", "add", "alice", "--role", "oncall", "--role", "admin", "--slack",
                                "U0123ABC", "--state-dir", str(state)])
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("rmt_") and added.stdout == token + "\n" and "shown only now" in added.stderr
    assert token not in added.stderr
    assert stat.S_IMODE((state / "tokens.json").stat().st_mode) == 0o600
    assert token not in (state / "tokens.json").read_text()
    person = Tokens(state).person(token)
    assert person is not None and person.name == "alice" and person.roles == {"oncall", "admin"}
    assert Tokens(state).chat_person("slack", "U0123ABC") == dataclasses.replace(person, via="slack")
    again = runner.invoke(cli, ["serve", "tokens", "add", "alice", "--role", "admin", "--state-dir", str(state)])
    assert again.exit_code == 1 and again.stdout == "" and "has a token already" in again.stderr
    for listing in (["--json"], []):
        shown = runner.invoke(cli, ["serve", "tokens", "list", *listing, "--state-dir", str(state)])
        assert shown.exit_code == 0 and "alice" in shown.stdout and "oncall" in shown.stdout
        digest = json.loads((state / "tokens.json").read_text())["tokens"][0]["digest"]
        assert digest not in shown.stdout and token not in shown.stdout and "digest" not in shown.stdout
    assert json.loads(runner.invoke(cli, ["serve", "tokens", "list", "--json", "--state-dir", str(state)]).stdout)[0][
        "revoked"] is None
    revoked = runner.invoke(cli, ["serve", "tokens", "revoke", "alice", "--state-dir", str(state)])
    assert revoked.exit_code == 0 and Tokens(state).person(token) is None
    assert runner.invoke(cli, ["serve", "tokens", "revoke", "alice", "--state-dir", str(state)]).exit_code == 1
    assert runner.invoke(cli, ["serve"]).exit_code != 0  # serve itself still wants --rules
    before = runner.invoke(cli, ["serve", "--state-dir", str(tmp_path / "other"), "tokens", "add", "bob", "--role",
                                 "admin"])  # serve's own --state-dir, given before `tokens`, is the one used
    assert before.exit_code == 0 and Tokens(tmp_path / "other").person(before.stdout.strip()) is not None


# --- serve's start ---------------------------------------------------------------------------------------------------

def test_serve_refuses_to_start_on_a_bad_roles_node_or_proxy_option(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from remediate.serve import launch
    monkeypatch.setenv("REMEDIATE_SERVE_TOKEN", TOKEN)
    book = tmp_path / "book.yml"
    book.write_text(base.BOOK)
    rules = tmp_path / "rules.yml"
    rules.write_text(f"rules:\n  - name: app\n    match: {{alertname: A}}\n    playbook: {book}\n"
                     "roles:\n  oncall:\n    allow:\n      - actions: [approve, merge]\n")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.21\n")
    state = tmp_path / "state"

    def settings(**people: Any) -> launch.Settings:
        return launch.Settings(rules, inventory, "127.0.0.21:1", state, None, False, 6, 4096, "info",
                               people=launch.People(**people))

    with pytest.raises(InputError, match=r"rules.yml:8: role 'oncall': 'merge' is not an action"):
        launch.serve(settings())
    rules.write_text(rules.read_text().replace(", merge", ""))
    with pytest.raises(InputError, match="--proxy-secret-file goes with --trust-user-header"):
        launch.serve(settings(proxy_secret_file=tmp_path / "secret"))
    (tmp_path / "secret").write_text("short\n")
    with pytest.raises(InputError, match="serve's token is too short"):
        launch.serve(settings(trust_user_header="X-Forwarded-User", proxy_secret_file=tmp_path / "secret"))
    with pytest.raises(InputError, match="is not a header name"):
        launch.serve(settings(trust_user_header="X-User: admin"))
    assert not state.exists()  # refused before anything was written
    Tokens(state).add("alice", ["admin"])
    (state / "tokens.json").chmod(0o666)  # anyone could write themselves a token
    with pytest.raises(InputError, match="tokens.json: refused"):
        launch.serve(settings())
    lock = state / "serve.lock"
    assert not lock.exists() or fcntl_free(lock)  # the state directory is not left held


def fcntl_free(path: Path) -> bool:
    """Whether no one holds an exclusive flock on path."""
    import fcntl
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_a_revoke_is_on_disk_when_it_returns_and_a_killed_writers_file_blocks_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tokens file is renamed in and then its folder synced, so a revoke reported done stays done after a power
    cut (before, the folder was not synced: the old file, the token live, could come back). The temporary name is
    random: one a killed writer left under this process's id no longer makes every later change fail."""
    import os

    from remediate import private
    state = tmp_path / "state"
    Tokens(state).add("alice", ["admin"])
    (state / f".tokens.json.{os.getpid()}.tmp").write_text("left by a killed writer\n")
    calls: list[tuple[str, str]] = []
    replace, fsync = private.os.replace, private.os.fsync
    monkeypatch.setattr(private.os, "replace", lambda a, b: (calls.append(("replace", str(b))), replace(a, b))[1])
    monkeypatch.setattr(private.os, "fsync", lambda fd: (
        calls.append(("fsync", private.os.readlink(f"/proc/self/fd/{fd}"))), fsync(fd))[1])
    token = Tokens(state).add("bob", ["viewer"])
    assert Tokens(state).person(token) is not None
    calls.clear()
    assert Tokens(state).revoke("bob")
    renamed = calls.index(("replace", str(state / "tokens.json")))
    assert calls[renamed - 1][0] == "fsync" and ("fsync", str(state)) in calls[renamed:], calls
    assert Tokens(state).person(token) is None
