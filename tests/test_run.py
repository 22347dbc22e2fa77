"""`audiospective run`: the Quick start's run command, as a newcomer meets it.

A fresh data directory (so the embedded Postgres is created from nothing), demo mode
with the simulator, web and worker; then the browser journey through sign-in.
"""

from __future__ import annotations

import time

import pytest
import requests

from app.config import ROOT
from conftest import WATCH_CSP, RunningApp, cli, wait_for

SCREENSHOTS = ROOT / "test-artifacts"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"  # committed: the README shows them


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("run") / "var"
    app = RunningApp(data_dir)
    yield app
    assert app.stop() == 0, app.output()
    # The embedded Postgres it started is stopped with it.
    assert not (data_dir / "pg" / "postmaster.pid").exists(), app.output()


def test_run_serves_healthz_with_a_worker_within_a_minute(running):
    print(f"audiospective run: /healthz 200 after {running.startup_s:.1f} s")
    assert running.startup_s < 60
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = requests.get(f"{running.url}/healthz", timeout=5).json()
        if health["worker"]["alive"]:
            break
        time.sleep(0.5)
    assert health["status"] == "ok" and health["database"] == "ok" and health["worker"]["alive"] == 1
    # `run` prints its banner after its own /healthz check, which may come after ours.
    wait_for(lambda: "Press Ctrl-C to stop." in running.output(), timeout=30, message="the run banner")
    assert f"Audiospective is running: {running.url}" in running.output()
    assert "Database: embedded Postgres in" in running.output()


@pytest.mark.browser
def test_demo_journey_in_a_real_browser(running, page):
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.location.get('url')}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(running.url)
    assert "Demo mode" in page.inner_text(".demo-banner")
    page.get_by_role("link", name="Sign in with Spotify").click()

    page.wait_for_url(f"{running.simulator_url}/authorize*")
    assert page.text_content(".badge") == "Spotify simulator"
    page.get_by_label("Sam Binge").check()
    page.get_by_role("button", name="Agree").click()

    page.wait_for_url(f"{running.url}/dashboard")
    assert page.inner_text("h1") == "Hello, Sam Binge"
    assert page.get_by_role("button", name="Sign out").is_visible()
    assert "No plays archived yet" in page.inner_text("#archive-health")

    # Poll now (the worker would within a minute); the panel refreshes itself over HTMX.
    archive = cli("archive", "--user", "sim-acct-sam", env={
        "AUDIOSPECTIVE_DATA_DIR": str(running.data_dir), "SPOTIFY_ACCOUNTS_URL": running.simulator_url,
        "SPOTIFY_API_URL": running.simulator_url})
    assert archive.returncode == 0, archive.stdout + archive.stderr
    page.wait_for_selector("#archive-health .big-number", timeout=45_000)
    assert page.inner_text("#archive-health .big-number") == "50"
    assert page.url == f"{running.url}/dashboard"  # no page load: the fragment was swapped in
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "demo-dashboard.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{running.url}/")
    assert page.get_by_role("link", name="Sign in with Spotify").is_visible()
    # Console errors include CSP violations: a strict policy must not break the pages.
    assert problems == []


def sign_in_as(page, running, listener: str) -> list[str]:
    """Sign in through the simulator's consent page; returns the list console errors go to."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.location.get('url')}: {m.text}") if m.type == "error" else None)
    page.goto(running.url)
    page.get_by_role("link", name="Sign in with Spotify").click()
    page.get_by_label(listener).check()
    page.get_by_role("button", name="Agree").click()
    page.wait_for_url(f"{running.url}/dashboard")
    return problems


@pytest.mark.browser
def test_import_journey_in_a_real_browser(running, page, tmp_path):
    # Not Riley: the dashboard journey needs Riley's first visit (time zone detection).
    problems = sign_in_as(page, running, "Max Skips")

    page.get_by_role("link", name="Import").first.click()
    page.wait_for_url(f"{running.url}/import")
    # Demo mode offers an export of the simulated listening; fetch it as a user would.
    export_url = page.get_by_role("link", name="a data export of your simulated listening").get_attribute("href")
    export = tmp_path / "my_spotify_data.zip"
    export.write_bytes(requests.get(export_url, timeout=30).content)

    page.set_input_files("input[type=file]", str(export))
    assert "my_spotify_data.zip" in page.inner_text("[data-chosen-files]")
    page.get_by_role("button", name="Import").click()
    page.wait_for_url(f"{running.url}/import/*")
    # The worker of `audiospective run` picks the job up; the page follows it by itself.
    page.wait_for_selector("text=plays added to your archive", timeout=60_000)
    assert "Every row is accounted for" in page.inner_text("#import-progress")
    rows = page.inner_text("table.report tfoot td")
    assert int(rows.replace(",", "")) > 0
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "import-report.png"), full_page=True)
    assert problems == []


@pytest.mark.browser
def test_dashboard_journey_in_a_real_browser(running, browser, tmp_path):
    """Riley imports a year of (simulated) history, then browses it: periods swap without a
    page load and keep the URL and the back button right; the history scrolls on; a top
    list leads to an entity page. The browser's time zone is picked up on the first visit."""
    export = tmp_path / "year.zip"
    now_ms = requests.get(f"{running.simulator_url}/_sim/clock", timeout=10).json()["now_ms"]
    export.write_bytes(requests.get(f"{running.simulator_url}/_sim/export/sim-acct-riley.zip", timeout=60, params={
        "from_ms": now_ms - 365 * 86_400_000, "to_ms": now_ms}).content)

    context = browser.new_context(timezone_id="Europe/Berlin", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = sign_in_as(page, running, "Riley Demo")
    imported = cli("import", "--user", "sim-acct-riley", str(export), env={
        "AUDIOSPECTIVE_DATA_DIR": str(running.data_dir), "SPOTIFY_ACCOUNTS_URL": running.simulator_url,
        "SPOTIFY_API_URL": running.simulator_url})
    assert imported.returncode == 0, imported.stdout + imported.stderr
    # Cover art and artist pictures now rather than over the next minutes.
    enriched = cli("enrich", env={"AUDIOSPECTIVE_DATA_DIR": str(running.data_dir),
                                  "SPOTIFY_ACCOUNTS_URL": running.simulator_url, "SPOTIFY_API_URL": running.simulator_url})
    assert enriched.returncode == 0 and '"tracks"' in enriched.stdout, enriched.stdout + enriched.stderr

    page.goto(f"{running.url}/dashboard?period=90d")
    page.wait_for_selector("text=Times are in Europe/Berlin")  # detected, then the page reloaded once
    page.wait_for_selector("#panel-top-tracks ol.ranked li")
    page.wait_for_selector("#panel-clock svg")
    page.evaluate("window.__sameDocument = true")  # survives only if no full page load happens

    page.get_by_role("link", name="Last 7 days", exact=True).click()
    page.wait_for_url(f"{running.url}/dashboard?period=7d")
    page.wait_for_selector("h2.period-heading:text-is('Last 7 days')")
    page.wait_for_selector("#panel-totals dl.totals")
    assert page.evaluate("window.__sameDocument") is True
    page.go_back()
    page.wait_for_url(f"{running.url}/dashboard?period=90d")
    page.wait_for_selector("h2.period-heading:text-is('Last 90 days')")

    page.goto(f"{running.url}/dashboard?period=this_year")
    page.wait_for_selector("#panel-top-artists ol.ranked li")
    page.wait_for_selector("#panel-timeline svg")
    page.wait_for_selector("#panel-habits dl")
    page.wait_for_load_state("networkidle")
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_SCREENSHOTS / "dashboard.png"), full_page=True)

    first = page.locator("#panel-top-tracks ol.ranked li .ranked-name a").first
    name = first.inner_text()
    first.click()
    page.wait_for_url(f"{running.url}/track/*")
    assert page.inner_text("h1") == name and "Plays over time" in page.content()

    page.goto(f"{running.url}/history")
    assert page.locator("li.play").count() == 50
    page.locator("li.more").scroll_into_view_if_needed()
    page.locator("li.play").nth(50).wait_for(timeout=15_000)  # the 51st row: the next page arrived
    assert page.locator("li.day-separator").count() >= 2
    assert problems == []
    context.close()


@pytest.mark.browser
def test_export_mail_and_share_journey_in_a_real_browser(running, browser, page, tmp_path):
    """A CSV export asked for on the Export page, followed live, announced in the Outbox
    (no mail server in demo mode), downloaded through the mailed link; then a share made
    and opened by someone who is not signed in."""
    import csv

    problems = sign_in_as(page, running, "Jo Light")
    # The first poll comes within seconds of signing in; the panel itself refreshes only
    # every 30 s, so ask for the page again until it shows the plays.
    deadline = time.monotonic() + 90
    while not page.locator("#archive-health .big-number").count() and time.monotonic() < deadline:
        page.wait_for_timeout(2000)
        page.reload()
    plays = int(page.inner_text("#archive-health .big-number").replace(",", ""))

    # A confirmed address, through the Outbox.
    page.goto(f"{running.url}/settings")
    page.get_by_label("Address").fill("jo@example.org")
    page.get_by_role("button", name="Add").click()
    page.wait_for_selector("text=We sent a confirmation link to jo@example.org")
    page.get_by_role("link", name="Outbox").first.click()
    page.get_by_role("link", name="Confirm your email address").first.click()
    page.locator("pre.mail-text a").first.click()
    page.wait_for_selector("text=jo@example.org is confirmed")

    # The export, followed live on the page (HTMX polls its row) until it is ready.
    page.get_by_role("link", name="Export").first.click()
    page.get_by_label("CSV (spreadsheets)").check()
    page.get_by_role("button", name="Export", exact=True).click()
    page.wait_for_url(f"{running.url}/export")
    row = page.locator("table.exports tbody tr").first
    row.get_by_role("link", name="Download").wait_for(timeout=60_000)
    import re

    written = int(re.search(r"Ready: ([\d,]+) plays", row.inner_text()).group(1).replace(",", ""))
    assert written >= plays  # a poll may have added some since

    # The mail that says so, and its link: straight to the file, for its owner.
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Outbox").first.click()
    page.get_by_role("link", name="Your Audiospective export is ready").first.click()
    with page.expect_download() as download:
        page.locator("pre.mail-text a[href*='/download']").first.click()
    saved = tmp_path / "export.csv"
    download.value.save_as(saved)
    with open(saved, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == written and rows[0]["track"] and rows[0]["played_at_utc"].endswith("Z")

    # A share, opened in a fresh browser context with no sign-in.
    page.get_by_role("link", name="Share").first.click()
    page.get_by_label("Period").select_option("all")
    page.get_by_role("button", name="Make the link").click()
    link = page.locator(".share-item a[href*='/s/']").first.get_attribute("href")
    stranger = browser.new_context()
    visitor = stranger.new_page()
    visitor_problems: list[str] = []
    visitor.on("console", lambda m: visitor_problems.append(m.text) if m.type == "error" else None)
    visitor.goto(f"{running.url}{link}")
    assert visitor.locator("#panel-totals").is_visible() and visitor.locator("#panel-top-artists").is_visible()
    shared_plays = int(visitor.locator("#panel-totals dd").first.inner_text().replace(",", ""))
    assert shared_plays >= written  # the plays at the moment the share was made
    assert visitor.get_by_role("button", name="Sign out").count() == 0
    assert visitor.locator("#panel-habits").count() == 0  # not chosen
    stranger.close()
    assert problems == [] and visitor_problems == []


@pytest.mark.browser
def test_hostile_names_run_no_script_and_break_no_layout_in_a_real_browser(running, browser, tmp_path):
    """Names that are HTML (a script tag, an attribute breakout), bidirectional and
    zero-width characters and a 300-character word, imported as plays and then shown on
    every page that lists or names them, panels swapped in by HTMX included: in Chromium no
    script runs (no dialog), the Content Security Policy reports no violation (it would
    block an inline handler that escaping let through, and say so), the payloads read as
    text, and no page grows wider than the window."""
    import json
    import zipfile

    from test_exports import HOSTILE

    names = [*HOSTILE, "\u202eevil\u202c \u200bzero\u200dwidth", "W" * 300]
    now_ms = requests.get(f"{running.simulator_url}/_sim/clock", timeout=10).json()["now_ms"]
    # Forty plays of each, a minute apart and the latest of all: the names top the charts and
    # fill the first page of history whatever else this listener has played.
    rows = [{"endTime": time.strftime("%Y-%m-%d %H:%M", time.gmtime((now_ms - (k * len(names) + n + 1) * 60_000)
                                                                      / 1000)),
             "artistName": name, "trackName": name, "msPlayed": 200_000}
            for k in range(40) for n, name in enumerate(names)]
    export = tmp_path / "hostile.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("Spotify Account Data/StreamingHistory_music_0.json", json.dumps(rows))

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    problems = sign_in_as(page, running, "Sam Binge")
    imported = cli("import", "--user", "sim-acct-sam", str(export), env={
        "AUDIOSPECTIVE_DATA_DIR": str(running.data_dir), "SPOTIFY_ACCOUNTS_URL": running.simulator_url,
        "SPOTIFY_API_URL": running.simulator_url})
    assert imported.returncode == 0 and f"Imported {len(rows)} of {len(rows)} rows" in imported.stdout, \
        imported.stdout + imported.stderr

    def visit(path: str) -> str:
        page.goto(f"{running.url}{path}")
        page.wait_for_load_state("networkidle")  # HTMX panels and fragments in place
        assert page.evaluate("window.__csp") == [], path
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
        return page.inner_text("body")

    pages = ["/dashboard?period=7d", "/dashboard?period=all", "/history", "/history?q=script", "/history?q=img",
             "/report/preview", "/settings", "/import", "/export"]
    texts = {path: visit(path) for path in pages}
    for payload in ("<script>alert('xss')</script>", '"><img src=x onerror=alert(1)>'):
        assert payload in texts["/history"] and payload in texts["/dashboard?period=7d"]
    assert "<script>alert('xss')</script>" in texts["/history?q=script"]
    # Every entity page a hostile play links to.
    page.goto(f"{running.url}/history?q=xss")
    links = page.locator("li.play a[href^='/track/'], li.play a[href^='/artist/']")
    entities = {a.get_attribute("href") for a in links.all()}
    assert len(entities) >= 2
    for href in sorted(entities):
        assert "<script>alert('xss')</script>" in visit(href)
    # A share of the week, as a stranger opens it.
    page.goto(f"{running.url}/shares")
    page.get_by_label("Period").select_option("7d")
    page.get_by_role("button", name="Make the link").click()
    link = page.locator(".share-item a[href*='/s/']").first.get_attribute("href")
    assert "<script>alert('xss')</script>" in visit(link)
    print(f"hostile names: {len(pages) + len(entities) + 1} pages in Chromium, 0 dialogs, 0 CSP violations")
    assert dialogs == [] and problems == []
    context.close()
