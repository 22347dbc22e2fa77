"""Dashboard, entity pages, history and settings over HTTP (Flask client, real Postgres)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from app.archival.poll import Archivist, poll_user
from conftest import app_server, add_users, csrf_token, freeze, http_sign_in, sign_in

PANELS = ("totals", "top-tracks", "top-artists", "top-albums", "clock", "timeline", "discoveries", "habits", "genres",
          "podcasts")


@pytest.fixture
def two_users(app, simulator, client, db_conn):
    """Sam (signed in, in the client) and Riley, each with a poll's worth of plays."""
    world = simulator.world
    world.config.access_token_ttl_s = 400 * 86_400
    now = freeze(simulator, int(datetime(2026, 11, 20, 18, tzinfo=timezone.utc).timestamp() * 1000))
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])
    archivist = Archivist.from_app(app)
    for hours in (30, 20, 10, 0):
        freeze(simulator, now - hours * 3_600_000)
        for user_id in users.values():
            poll_user(archivist, user_id)
    sign_in(client, "sim-acct-sam")
    db_conn.execute("UPDATE users SET preferences = '{\"timezone_confirmed\": true}'")
    return users


def only_in(db_conn, mine: int, theirs: int) -> list[int]:
    """Ids of tracks only `theirs` has played (names can repeat across tracks; ids cannot)."""
    return [r[0] for r in db_conn.execute("""
        SELECT o.track_id FROM track_totals o WHERE o.user_id = %s
           AND NOT EXISTS (SELECT 1 FROM track_totals m WHERE m.user_id = %s AND m.track_id = o.track_id)
    """, (theirs, mine))]


def test_dashboard_has_every_panel_as_its_own_fragment(client, two_users):
    page = client.get("/dashboard?period=7d").get_data(as_text=True)
    for name in PANELS:
        assert f'hx-get="/dashboard/panel/{name}?period=7d' in page
    assert 'aria-current="true"' in page and "Last 7 days" in page
    for period in ("today", "7d", "30d", "90d", "this_year", "last_year", "all"):
        for name in PANELS:
            response = client.get(f"/dashboard/panel/{name}?period={period}")
            assert response.status_code == 200, (name, period)
            assert f'id="panel-{name}"' in response.get_data(as_text=True)
    totals = client.get("/dashboard/panel/totals?period=7d").get_data(as_text=True)
    assert re.search(r"<dt>Plays</dt><dd>\d", totals)
    assert "counts the track's full length" in totals  # polled plays: listening time is estimated
    clock = client.get("/dashboard/panel/clock?period=7d").get_data(as_text=True)
    assert "<svg" in clock and "<table" in clock and "Plays by hour of day" in clock


def test_top_lists_link_to_our_pages_and_to_spotify(client, two_users):
    html = client.get("/dashboard/panel/top-artists?period=7d&rank=minutes").get_data(as_text=True)
    assert re.search(r'aria-pressed="true"[^>]*>By minutes', html)
    assert re.search(r'href="/artist/\d+"', html) and "https://open.spotify.com/artist/" in html
    tracks = client.get("/dashboard/panel/top-tracks?period=7d").get_data(as_text=True)
    assert re.search(r'href="/track/\d+"', tracks) and "https://open.spotify.com/track/" in tracks


def test_a_custom_range_and_a_bad_one(client, two_users):
    good = client.get("/dashboard/stats?period=custom&from=2026-11-19&to=2026-11-20").get_data(as_text=True)
    assert "19 Nov 2026 – 20 Nov 2026" in good
    bad = client.get("/dashboard/stats?period=custom&from=nonsense&to=").get_data(as_text=True)
    assert "Choose a start and an end date." in bad and "Showing last 30 days instead" in bad


def test_nobody_sees_another_users_plays(app, client, two_users, db_conn):
    sam, riley = two_users["sim-acct-sam"], two_users["sim-acct-riley"]
    theirs = only_in(db_conn, sam, riley)
    assert theirs, "the fixture gives Riley tracks Sam never played"
    pages = [client.get(f"/dashboard/panel/{name}?period={p}").get_data(as_text=True)
             for name in PANELS for p in ("7d", "all")]
    pages += [client.get("/dashboard?period=all").get_data(as_text=True)]
    cursor = None
    while True:  # the whole history, and searches for Riley's tracks' names
        page = client.get("/history/more", query_string={"cursor": cursor} if cursor else {}).get_data(as_text=True)
        pages.append(page)
        match = re.search(r'cursor=([0-9.]+)', page)
        if not match:
            break
        cursor = match.group(1)
    names = dict(db_conn.execute("SELECT id, name FROM tracks WHERE id = ANY(%s)", (theirs,)).fetchall())
    pages += [client.get("/history", query_string={"q": name}).get_data(as_text=True) for name in names.values()]
    for track_id in theirs:
        assert not any(f'href="/track/{track_id}"' in page for page in pages), track_id
        assert client.get(f"/track/{track_id}").status_code == 404
    assert any('href="/track/' in page for page in pages)  # the check looks at real links


def test_entity_pages(client, two_users, db_conn):
    sam = two_users["sim-acct-sam"]
    track_id, plays = db_conn.execute("SELECT track_id, plays FROM track_totals WHERE user_id = %s "
                                      "ORDER BY plays DESC, track_id LIMIT 1", (sam,)).fetchone()
    page = client.get(f"/track/{track_id}").get_data(as_text=True)
    assert f"<dt>Plays</dt><dd>{plays:,}</dd>" in page and "<dd>#1 of" in page and "Open on Spotify" in page
    artist_id = db_conn.execute("SELECT artist_id FROM track_artists WHERE track_id = %s AND position = 0",
                                (track_id,)).fetchone()[0]
    artist = client.get(f"/artist/{artist_id}").get_data(as_text=True)
    artist_plays = db_conn.execute("""SELECT sum(tt.plays) FROM track_totals tt JOIN track_artists ta
        ON ta.track_id = tt.track_id WHERE tt.user_id = %s AND ta.artist_id = %s""", (sam, artist_id)).fetchone()[0]
    assert f"<dt>Plays</dt><dd>{artist_plays:,}</dd>" in artist and "Top tracks" in artist
    album_id = db_conn.execute("SELECT album_id FROM tracks WHERE id = %s", (track_id,)).fetchone()[0]
    assert client.get(f"/album/{album_id}").status_code == 200
    assert client.get("/album/999999").status_code == 404


def test_history_pages_searches_and_jumps(client, two_users, db_conn):
    sam = two_users["sim-acct-sam"]
    total = db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (sam,)).fetchone()[0]
    assert total > 50  # more than one page
    first = client.get("/history").get_data(as_text=True)
    assert first.count('<li class="play">') == 50 and 'hx-trigger="revealed"' in first
    seen = re.findall(r'<time datetime="([^"]+)"', first)
    more_url = re.search(r'hx-get="(/history/more\?[^"]+)"', first).group(1).replace("&amp;", "&")
    while more_url:
        fragment = client.get(more_url).get_data(as_text=True)
        assert "<html" not in fragment
        seen += re.findall(r'<time datetime="([^"]+)"', fragment)
        match = re.search(r'hx-get="(/history/more\?[^"]+)"', fragment)
        more_url = match.group(1).replace("&amp;", "&") if match else None
    assert len(seen) == total and seen == sorted(seen, reverse=True)  # every play once, newest first

    name = db_conn.execute("SELECT t.name FROM track_totals tt JOIN tracks t ON t.id = tt.track_id "
                           "WHERE tt.user_id = %s ORDER BY tt.plays DESC LIMIT 1", (sam,)).fetchone()[0]
    found = client.get("/history", query_string={"q": name.upper()}).get_data(as_text=True)
    expected = db_conn.execute("SELECT count(*) FROM plays p JOIN tracks t ON t.id = p.track_id "
                               "WHERE p.user_id = %s AND t.name ILIKE %s", (sam, f"%{name}%")).fetchone()[0]
    assert found.count('<li class="play">') == min(expected, 50) > 0

    jumped = client.get("/history?date=2026-11-19").get_data(as_text=True)
    stamps = re.findall(r'<time datetime="([^"]+)"', jumped)
    assert stamps and all(datetime.fromisoformat(s) < datetime(2026, 11, 20, tzinfo=timezone.utc) for s in stamps)
    assert "That is not a date." in client.get("/history?date=yesterday").get_data(as_text=True)


def test_settings_timezone_and_ranking(client, two_users, db_conn):
    token = csrf_token(client, "/settings")
    saved = client.post("/settings", data={"csrf_token": token, "timezone": "Asia/Kathmandu", "rank_by": "minutes"})
    assert saved.status_code == 303
    assert db_conn.execute("SELECT timezone, preferences->>'rank_by' FROM users WHERE spotify_id = 'sim-acct-sam'"
                           ).fetchone() == ("Asia/Kathmandu", "minutes")
    assert "Times are in Asia/Kathmandu" in client.get("/dashboard").get_data(as_text=True)
    assert re.search(r'aria-pressed="true"[^>]*>By minutes', client.get("/dashboard/panel/top-tracks").get_data(as_text=True))
    bad = client.post("/settings", data={"csrf_token": token, "timezone": "Mars/Olympus", "rank_by": "plays"})
    assert bad.status_code == 400 and "not a time zone" in bad.get_data(as_text=True)


def test_a_zone_postgres_does_not_know_is_refused_and_nothing_changes(client, two_users, db_conn, monkeypatch):
    """Python's and Postgres's zone lists can differ; the hours rebuild is the last word."""
    monkeypatch.setattr("app.account.preferences.is_zone", lambda name: True)
    before = db_conn.execute("SELECT count(*), sum(plays) FROM listening_hours").fetchone()
    token = csrf_token(client, "/settings")
    bad = client.post("/settings", data={"csrf_token": token, "timezone": "Mars/Olympus", "rank_by": "minutes"})
    assert bad.status_code == 400 and "“Mars/Olympus” is not a time zone" in bad.get_data(as_text=True)
    assert db_conn.execute("SELECT timezone, preferences->>'rank_by' FROM users WHERE spotify_id = 'sim-acct-sam'"
                           ).fetchone() == ("UTC", None)
    assert db_conn.execute("SELECT count(*), sum(plays) FROM listening_hours").fetchone() == before
    assert client.get("/dashboard/panel/clock?period=7d").status_code == 200


def test_the_browser_time_zone_is_taken_once(client, two_users, db_conn):
    db_conn.execute("UPDATE users SET preferences = '{}', timezone = 'UTC'")
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-detect-timezone="/settings/timezone"' in page
    token = csrf_token(client, "/dashboard")
    first = client.post("/settings/timezone", data={"timezone": "America/St_Johns"}, headers={"X-CSRFToken": token})
    assert first.status_code == 200  # changed: the page reloads
    again = client.post("/settings/timezone", data={"timezone": "Europe/Paris"}, headers={"X-CSRFToken": token})
    assert again.status_code == 204
    assert db_conn.execute("SELECT timezone FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0] == \
        "America/St_Johns"
    assert "data-detect-timezone" not in client.get("/dashboard").get_data(as_text=True)


def test_cached_fragments_follow_new_plays(app, client, two_users, simulator, db_conn):
    before = client.get("/dashboard/panel/totals?period=all").get_data(as_text=True)
    assert client.get("/dashboard/panel/totals?period=all").get_data(as_text=True) == before
    cache = app.extensions["stats_cache"]
    assert cache.hits >= 1
    freeze(simulator, int(datetime(2026, 11, 21, 6, tzinfo=timezone.utc).timestamp() * 1000))
    assert poll_user(Archivist.from_app(app), two_users["sim-acct-sam"]).new_plays > 0
    after = client.get("/dashboard/panel/totals?period=all").get_data(as_text=True)
    plays = db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (two_users["sim-acct-sam"],)).fetchone()[0]
    assert after != before and f"<dt>Plays</dt><dd>{plays:,}</dd>" in after


def test_a_new_user_sees_helpful_empty_states(app, client, simulator, db_conn):
    sign_in(client, "sim-acct-jo")
    totals = client.get("/dashboard/panel/totals").get_data(as_text=True)
    assert "No plays in this period." in totals and "importing your Spotify history" in totals
    assert "Nothing here yet." in client.get("/history").get_data(as_text=True)
    assert 'hidden' in client.get("/dashboard/panel/genres").get_data(as_text=True)


def test_column_chart_skips_tick_labels_that_would_overlap():
    from app.stats.charts import columns

    weeks = [(f"{d} Jan 2026", d) for d in range(1, 53)]
    svg = str(columns("Plays per week", weeks).svg)
    xs = [(float(x), anchor, text) for x, anchor, text in
          re.findall(r'<text class="tick" [^>]*?x="([\d.]+)" y="\d+" text-anchor="(\w+)">([^<]+)</text>', svg)]
    assert len(xs) >= 3
    extents = []
    for x, anchor, text in xs:
        width = len(text) * 6.2
        start = {"start": x, "end": x - width, "middle": x - width / 2}[anchor]
        extents.append((start, start + width))
    assert all(a[1] <= b[0] for a, b in zip(extents, extents[1:])), extents


@pytest.mark.parametrize("url, status", [
    ("/history?q=%00", 400),
    ("/history/more?q=a%00b", 400),
    ("/settings?x%00=1", 400),
    ("/history?date=9999-12-31", 400),
    ("/history?date=0001-01-01", 400),
    ("/history?cursor=99999999999999999999.1", 400),
    ("/history?cursor=-99999999999999999999.1", 400),
    ("/history/more?cursor=1.99999999999999999999", 400),
    ("/import/2147483648", 404),
    ("/import/9223372036854775808/progress", 404),
    ("/track/99999999999999999999", 404),
])
def test_hostile_input_gets_a_clear_answer_not_a_500(app, two_users, url, status):
    server = app_server(app)  # over real HTTP, as a probe would send it
    try:
        response = http_sign_in(server.url, "sim-acct-sam").get(f"{server.url}{url}", allow_redirects=False,
                                                               timeout=10)
    finally:
        server.stop()
    assert response.status_code == status, response.text[:300]
    assert "Something went wrong" not in response.text


def test_a_search_with_a_nul_in_a_form_is_refused_too(client, two_users):
    response = client.post("/settings", data={"csrf_token": csrf_token(client, "/settings"), "timezone": "UTC\x00",
                                              "rank_by": "plays"})
    assert response.status_code == 400 and "NUL character" in response.get_data(as_text=True)
