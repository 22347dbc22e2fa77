"""Sign-ins end when people end them: sign-out and "sign out everywhere" make every copy
of the session and remember cookies worthless; remember cookies change at each sign-in
and last SESSION_DAYS; a change sent by another site is refused even with a valid CSRF
token. Over real HTTP, with cookies replayed as someone who copied them would."""

from __future__ import annotations

import re
import time

import pytest
import requests

from app import create_app
from app.config import load_settings
from conftest import app_server, app_environ, callback_path, consent, http_sign_in, simulated_clock

DAY_MS = 86_400_000


@pytest.fixture
def base(app):
    server = app_server(app)
    yield server.url
    server.stop()


def csrf(browser: requests.Session, base: str, path: str = "/settings") -> str:
    return re.search(r'"X-CSRFToken": "([^"]+)"', browser.get(f"{base}{path}", timeout=10).text).group(1)


def copied(browser: requests.Session, *names: str) -> dict[str, str]:
    """The cookies someone could have copied from this browser."""
    found = {c.name: c.value for c in browser.cookies if not names or c.name in names}
    assert found and (not names or set(found) == set(names)), found
    return found


def dashboard_with(base: str, cookies: dict[str, str]) -> int:
    return requests.get(f"{base}/dashboard", cookies=cookies, allow_redirects=False, timeout=10).status_code


def test_signing_out_ends_the_sign_in_wherever_its_cookies_went(base):
    browser = http_sign_in(base)
    both, remember = copied(browser), copied(browser, "remember_token")
    assert dashboard_with(base, both) == 200 and dashboard_with(base, remember) == 200  # the copies work...

    out = browser.post(f"{base}/auth/logout", data={"csrf_token": csrf(browser, base)}, allow_redirects=False,
                       timeout=10)
    assert out.status_code == 302
    assert dashboard_with(base, both) == 302  # ...until the sign-out, everywhere
    assert dashboard_with(base, remember) == 302
    assert browser.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 302


def test_remember_cookies_change_at_each_sign_in_and_last_session_days(base, db_conn):
    first, second = http_sign_in(base), http_sign_in(base)
    tokens = [copied(b, "remember_token")["remember_token"] for b in (first, second)]
    assert tokens[0] != tokens[1]
    cookie = next(c for c in first.cookies if c.name == "remember_token")
    assert 29.9 * 86_400 < cookie.expires - time.time() <= 30 * 86_400
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert db_conn.execute("SELECT count(*) FROM user_sessions WHERE ended_at IS NULL").fetchone()[0] == 2
    # Two sign-ins, two tokens: ending one leaves the other.
    first.post(f"{base}/auth/logout", data={"csrf_token": csrf(first, base)}, timeout=10)
    assert dashboard_with(base, copied(second)) == 200


def test_a_sign_in_expires_after_session_days_whatever_the_cookie_says(base, simulator):
    browser = http_sign_in(base)
    remember = copied(browser, "remember_token")
    simulator.world.clock.advance(29 * DAY_MS)  # the app's clock is the simulator's
    assert dashboard_with(base, remember) == 200
    simulator.world.clock.advance(2 * DAY_MS)
    assert dashboard_with(base, remember) == 302
    assert browser.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 302


def test_settings_show_when_each_sign_in_was_last_seen(base, simulator, db_conn):
    browser = http_sign_in(base)
    first = db_conn.execute("SELECT last_seen_at FROM user_sessions").fetchone()[0]
    simulator.world.clock.advance(10 * 60_000)  # past the five minutes it is kept to
    assert browser.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 200
    later = db_conn.execute("SELECT last_seen_at FROM user_sessions").fetchone()[0]
    assert (later - first).total_seconds() >= 600


def test_session_days_is_a_setting(database_url, simulator):
    settings = load_settings(app_environ(database_url, simulator.url, SESSION_DAYS="2"))
    app = create_app({"TESTING": True}, settings=settings, clock=simulated_clock(simulator))
    server = app_server(app)
    try:
        cookie = next(c for c in http_sign_in(server.url).cookies if c.name == "remember_token")
        assert 1.9 * 86_400 < cookie.expires - time.time() <= 2 * 86_400
    finally:
        server.stop()
        app.extensions["database"].dispose()


def test_signing_in_again_in_the_same_browser_replaces_its_sign_in(base, db_conn):
    browser = http_sign_in(base)
    old = copied(browser, "remember_token")
    authorize = browser.get(f"{base}/auth/login?reauthorise=1", allow_redirects=False, timeout=10).headers["Location"]
    browser.get(f"{base}{callback_path(consent(authorize))}", timeout=30)
    assert db_conn.execute("SELECT count(*) FROM user_sessions WHERE ended_at IS NULL").fetchone()[0] == 1
    assert dashboard_with(base, old) == 302 and dashboard_with(base, copied(browser)) == 200


def test_sign_out_everywhere_ends_every_sign_in(base, db_conn):
    laptop, phone = http_sign_in(base), http_sign_in(base)
    other_user = http_sign_in(base, "sim-acct-sam")
    page = laptop.get(f"{base}/settings", timeout=10).text
    assert "Where you are signed in" in page and page.count("<li>") >= 2 and "(this browser)" in page
    phone_cookies = copied(phone)

    done = laptop.post(f"{base}/settings/sign-out-everywhere", data={"csrf_token": csrf(laptop, base)}, timeout=10)
    assert done.url.rstrip("/") == base and "Signed out everywhere (2 sign-ins ended)" in done.text
    assert dashboard_with(base, phone_cookies) == 302
    assert laptop.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 302
    assert other_user.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 200  # theirs only
    assert db_conn.execute("SELECT count(*) FROM user_sessions WHERE ended_at IS NULL").fetchone()[0] == 1


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},  # sandboxed frames and some redirects send this
    {"Sec-Fetch-Site": "cross-site"},
])
def test_changes_from_another_site_are_refused_even_with_a_valid_token(base, db_conn, headers):
    browser = http_sign_in(base)
    token = csrf(browser, base)
    form = {"csrf_token": token, "timezone": "Asia/Tokyo", "rank_by": "minutes"}
    refused = browser.post(f"{base}/settings", data=form, headers=headers, allow_redirects=False, timeout=10)
    assert refused.status_code == 403 and "This request came from another site" in refused.text
    htmx = browser.post(f"{base}/settings/timezone", data={"timezone": "Asia/Tokyo"},
                        headers={**headers, "X-CSRFToken": token, "HX-Request": "true"}, timeout=10)
    assert htmx.status_code == 403
    out = browser.post(f"{base}/auth/logout", data={"csrf_token": token}, headers=headers, allow_redirects=False,
                       timeout=10)
    assert out.status_code == 403
    assert db_conn.execute("SELECT timezone FROM users").fetchone()[0] == "UTC"  # nothing changed
    assert browser.get(f"{base}/dashboard", allow_redirects=False, timeout=10).status_code == 200  # still signed in

    same_site = browser.post(f"{base}/settings", data=form, headers={"Origin": base, "Sec-Fetch-Site": "same-origin"},
                             allow_redirects=False, timeout=10)
    assert same_site.status_code == 303
    assert db_conn.execute("SELECT timezone FROM users").fetchone()[0] == "Asia/Tokyo"
