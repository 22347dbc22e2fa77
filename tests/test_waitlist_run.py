"""A full instance as a newcomer meets it (`audiospective run --demo`, two web processes):
the browser journey to the waitlist, and a limit that holds across web processes."""

from __future__ import annotations

import re

import pytest
import requests
from conftest import RunningApp

from app.config import ROOT

DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One seat, taken by the admin (Riley) in the first test."""
    app = RunningApp(tmp_path_factory.mktemp("full") / "var",
                     {"FOUNDING_MEMBER_CAP": "1", "ADMIN_SPOTIFY_IDS": "sim-acct-riley"}, web_workers=2)
    yield app
    assert app.stop() == 0, app.output()


@pytest.mark.browser
def test_a_full_instance_sends_a_newcomer_to_the_waitlist(full, browser):
    problems: list[str] = []

    def watch(page):
        page.on("console", lambda m: problems.append(f"{m.location.get('url')}: {m.text}") if m.type == "error"
                else None)
        return page

    # The admin takes the one seat, and sees it in the admin area.
    admin_context = browser.new_context(viewport={"width": 1280, "height": 800})
    admin = watch(admin_context.new_page())
    admin.goto(full.url)
    assert "1</strong> founding-member seat left" in admin.content()
    admin.get_by_role("link", name="Sign in with Spotify").click()
    admin.get_by_label("Riley Demo").check()
    admin.get_by_role("button", name="Agree").click()
    admin.wait_for_url(f"{full.url}/dashboard")
    assert "Founding member #1" in admin.inner_text(".badge-founding")
    admin.get_by_role("link", name="Admin").click()
    admin.wait_for_url(f"{full.url}/admin/users")
    assert "Riley Demo" in admin.inner_text("table") and "admin" in admin.inner_text("table")
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    admin.screenshot(path=str(DOCS_SCREENSHOTS / "admin-users.png"), full_page=True)
    admin_context.close()

    # A newcomer: to the waitlist before Spotify, signs up, confirms from the Outbox.
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = watch(context.new_page())
    page.goto(full.url)
    page.get_by_role("link", name="Join the waitlist").click()
    page.wait_for_url(f"{full.url}/waitlist")
    page.goto(f"{full.url}/auth/login")  # straight to sign-in: the waitlist, not Spotify
    page.wait_for_url(f"{full.url}/waitlist?full=1")
    assert "all of them are taken" in page.inner_text("main")
    page.get_by_label("Email address").fill("newcomer@example.org")
    page.screenshot(path=str(DOCS_SCREENSHOTS / "waitlist.png"), full_page=True)
    page.get_by_role("button", name="Join the waitlist").click()
    page.wait_for_selector("text=Check your inbox")
    page.get_by_role("link", name="Read the message in the Outbox").click()
    page.get_by_role("link", name="Confirm your place on the Audiospective waitlist").click()
    link = page.locator("pre.mail-text a").first.get_attribute("href")
    page.goto(link.replace("http://127.0.0.1:5000", full.url) if link.startswith("http://127.0.0.1:5000") else link)
    page.wait_for_selector("text=You are on the waitlist")
    assert "#1" in page.inner_text(".big-number")
    context.close()
    assert problems == []


def test_the_sign_up_limit_holds_across_two_web_processes(full):
    """20 sign-ups per client address per hour, counted in Postgres: with every request on
    a new connection, gunicorn's two workers share them, and the limit still holds."""
    page = requests.get(f"{full.url}/waitlist", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    cookies = page.cookies
    statuses = []
    for n in range(24):
        response = requests.post(f"{full.url}/waitlist", data={"email": f"n{n}@example.org", "csrf_token": token},
                                 cookies=cookies, headers={"Connection": "close"}, allow_redirects=False, timeout=10)
        statuses.append(response.status_code)
    accepted = statuses.count(303)
    assert accepted <= 20 and statuses[-1] == 429 and set(statuses) <= {303, 429}, statuses
    assert "Retry-After" in response.headers
