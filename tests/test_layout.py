"""Names as long as anyone can make them stay inside the page, in Chromium: a 10,000
character track name (no spaces), album and artist names of 2,000, on every page that
shows them. The full name stays readable (wrapped), never cut from the document."""

from __future__ import annotations

import pytest

from conftest import app_server, http_sign_in

LONG_TRACK = "Ω" + "x" * 9_998 + "Ω"
LONG_ALBUM = "A" * 2_000
LONG_ARTIST = "B" * 2_000


@pytest.fixture
def served(app, simulator, db_conn):
    """The app over HTTP, Riley signed in, with plays of a track whose names are absurdly long."""
    server = app_server(app)
    browser = http_sign_in(server.url)
    user_id = db_conn.execute("SELECT id FROM users").fetchone()[0]
    artist = db_conn.execute("INSERT INTO artists (name) VALUES (%s) RETURNING id", (LONG_ARTIST,)).fetchone()[0]
    album = db_conn.execute("INSERT INTO albums (name, artist_name) VALUES (%s, %s) RETURNING id",
                            (LONG_ALBUM, LONG_ARTIST)).fetchone()[0]
    track = db_conn.execute("INSERT INTO tracks (name, artist_name, album_id) VALUES (%s, %s, %s) RETURNING id",
                            (LONG_TRACK, LONG_ARTIST, album)).fetchone()[0]
    db_conn.execute("INSERT INTO track_artists (track_id, position, artist_id) VALUES (%s, 0, %s)", (track, artist))
    db_conn.execute("INSERT INTO plays (played_at, user_id, track_id, ms_played, source) "
                    "SELECT now() - g * interval '1 hour', %s, %s, 200000, 2 FROM generate_series(1, 5) g",
                    (user_id, track))
    yield server.url, browser, {"track": track, "album": album, "artist": artist}
    server.stop()


@pytest.mark.browser
def test_long_names_wrap_inside_the_page(served, browser):
    base, session, ids = served
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": c.name, "value": c.value, "url": base} for c in session.cookies])
    page = context.new_page()
    try:
        pages = [f"/track/{ids['track']}", f"/album/{ids['album']}", f"/artist/{ids['artist']}",
                 "/dashboard?period=7d", "/history", f"/history?q={'x' * 50}"]
        for path in pages:
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")  # the dashboard's panels come over HTMX
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1280, f"{path} is {width} px wide"
            assert LONG_TRACK in page.content() or "track" not in path, path  # wrapped, not cut
        page.goto(f"{base}/dashboard?period=7d")
        page.wait_for_selector("#panel-top-tracks ol.ranked li")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        assert LONG_TRACK in page.inner_text("#panel-top-tracks")
    finally:
        context.close()
