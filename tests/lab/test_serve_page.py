"""serve's page in Debian's chromium (selenium), against the lab's hosts: an incident's page opened by its URL (the
login, then back there), four eyes on the page (the approval said, a second one by the same person refused and said),
the list changing live when someone else approves through the API (no reload), the diff kept once applied, a deny
from the list; the page's strict Content-Security-Policy holding all along (chromium reports no violation)."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from remediate.serve.identity import Tokens

from . import labctl, servectl
from .test_serve_payloads import SCREENSHOTS, grouped

RULES = ("rules:\n  - name: mail-not-delivered\n    match: {alertname: PostfixMailNotDelivered}\n"
         "    playbook: smtp-to-lmtp\n    approval: required\n    approvals: 2\n    max_runs_per_hour: 5\n"
         "    resolve_timeout: 5m\n")


@dataclass
class People:
    serve: servectl.Serve
    tokens: dict[str, str]  # name -> named token (role admin)

    def call(self, method: str, path: str, who: str, body: Any = None) -> tuple[int, Any]:
        """The API as `who` (their own token: the shared one opens the webhook alone)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(servectl.URL + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.tokens[who]}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def incident(self, number: int) -> dict[str, Any]:
        status, found = self.call("GET", f"/incidents/{number}", "frank")
        assert status == 200 and isinstance(found, dict), found
        return found

    def incidents(self) -> list[dict[str, Any]]:
        status, found = self.call("GET", "/incidents", "frank")
        assert status == 200 and isinstance(found, list), found
        return found


@pytest.fixture
def people(broken_lab: None, tmp_path: Any) -> Iterator[People]:
    password = (labctl.KEYS / "ops-hard.password").read_text().strip()
    state = tmp_path / "serve"
    state.mkdir(mode=0o700)
    tokens = Tokens(state)
    made = {name: tokens.add(name, ["admin"]) for name in ("erin", "frank")}
    serve = servectl.Serve(RULES, state, env={"REMEDIATE_BECOME_PASSWORD": password}).start()
    try:
        status, answer = serve.call("POST", "/alertmanager", grouped())  # the webhook's shared token
        assert status == 200 and [i["new"] for i in answer["incidents"]] == [True, True, True], answer
        yield People(serve, made)
    finally:
        serve.stop()


@pytest.fixture
def chromium() -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if labctl.ci():
            pytest.fail("chromium and chromium-driver are not installed; scripts/setup installs them")
        pytest.skip("chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def test_the_incident_page_four_eyes_live_updates_and_the_kept_diff_in_chromium(people: People, chromium: Any) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    serve, driver = people.serve, chromium
    serve.wait(lambda: all(i["plan_diff"] for i in people.incidents()), 90, "three plans")
    numbers = sorted(i["id"] for i in people.incidents())
    hardened = next(i["id"] for i in people.incidents() if i["host"] == "ec2-mx-hardened")
    wait = WebDriverWait(driver, 20, ignored_exceptions=(WebDriverException,))

    def text(element_id: str) -> str:
        return str(driver.find_element(By.ID, element_id).text)

    # The incident's own URL, shared in chat: the login first, then back on that incident.
    driver.get(f"{servectl.URL}/incidents/{hardened}")
    assert "/login?next=" in driver.current_url
    driver.find_element(By.ID, "token").send_keys(people.tokens["erin"])
    driver.find_element(By.ID, "login").click()
    wait.until(lambda d: d.current_url == f"{servectl.URL}/incidents/{hardened}")
    assert text("diff-label") == "to review"
    assert "+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525" in driver.find_element(By.TAG_NAME, "body").text
    assert "2 people must approve" in text(f"progress-{hardened}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / "serve-incident-pending.png"))

    # erin approves on the page: it says so, without a reload; her second approval is refused, and said.
    driver.execute_script("window.sameDocument = true")
    driver.find_element(By.ID, f"approve-{hardened}").click()
    said = "approved by erin (session): 1 of 2 approvals; runs when one more person approves"
    wait.until(lambda d: said in text("flash"))
    assert people.incident(hardened)["state"] == "pending"
    driver.find_element(By.ID, f"approve-{hardened}").click()
    wait.until(lambda d: "refused" in text("flash"))
    assert "erin" in text("flash") and driver.execute_script("return window.sameDocument") is True

    # The list, live: frank approves through the API and the row changes with no reload; both names are shown.
    driver.get(f"{servectl.URL}/")
    driver.execute_script("window.sameDocument = true")
    status, answer = people.call("POST", f"/incidents/{hardened}/approve", "frank",
                                 {"plan_identity": people.incident(hardened)["plan_identity"]})
    assert status == 200, answer
    wait.until(lambda d: d.find_element(By.ID, f"incident-{hardened}").get_attribute("data-state") != "pending")
    approvers = driver.find_element(By.CSS_SELECTOR, f"#incident-{hardened} .approvers").text
    assert "erin (session)" in approvers and "frank (token)" in approvers, approvers
    assert driver.execute_script("return window.sameDocument") is True  # updated in place, not reloaded
    driver.save_screenshot(str(SCREENSHOTS / "serve-list-live.png"))
    ended = {"waiting_resolved", "failed", "rolled_back"}
    done = serve.wait(lambda: (lambda i: i if i["state"] in ended else None)(people.incident(hardened)), 180,
                      "the fix applied")
    assert done["state"] == "waiting_resolved", done
    wait.until(lambda d: d.find_element(By.ID, f"incident-{hardened}").get_attribute("data-state") == "waiting_resolved")
    assert driver.execute_script("return window.sameDocument") is True

    # Deny another from the list: the flash says it.
    row = driver.find_element(By.ID, f"incident-{numbers[0]}")
    row.find_element(By.NAME, "reason").send_keys("handled by hand")
    row.find_element(By.CLASS_NAME, "deny").click()
    wait.until(lambda d: d.find_element(By.ID, f"incident-{numbers[0]}").get_attribute("data-state") == "denied")
    assert "denied" in text("flash") and "handled by hand" in people.incident(numbers[0])["reason"]

    # The diff reviewed is still on the incident's page, beside what was applied.
    driver.get(f"{servectl.URL}/incidents/{hardened}")
    assert text("diff-label") == "reviewed and applied"
    assert "+      - POSTFIX_relay_transport=lmtp:[127.0.0.11]:2525" in driver.find_element(By.TAG_NAME, "body").text
    assert "step applied" in text("steps")
    assert "erin (session)" in text("approvals") and "frank (token)" in text("approvals")
    driver.save_screenshot(str(SCREENSHOTS / "serve-incident-applied.png"))
    violations = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert violations == []
