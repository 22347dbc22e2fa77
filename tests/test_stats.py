"""Every dashboard number equals a plain recount on the raw `plays` table: random ranges,
time zones with DST and with 30- and 45-minute offsets, plays from imports (listening
time known) and polls (estimated from track length), and after deletions."""

from __future__ import annotations

import io
import random
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.archival.poll import Archivist, poll_user
from app.imports.service import create_import, run_import
from app.simulator.export import synthetic_history
from app.stats import queries
from app.stats.periods import between, resolve
from app.time import zone
from conftest import add_users, freeze, wait_for

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
         "Pacific/Chatham", "America/St_Johns"]
SESSION_GAP = timedelta(minutes=10)


@pytest.fixture
def archive(app, simulator, db_conn):
    """User 'sim-acct-sam' with three years imported and some polled plays; another user beside."""
    world = simulator.world
    world.config.access_token_ttl_s = 400 * 86_400
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])
    database = app.extensions["database"]
    import json
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, part in enumerate(synthetic_history(12_000, years=3, tracks=3_000, artists=600, seed=5,
                                                   end_ms=int(datetime(2025, 7, 1, tzinfo=timezone.utc).timestamp() * 1000),
                                                   rows_per_file=5_000)):
            archive.writestr(f"Streaming_History_Audio_{n}.json", json.dumps(part))
    with database.session() as session:
        import_id = create_import(session, users["sim-acct-sam"], [("h.zip", io.BytesIO(buffer.getvalue()))],
                                  "default").id
    assert run_import(database, import_id).status == "done"
    archivist = Archivist.from_app(app)
    for moment in (datetime(2025, 3, 30, 3, tzinfo=timezone.utc), datetime(2025, 6, 30, 20, tzinfo=timezone.utc)):
        freeze(simulator, int(moment.timestamp() * 1000))
        for user_id in users.values():
            assert poll_user(archivist, user_id).outcome == "archived"
    # Genres for some artists, as enrichment would add.
    db_conn.execute("UPDATE artists SET genres = ARRAY['indie pop', 'dream pop'] WHERE id % 3 = 0")
    db_conn.execute("UPDATE artists SET genres = ARRAY['post-punk'] WHERE id % 3 = 1")
    return users


# --- the recount: straight from plays, sharing nothing with app/stats ---------------------------


def raw_plays(db_conn, uid):
    return db_conn.execute("""
        SELECT p.played_at, p.track_id, coalesce(p.ms_played, t.duration_ms, 0), p.ms_played IS NULL, t.album_id
          FROM plays p JOIN tracks t ON t.id = p.track_id WHERE p.user_id = %s ORDER BY p.played_at
    """, (uid,)).fetchall()


def recount(db_conn, uid, period, plays_cache={}):
    key = (uid, id(db_conn), db_conn.execute("SELECT count(*) FROM plays").fetchone()[0])
    if key not in plays_cache:
        plays_cache.clear()
        plays_cache[key] = raw_plays(db_conn, uid)
    plays = [p for p in plays_cache[key] if (period.start is None or p[0] >= period.start) and p[0] < period.end]
    artists_of = defaultdict(list)
    for track, artist in db_conn.execute("SELECT track_id, artist_id FROM track_artists ORDER BY position"):
        artists_of[track].append(artist)
    genres_of = {a: g or [] for a, g in db_conn.execute("SELECT id, genres FROM artists")}
    primary = {t: a for t, a in db_conn.execute("SELECT track_id, artist_id FROM track_artists WHERE position = 0")}
    tz = period.tz
    local = [(p[0].astimezone(tz), *p[1:]) for p in plays]
    result = {
        "plays": len(plays), "ms": sum(p[2] for p in plays), "estimated": sum(1 for p in plays if p[3]),
        "tracks": len({p[1] for p in plays}), "albums": len({p[4] for p in plays if p[4] is not None}),
        "artists": len({a for p in plays for a in artists_of[p[1]]}),
        "days": len({p[0].date() for p in local}),
        "clock": Counter((p[0].weekday(), p[0].hour) for p in local),
        "by_day": Counter(p[0].date() for p in local),
    }
    for kind, key_of in (("tracks", lambda p: [p[1]]), ("artists", lambda p: artists_of[p[1]]),
                         ("albums", lambda p: [p[4]] if p[4] is not None else [])):
        plays_by, ms_by = Counter(), Counter()
        for p in plays:
            for k in key_of(p):
                plays_by[k] += 1
                ms_by[k] += p[2]
        result[f"top_{kind}_plays"] = sorted(plays_by, key=lambda k: (-plays_by[k], k))[:10]
        result[f"top_{kind}_minutes"] = sorted(plays_by, key=lambda k: (-ms_by[k], -plays_by[k], k))[:10]
        result[f"{kind}_counts"] = (plays_by, ms_by)
    genre_plays, with_genres = Counter(), 0
    for p in plays:
        artist = primary.get(p[1])
        for g in genres_of.get(artist, []):
            genre_plays[g] += 1
        with_genres += 1 if genres_of.get(artist) else 0
    result["genres"] = genre_plays
    result["genre_coverage"] = with_genres / len(plays) if plays else 0.0
    return result


def assert_panels_match(db_conn, conn, uid, period):
    """Every panel's numbers for `period`, in the user's time zone (set to the period's:
    each change rebuilds the user's listening hours, so this checks that too)."""
    db_conn.execute("UPDATE users SET timezone = %s WHERE id = %s", (period.tz.key, uid))
    expected = recount(db_conn, uid, period)
    what = f"{period.label} in {period.tz.key}"
    totals = queries.totals(conn, uid, period)
    assert (totals.plays, totals.ms, totals.estimated, totals.tracks, totals.artists, totals.albums, totals.days) == (
        expected["plays"], expected["ms"], expected["estimated"], expected["tracks"], expected["artists"],
        expected["albums"], expected["days"]), what
    for kind in ("tracks", "artists", "albums"):
        plays_by, ms_by = expected[f"{kind}_counts"]
        for by in ("plays", "minutes"):
            top = queries.top(conn, uid, period, kind, by)
            assert [t.id for t in top] == expected[f"top_{kind}_{by}"], f"top {kind} by {by}, {what}"
            assert all((t.plays, t.ms) == (plays_by[t.id], ms_by[t.id]) for t in top), what
    grid = queries.clock(conn, uid, period)
    assert {(d, h): v for d in range(7) for h in range(24) if (v := grid[d][h])} == dict(expected["clock"]), what
    line = queries.timeline(conn, uid, period)
    bucketed = Counter()
    for day, plays in expected["by_day"].items():
        bucketed[queries._truncate(day, line.unit)] += plays
    assert {d: v for d, v in line.points if v} == dict(bucketed), what
    if expected["plays"]:
        habits = queries.habits(conn, uid, period)
        busiest = max(expected["by_day"].items(), key=lambda kv: (kv[1], kv[0]))
        assert habits.busiest_day == busiest, what
        assert habits.longest_streak[2] == longest_run(sorted(expected["by_day"])), what
    genres = queries.genres(conn, uid, period)
    if expected["plays"]:
        assert genres.coverage == pytest.approx(expected["genre_coverage"]), what
        assert dict(genres.top) == {g: n for g, n in expected["genres"].items() if g in dict(genres.top)}, what
        assert sorted(dict(genres.top).values(), reverse=True) == sorted(expected["genres"].values(), reverse=True)[:10]


def longest_run(days: list[date]) -> int:
    best = run = 0
    for i, day in enumerate(days):
        run = run + 1 if i and day - days[i - 1] == timedelta(days=1) else 1
        best = max(best, run)
    return best


def test_panels_equal_a_recount_for_random_ranges_and_time_zones(app, archive, db_conn):
    uid = archive["sim-acct-sam"]
    rng = random.Random(11)
    engine = app.extensions["database"].engine
    first, last = date(2022, 6, 1), date(2025, 7, 2)
    periods = [resolve("all", zone(tz), datetime(2025, 7, 2, tzinfo=timezone.utc)) for tz in ZONES[:3]]
    # Around DST changes (Berlin and New York), month and year boundaries, and random spans.
    periods += [between(date(2025, 3, 30), date(2025, 3, 30), zone("Europe/Berlin")),
                between(date(2024, 10, 20), date(2024, 11, 5), zone("America/New_York")),
                between(date(2023, 12, 15), date(2025, 1, 20), zone("Pacific/Chatham")),
                between(date(2024, 4, 6), date(2024, 4, 7), zone("Australia/Lord_Howe"))]
    for _ in range(16):
        length = rng.choice([1, 3, 20, 61, 63, 100, 380, 700])
        start = first + timedelta(days=rng.randrange((last - first).days - length))
        periods.append(between(start, start + timedelta(days=length - 1), zone(rng.choice(ZONES))))
    with engine.connect() as conn:
        for period in periods:
            assert_panels_match(db_conn, conn, uid, period)


def test_discoveries_and_sessions_equal_a_recount(app, archive, db_conn):
    uid = archive["sim-acct-sam"]
    period = between(date(2024, 2, 1), date(2024, 8, 31), zone("Europe/Berlin"))
    db_conn.execute("UPDATE users SET timezone = 'Europe/Berlin' WHERE id = %s", (uid,))
    plays = raw_plays(db_conn, uid)
    first_of_track = {}
    for played_at, track, *_ in plays:
        first_of_track.setdefault(track, played_at)
    first_of_artist = {}
    for track, artist in db_conn.execute("SELECT track_id, artist_id FROM track_artists"):
        if track in first_of_track:
            first_of_artist[artist] = min(first_of_artist.get(artist, first_of_track[track]), first_of_track[track])
    with app.extensions["database"].engine.connect() as conn:
        found = queries.discoveries(conn, uid, period)
        habits = queries.habits(conn, uid, period, sessions=5)
        ever = queries.discoveries(conn, uid, resolve("all", zone("Europe/Berlin"), datetime(2025, 7, 2, tzinfo=timezone.utc)))
    assert (ever.tracks, ever.artists) == (len(first_of_track), len(first_of_artist))
    in_period = lambda moment: period.start <= moment < period.end  # noqa: E731
    assert found.tracks == sum(1 for m in first_of_track.values() if in_period(m))
    assert found.artists == sum(1 for m in first_of_artist.values() if in_period(m))

    sessions, current = [], None
    for played_at, _, ms, *_ in plays:
        start = played_at - timedelta(milliseconds=ms)
        if current and start - current[1] <= SESSION_GAP:
            current = [min(current[0], start), max(current[1], played_at), current[2] + 1]
        else:
            if current:
                sessions.append(current)
            current = [start, played_at, 1]
    sessions.append(current)
    longest = sorted((s for s in sessions if in_period(s[0])), key=lambda s: (s[1] - s[0], s[0]), reverse=True)[:5]
    assert [(s[0], s[1], s[2]) for s in habits.sessions] == [
        (s[0].replace(microsecond=s[0].microsecond // 1000 * 1000), s[1], s[2]) for s in longest]


def test_rollups_stay_exact_after_deletions(app, archive, db_conn):
    uid = archive["sim-acct-sam"]
    db_conn.execute("DELETE FROM plays WHERE user_id = %s AND played_at >= '2024-05-01' AND played_at < '2024-05-20'",
                    (uid,))
    db_conn.execute("DELETE FROM plays WHERE user_id = %s AND track_id IN "
                    "(SELECT track_id FROM track_totals WHERE user_id = %s ORDER BY plays DESC LIMIT 2)", (uid, uid))
    with app.extensions["database"].engine.connect() as conn:
        for period in (between(date(2024, 4, 1), date(2024, 6, 30), zone("Asia/Kolkata")),
                       resolve("all", zone("UTC"), datetime(2025, 7, 2, tzinfo=timezone.utc))):
            assert_panels_match(db_conn, conn, uid, period)
    first_last = db_conn.execute("""
        SELECT count(*) FROM track_totals tt WHERE user_id = %s AND (
               first_played_at IS DISTINCT FROM (SELECT min(played_at) FROM plays p
                                                  WHERE p.user_id = tt.user_id AND p.track_id = tt.track_id)
            OR last_played_at IS DISTINCT FROM (SELECT max(played_at) FROM plays p
                                                 WHERE p.user_id = tt.user_id AND p.track_id = tt.track_id))
    """, (uid,)).fetchone()[0]
    assert first_last == 0


def test_deleting_a_user_removes_their_plays_and_rollups(app, archive, db_conn):
    uid = archive["sim-acct-sam"]
    db_conn.execute("DELETE FROM users WHERE id = %s", (uid,))
    for table in ("plays", "listening_hours", "track_months", "track_years", "track_totals", "listening_sessions",
                  "archive_versions", *ARTIST_ALBUM_ROLLUPS):
        assert db_conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (uid,)).fetchone()[0] == 0, table
    other = archive["sim-acct-riley"]
    assert db_conn.execute("SELECT count(*) FROM listening_hours WHERE user_id = %s", (other,)).fetchone()[0] > 0


def test_plays_are_immutable_and_tracks_are_never_deleted(archive, db_conn):
    import psycopg

    with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
        db_conn.execute("UPDATE plays SET ms_played = 1")
    with pytest.raises(psycopg.errors.RaiseException, match="never deleted"):
        db_conn.execute("DELETE FROM tracks WHERE id = (SELECT min(id) FROM tracks)")


def test_a_time_zone_change_and_concurrent_plays_never_mix_zones(archive, database_url, db_conn):
    """Plays written while a zone change is uncommitted wait for it, then land in the new
    zone's hours (the plays trigger holds the user's row FOR SHARE)."""
    import threading

    import psycopg

    uid = archive["sim-acct-sam"]
    track = db_conn.execute("SELECT track_id FROM track_totals WHERE user_id = %s LIMIT 1", (uid,)).fetchone()[0]
    mover = psycopg.connect(database_url)
    mover.execute("UPDATE users SET timezone = 'Asia/Kathmandu' WHERE id = %s", (uid,))  # rebuilt, not committed
    writer_pid = []

    def write():  # 23:30 UTC is already tomorrow in Kathmandu
        with psycopg.connect(database_url) as writer:
            writer_pid.append(writer.info.backend_pid)
            writer.execute("INSERT INTO plays (played_at, user_id, track_id, ms_played, source) "
                           "VALUES ('2025-06-30 23:30:00+00', %s, %s, 200000, 2)", (uid, track))

    thread = threading.Thread(target=write)
    thread.start()
    try:
        wait_for(lambda: writer_pid and db_conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'", (writer_pid[0],)).fetchone(),
            timeout=10, message="the writer waiting for the zone change")
        mover.commit()
    finally:  # a failure must not leave the zone change holding its locks over the next tests
        mover.close()
        thread.join(timeout=30)
    differences = db_conn.execute("""
        WITH recount AS (SELECT (played_at AT TIME ZONE 'Asia/Kathmandu')::date AS day,
                                extract(hour FROM played_at AT TIME ZONE 'Asia/Kathmandu') AS hour, count(*) AS plays
                           FROM plays WHERE user_id = %(uid)s GROUP BY 1, 2)
        SELECT count(*) FROM recount r FULL JOIN (SELECT * FROM listening_hours WHERE user_id = %(uid)s) h
            ON h.day = r.day AND h.hour = r.hour
         WHERE h.plays IS DISTINCT FROM r.plays
    """, {"uid": uid}).fetchone()[0]
    assert differences == 0


# --- artist and album rollups: equal to a recount through the links as they are now ----------

ARTIST_ALBUM_ROLLUPS = ("artist_months", "artist_years", "artist_totals", "album_months", "album_years",
                        "album_totals")


def rollup_drift(db_conn) -> dict[str, tuple[int, int]]:
    """table -> (rows, rows that differ from a recount of plays through today's links)."""
    found = {}
    for table in ARTIST_ALBUM_ROLLUPS:
        kind, grain = table.split("_")
        bucket = {"months": "date_trunc('month', p.played_at, 'UTC')",
                  "years": "date_trunc('year', p.played_at, 'UTC')", "totals": None}[grain]
        key = ["user_id"] + ([grain[:-1]] if bucket else []) + [f"{kind}_id"]
        entity = "ta.artist_id" if kind == "artist" else "t.album_id"
        lead = ", count(*) FILTER (WHERE ta.position = 0) AS lead_plays" if kind == "artist" else ""
        links = ("JOIN track_artists ta ON ta.track_id = p.track_id" if kind == "artist"
                 else "AND t.album_id IS NOT NULL")
        values = ["plays", "ms"] + (["lead_plays"] if kind == "artist" else [])
        found[table] = db_conn.execute(f"""
            WITH recount AS (
                SELECT p.user_id, {bucket + ' AS ' + grain[:-1] + ',' if bucket else ''} {entity} AS {kind}_id,
                       count(*) AS plays, sum(coalesce(p.ms_played, t.duration_ms, 0)) AS ms {lead}
                  FROM plays p JOIN tracks t ON t.id = p.track_id {links}
                 GROUP BY {', '.join(str(i + 1) for i in range(len(key)))})
            SELECT (SELECT count(*) FROM {table}),
                   count(*) FILTER (WHERE {' OR '.join(f"r.{v} IS DISTINCT FROM x.{v}" for v in values)})
              FROM recount x FULL JOIN {table} r USING ({', '.join(key)})
        """).fetchone()
    return found


def assert_no_drift(db_conn):
    drift = rollup_drift(db_conn)
    assert all(rows > 0 for rows, _ in drift.values()), drift
    assert {table: wrong for table, (_, wrong) in drift.items() if wrong} == {}, drift


def resolve_tracks(app, track_ids, artists, album, hold=None):
    """What a poll or enrichment does when Spotify describes tracks that an import knew only
    by id and names: their artists and album are replaced (the transaction kept open until
    `hold`, a (resolved, release) pair of events, says so)."""
    from app.archival.page import PolledAlbum, PolledArtist, PolledTrack
    from app.archival.store import upsert_tracks

    with app.extensions["database"].session() as session:
        ids = session.execute(sa.text("SELECT spotify_id FROM tracks WHERE id = ANY(:ids)"),
                              {"ids": track_ids}).scalars().all()
        upsert_tracks(session, [PolledTrack(spotify_id, f"Resolved {spotify_id}", 180_000, False, None,
                                            PolledAlbum(album, "A resolved album", "album", "2020", "year", 10, None),
                                            tuple(PolledArtist(a, f"Artist {a}") for a in artists))
                                for spotify_id in ids])
        if hold:
            hold[0].set()
            wait_for(hold[1].is_set, timeout=30, message="the test's release")


def unresolved_tracks(db_conn, uid, n):
    return [r[0] for r in db_conn.execute("""
        SELECT tt.track_id FROM track_totals tt JOIN tracks t ON t.id = tt.track_id
         WHERE tt.user_id = %s AND t.enriched_at IS NULL AND t.spotify_id IS NOT NULL
         ORDER BY tt.plays DESC, tt.track_id LIMIT %s""", (uid, n))]


def test_artist_and_album_rollups_follow_plays_links_and_albums(app, archive, db_conn):
    """After an import and polls, after imported tracks are resolved to other artists and
    another album (their plays move), after deletions of plays and of a user: every artist
    and album rollup row equals a recount of plays through the links as they are."""
    uid = archive["sim-acct-sam"]
    assert_no_drift(db_conn)
    tracks = unresolved_tracks(db_conn, uid, 5)
    assert len(tracks) == 5
    plays = db_conn.execute("SELECT count(*) FROM plays WHERE track_id = ANY(%s)", (tracks,)).fetchone()[0]
    resolve_tracks(app, tracks, ["0newLeadArtist00000000", "0newGuestArtist0000000"], "0newAlbum0000000000000")
    assert_no_drift(db_conn)
    lead, guest = db_conn.execute("""
        SELECT sum(lead_plays) FILTER (WHERE a.spotify_id = '0newLeadArtist00000000'),
               sum(plays) FILTER (WHERE a.spotify_id = '0newGuestArtist0000000')
          FROM artist_totals r JOIN artists a ON a.id = r.artist_id""").fetchone()
    assert lead == guest == plays > 0
    db_conn.execute("DELETE FROM plays WHERE user_id = %s AND played_at >= '2024-05-01' AND played_at < '2024-09-01'",
                    (uid,))
    db_conn.execute("DELETE FROM plays WHERE track_id = %s", (tracks[0],))
    assert_no_drift(db_conn)
    db_conn.execute("DELETE FROM users WHERE id = %s", (archive["sim-acct-riley"],))
    assert_no_drift(db_conn)


@pytest.mark.parametrize("first", ["plays", "resolution"])
def test_plays_and_a_concurrent_resolution_of_their_track_never_miss_each_other(app, archive, database_url,
                                                                                db_conn, first):
    """Plays of an imported track written while a poll resolves that track (in either order,
    both uncommitted): the second waits for the first, and the artists' and albums' rollups
    count every play exactly once."""
    import threading

    import psycopg

    uid = archive["sim-acct-sam"]
    track = unresolved_tracks(db_conn, uid, 1)[0]
    racer = ("0racerArtist0000000000", "0racerAlbum00000000000")
    insert = ("INSERT INTO plays (played_at, user_id, track_id, ms_played, source) "
              "SELECT '2025-06-20 12:00:00+00'::timestamptz + n * interval '5 minutes', %s, %s, 200000, 2 "
              "FROM generate_series(1, 7) n")

    def someone_waits_for_a_lock() -> bool:
        wait_for(lambda: db_conn.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND wait_event_type = 'Lock'").fetchone(), timeout=20,
                 message="a session waiting for a lock")
        return True

    if first == "plays":
        writer = psycopg.connect(database_url)
        try:
            writer.execute(insert, (uid, track))
            second = threading.Thread(target=resolve_tracks, args=(app, [track], [racer[0]], racer[1]))
            second.start()
            assert someone_waits_for_a_lock(), "the resolution should wait for the uncommitted plays"
            writer.commit()
        finally:  # never leave the plays' locks over the next tests
            writer.close()
        second.join(30)
    else:
        resolved, release = threading.Event(), threading.Event()
        first_thread = threading.Thread(target=resolve_tracks,
                                        args=(app, [track], [racer[0]], racer[1], (resolved, release)))
        first_thread.start()
        try:
            wait_for(resolved.is_set, timeout=30, message="the resolution made")

            def write():
                with psycopg.connect(database_url) as writer:
                    writer.execute(insert, (uid, track))

            second = threading.Thread(target=write)
            second.start()
            assert someone_waits_for_a_lock(), "the plays should wait for the uncommitted resolution"
        finally:
            release.set()
        first_thread.join(30)
        second.join(30)
    assert_no_drift(db_conn)
    plays = db_conn.execute("SELECT count(*) FROM plays WHERE track_id = %s", (track,)).fetchone()[0]
    assert db_conn.execute("SELECT r.plays FROM artist_totals r JOIN artists a ON a.id = r.artist_id "
                           "WHERE a.spotify_id = %s AND r.user_id = %s", (racer[0], uid)).fetchone()[0] == plays


def test_search_finds_exactly_the_tracks_whose_names_contain_the_query(app, archive, db_conn):
    """Through the trigram indexes (3+ characters) or the user's own tracks (fewer): the
    same answer as a plain scan, by track, album or artist name, with LIKE's wildcards
    taken literally."""
    from app.stats.history import matching_tracks

    uid = archive["sim-acct-sam"]
    names = db_conn.execute("""
        SELECT tt.track_id, lower(t.name), lower(coalesce(al.name, '')), lower(coalesce(t.artist_name, '')),
               coalesce((SELECT string_agg(lower(a.name), '|') FROM track_artists ta
                           JOIN artists a ON a.id = ta.artist_id WHERE ta.track_id = t.id), '')
          FROM track_totals tt JOIN tracks t ON t.id = tt.track_id LEFT JOIN albums al ON al.id = t.album_id
         WHERE tt.user_id = %s""", (uid,)).fetchall()
    some = names[len(names) // 2]
    queries_ = [some[1][1:6], some[2][:4], some[4].split("|")[0][-5:], some[1][:2], "e", "100%", "a_b", "zzqx"]
    found_any = 0
    with app.extensions["database"].engine.connect() as conn:
        for q in queries_:
            expected = {row[0] for row in names if any(q.lower() in field for field in row[1:])}
            assert set(matching_tracks(conn, uid, q)) == expected, q
            found_any += bool(expected)
    assert found_any >= 5


TRACK_ROLLUP_KEYS = {"track_months": ("user_id", "month", "track_id"), "track_years": ("user_id", "year", "track_id"),
                     "track_totals": ("user_id", "track_id"), "listening_hours": ("user_id", "day", "hour")}


def track_rollup_drift(db_conn, uid) -> dict[str, tuple[int, int]]:
    """table -> (the user's rows, rows that differ from a recount of their plays)."""
    ms = "coalesce(p.ms_played, t.duration_ms, 0)"
    local = "(p.played_at AT TIME ZONE u.timezone)"
    recounts = {
        "track_months": f"SELECT p.user_id, date_trunc('month', p.played_at, 'UTC') AS month, p.track_id, "
                        f"count(*) AS plays, sum({ms}) AS ms FROM {{plays}} GROUP BY 1, 2, 3",
        "track_years": f"SELECT p.user_id, date_trunc('year', p.played_at, 'UTC') AS year, p.track_id, "
                       f"count(*) AS plays, sum({ms}) AS ms FROM {{plays}} GROUP BY 1, 2, 3",
        "track_totals": f"SELECT p.user_id, p.track_id, count(*) AS plays, sum({ms}) AS ms, "
                        f"min(p.played_at) AS first_played_at, max(p.played_at) AS last_played_at FROM {{plays}} "
                        "GROUP BY 1, 2",
        "listening_hours": f"SELECT p.user_id, {local}::date AS day, extract(hour FROM {local}) AS hour, "
                           f"count(*) AS plays, sum({ms}) AS ms FROM {{plays}} GROUP BY 1, 2, 3",
    }
    plays = "plays p JOIN tracks t ON t.id = p.track_id JOIN users u ON u.id = p.user_id WHERE p.user_id = %(uid)s"
    found = {}
    for table, recount_sql in recounts.items():
        key = TRACK_ROLLUP_KEYS[table]
        values = ["plays", "ms"] + (["first_played_at", "last_played_at"] if table == "track_totals" else [])
        found[table] = db_conn.execute(f"""
            WITH x AS ({recount_sql.format(plays=plays)}), r AS (SELECT * FROM {table} WHERE user_id = %(uid)s)
            SELECT (SELECT count(*) FROM r),
                   count(*) FILTER (WHERE {' OR '.join(f"r.{v} IS DISTINCT FROM x.{v}" for v in values)})
              FROM x FULL JOIN r USING ({', '.join(key)})
        """, {"uid": uid}).fetchone()
    return found


def test_track_and_hour_rollups_equal_a_recount_when_keys_are_new_old_or_both(app, db_conn):
    """Rollup rows are plainly inserted where the user has none in the span, looked up row
    by row where it has some, upserted where the key exists (migration 0024): an empty
    archive, a statement overlapping it (same tracks and months, and new ones), one in
    years it does not reach, and one within a month it has; every table equals a recount."""
    from conftest import new_user

    uid = new_user(app, "rollup-keys")
    first = db_conn.execute("INSERT INTO tracks (name, artist_name, duration_ms) SELECT 'Keys ' || g, 'Band', "
                            "180000 + g FROM generate_series(1, 40) g RETURNING id").fetchall()[0][0]
    insert = """INSERT INTO plays (played_at, user_id, track_id, ms_played, source)
                SELECT %(start)s::timestamptz + g * %(step)s * interval '1 minute', %(uid)s,
                       %(first)s + (g * 7) %% %(tracks)s, CASE WHEN g %% 3 = 0 THEN NULL ELSE 100000 + g END, 2
                  FROM generate_series(1, %(n)s) g"""
    batches = [("2024-01-01", 97, 30, 400), ("2024-01-20", 89, 40, 500), ("2019-05-01", 61, 40, 300),
               ("2024-02-03 10:00:30", 1, 40, 7)]
    for start, step, tracks, n in batches:
        db_conn.execute(insert, {"start": start, "step": step, "uid": uid, "first": first, "tracks": tracks, "n": n})
        drift = track_rollup_drift(db_conn, uid)
        assert all(rows > 0 for rows, _ in drift.values()), drift
        assert {table: wrong for table, (_, wrong) in drift.items() if wrong} == {}, (start, drift)
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (uid,)).fetchone()[0] == 1207
