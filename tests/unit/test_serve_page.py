"""serve's page, in process: a page per incident at /incidents/ID for a browser and JSON for an API client at the
same URL, the login's way back there (and the open redirects it refuses), the reviewed diff kept after approval with
the verified approver named, how far the approvals are, and the page's strict Content-Security-Policy."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from remediate.serve import pages, views
from remediate.serve.identity import Tokens
from remediate.serve.store import Incident

from .test_serve import Serve, alert, fake_host, make, person_token

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # as chromium sends it


@dataclass
class Page:
    serve: Serve
    client: TestClient
    erin: str  # erin's named token (role admin)

    def login(self, token: str | None = None, **fields: str) -> Any:
        return self.client.post("/login", data={"token": token or self.erin, **fields}, follow_redirects=False)

    def pending(self) -> int:
        number: int = self.serve.post(alert())[0]["id"]
        assert self.serve.engine.get(number).plan_diff
        return number


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    # no test here ends an incident, so nothing is notified: the hook's address is never called
    serve = make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, "http://127.0.0.19:9/hook")
    yield Page(serve, serve.client, person_token(Tokens(serve.db.parent), "erin"))
    serve.engine.stop()


def csrf(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


def test_one_url_is_a_page_for_a_browser_and_json_for_an_api_client(page: Page) -> None:
    number = page.pending()
    bearer = {"Authorization": f"Bearer {page.erin}"}
    for accept in ("application/json", "*/*", "text/html"):  # a bearer client gets JSON whatever it accepts
        answer = page.client.get(f"/incidents/{number}", headers={**bearer, "Accept": accept})
        assert answer.status_code == 200 and answer.json()["id"] == number, (accept, answer.text[:200])
        assert answer.headers["vary"] == "Accept"  # a cache must not hand the JSON to a browser, nor the reverse
    assert page.login().status_code == 303
    html = page.client.get(f"/incidents/{number}", headers=HTML)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert f"Incident {number}: AppBroken on h1" in html.text and "+fixed" in html.text
    assert html.headers["vary"] == "Accept"
    # the session is the page's: an API request with it (asking for JSON) still wants a bearer token
    assert page.client.get(f"/incidents/{number}", headers={"Accept": "application/json"}).status_code == 401
    assert page.client.get("/incidents/999", headers=HTML).status_code == 404


def test_a_browser_not_logged_in_is_sent_to_the_login_and_back_to_the_incident(page: Page) -> None:
    number = page.pending()
    went = page.client.get(f"/incidents/{number}", headers=HTML, follow_redirects=False)
    assert went.status_code == 303 and went.headers["location"] == f"/login?next=%2Fincidents%2F{number}"
    assert page.client.get(f"/incidents/{number}", follow_redirects=False).status_code == 401  # an API client: JSON
    form = page.client.get(went.headers["location"])
    assert f'name="next" value="/incidents/{number}"' in form.text
    back = page.login(next=f"/incidents/{number}")
    assert back.status_code == 303 and back.headers["location"] == f"/incidents/{number}"
    assert page.client.get(back.headers["location"], headers=HTML).status_code == 200


@pytest.mark.parametrize("elsewhere", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil",
                                       "javascript:alert(1)", "/ok\r\nSet-Cookie: x=1", "/ok\tx", "/\u20ac", ""])
def test_the_login_goes_back_only_to_a_path_of_its_own(page: Page, elsewhere: str) -> None:
    assert 'name="next"' not in page.client.get("/login", params={"next": elsewhere}).text
    went = page.login(next=elsewhere)
    assert went.status_code == 303 and went.headers["location"] == "/"


def test_a_wrong_token_keeps_the_way_back(page: Page) -> None:
    refused = page.login("rmt_wrong", next="/incidents/4")
    assert refused.status_code == 401 and 'name="next" value="/incidents/4"' in refused.text


def test_the_reviewed_diff_stays_after_approval_beside_the_steps_applied_and_who_approved(page: Page) -> None:
    number = page.pending()
    page.login()
    before = page.client.get(f"/incidents/{number}", headers=HTML).text
    assert "to review" in before and f'id="approve-{number}"' in before
    identity = page.serve.incident(number)["plan_identity"]
    assert f'name="plan_identity" value="{identity}"' in before  # what the person reviewed is what they approve
    done = page.client.post(f"/incidents/{number}/approve", data={"csrf": csrf(before), "plan_identity": identity},
                            follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/incidents/{number}", done.text
    page.serve.engine.idle()
    after = page.client.get(f"/incidents/{number}", headers=HTML).text
    assert page.serve.incident(number)["state"] == "waiting_resolved"
    assert "+fixed" in after and views.APPLIED in after and f'id="approve-{number}"' not in after
    assert re.search(r"<b>step applied</b>\s*conf", after)
    assert re.search(r'class="approver">erin \(session\)<', after), after
    listed = page.client.get("/").text
    assert re.search(rf'id="incident-{number}"[\s\S]*class="approver">erin \(session\)<', listed)
    assert f"diff: {views.APPLIED}" in listed and "someone" not in listed


def test_a_stale_plan_is_refused_not_applied(page: Page) -> None:
    number = page.pending()
    page.login()
    html = page.client.get(f"/incidents/{number}", headers=HTML).text
    refused = page.client.post(f"/incidents/{number}/approve", data={"csrf": csrf(html), "plan_identity": "0" * 64})
    assert refused.status_code == 409 and "not the one you approved" in refused.json()["error"]
    assert page.serve.incident(number)["state"] == "pending"


def test_every_page_has_a_strict_csp_and_nothing_inline(page: Page) -> None:
    number = page.pending()
    answers = [page.client.get("/login")]
    page.login()
    answers += [page.client.get("/"), page.client.get(f"/incidents/{number}", headers=HTML)]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "<style" not in answer.text and not re.search(r"\s(style|on\w+)=", answer.text, re.IGNORECASE)
        assert all('src="/static/' in tag for tag in re.findall(r"<script[^>]*>", answer.text))
    script = page.client.get("/static/live.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text
    assert page.client.get("/static/page.css").headers["content-type"].startswith("text/css")
    assert page.client.get("/static/..%2fpages.py").status_code == 404


def incident(approvals: list[dict[str, Any]], state: str = "pending", **fields: Any) -> Incident:
    plan = {"plans": {"h1": {"identity": "p1"}}}
    return Incident(id=7, fingerprint="f", starts_at="s", alertname="A", host="h1", rule="r", playbook="b", labels={},
                    state=state, reason=None, plan_diff="+x", plan=plan, run_id=None,  # type: ignore[arg-type]
                    approved_by=None, created=1.0, updated=2.0, started=None, deadline=None, alert_resolved=None,
                    approvals=approvals, **fields)


def test_the_progress_says_how_many_approvals_and_drops_expired_or_other_plans() -> None:
    now = time.time()
    alice = {"by": "alice", "via": "session", "at": now - 10, "plan": "p1"}
    assert views.view(incident([]), needed=2).progress == "waiting for approval: 2 people must approve"
    shown = views.view(incident([alice]), needed=2, expires=3600, now=now)
    assert shown.progress == "approved by alice (session): 1 of 2 approvals; runs when one more person approves"
    assert views.view(incident([alice]), needed=3, expires=3600, now=now).progress.endswith("2 more people approve")
    old = {**alice, "at": now - 7200}
    other = {**alice, "by": "bob", "plan": "p0"}
    shown = views.view(incident([old, other]), needed=2, expires=3600, now=now)
    assert shown.progress == "waiting for approval: 2 people must approve"
    assert [a.note for a in shown.approvals] == ["expired", "another plan than the one held now"]
    assert views.view(incident([alice], "denied")).label == views.NOT_APPLIED
    step = [{"at": now, "what": "step applied", "detail": "conf"}]
    assert views.view(incident([alice], "running", history=step)).label == "reviewed, being applied"
    assert views.view(incident([alice], "failed", history=step)).label == views.APPLIED  # applied, then it failed
    assert views.view(incident([alice], "rolled_back", history=step)).label == f"{views.APPLIED}, then rolled back"
    assert views.view(incident([alice], "failed")).label == views.NOT_APPLIED


def test_the_page_is_json_free_for_browsers_only_when_they_ask_for_html_first() -> None:
    def scope(**headers: str) -> dict[str, Any]:
        return {"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}

    assert pages.browser(scope(accept=HTML["Accept"]))
    assert not pages.browser(scope(accept=HTML["Accept"], authorization="Bearer rmt_x"))
    assert not pages.browser(scope(accept="application/json, text/html"))
    assert not pages.browser(scope(accept="text/html;q=0.5, application/json"))
    assert not pages.browser(scope(accept="*/*")) and not pages.browser(scope())


def test_with_four_eyes_the_page_says_one_of_two_and_who_must_still_approve(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_TOKEN", "notify-secret")
    serve = make(tmp_path, {"h1": fake_host("h1"), "h2": fake_host("h2")}, "http://127.0.0.19:9/hook", approvals=2)
    try:
        page = Page(serve, serve.client, person_token(Tokens(serve.db.parent), "erin"))
        number = page.pending()
        page.login()
        html = page.client.get(f"/incidents/{number}", headers=HTML).text
        assert "waiting for approval: 2 people must approve" in html and "(2 people must approve)" in html
        done = page.client.post(f"/incidents/{number}/approve", data={
            "csrf": csrf(html), "plan_identity": serve.incident(number)["plan_identity"]}, follow_redirects=False)
        assert done.status_code == 303
        serve.engine.idle()
        html = page.client.get(f"/incidents/{number}", headers=HTML).text
        said = "approved by erin (session): 1 of 2 approvals; runs when one more person approves"
        assert f'id="progress-{number}">{said}<' in html and serve.incident(number)["state"] == "pending"
        assert said in page.client.get("/").text
        assert serve.act(number, "approve", who="bob").status_code == 200
        html = page.client.get(f"/incidents/{number}", headers=HTML).text
        assert "approved by erin (session), bob (token); waiting resolved" in html and views.APPLIED in html
    finally:
        serve.engine.stop()


def test_the_incident_page_shows_the_evidence_and_the_history_oldest_first(page: Page) -> None:
    number = page.pending()
    store = page.serve.engine.store
    store.log(number, "note", "<b>not markup</b>")
    store.transition(number, ["pending"], "denied", "denied", "by test",
                     evidence={"webhook": "resolved at 10:00", "api": {"active": False}})
    page.login()
    html = page.client.get(f"/incidents/{number}", headers=HTML).text
    assert 'id="evidence"' in html and "resolved at 10:00" in html and '{"active": false}' in html
    whats = re.findall(r'<td class="when">[^<]*</td><td><b>([^<]*)</b>', html)
    assert whats[:3] == ["received", "matched", "planned"] and whats[-2:] == ["note", "denied"]
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html and views.NOT_APPLIED in html


def test_the_rule_is_found_on_either_backend_for_how_many_must_approve() -> None:
    class Rule:
        approvals, approval_expires = 3, 60.0

    class Rules:
        def named(self, name: str) -> Rule | None:
            return Rule() if name == "r" else None

    temporal_like = type("Backend", (), {"rules": Rules()})()
    embedded_like = type("Backend", (), {"engine": temporal_like})()
    for backend in (temporal_like, embedded_like):
        assert pages._view(backend, incident([])).needed == 3
    assert pages._view(object(), incident([])).needed == 1  # a backend that keeps no rules: one approver assumed



def test_the_pages_own_files_go_into_the_wheel() -> None:
    """A static file pyproject's package-data leaves out works from a checkout and is a 404 in every real install."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    wanted = patterns.get("remediate.serve", [])
    for path in (root / "remediate" / "serve" / "static").iterdir():
        name = str(path.relative_to(root / "remediate" / "serve"))
        assert any(fnmatch.fnmatch(name, p) for p in wanted), f'add "static/*" to remediate.serve\'s package-data: {name}'


def test_the_pages_script_sending_a_form_gets_json_not_a_redirect_it_could_not_follow(page: Page) -> None:
    """live.js sends the approve form with fetch, asking for JSON: a redirect to /incidents/N would lead it to the JSON
    route, which wants a bearer token, and the page would say "refused" for an approval that was taken."""
    number = page.pending()
    page.login()
    html = page.client.get(f"/incidents/{number}", headers=HTML).text
    done = page.client.post(f"/incidents/{number}/approve", follow_redirects=False,
                            data={"csrf": csrf(html), "plan_identity": page.serve.incident(number)["plan_identity"]},
                            headers={"Accept": "application/json"})
    assert done.status_code == 200 and done.json()["id"] == number, done.text

