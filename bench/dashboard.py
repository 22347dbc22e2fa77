"""Dashboard, entity pages and history at a million plays: server time of every fragment.

    python -m bench.dashboard [--plays 1000000] [--others 9] [--cold 15] [--warm 40]

Builds, in a private Postgres, a catalogue of 100k tracks on 25k albums by 15k artists
(genres for most artists) and one user with --plays plays over ten years, among --others
users with 100k plays each over three years. Plays come in listening sessions (a track,
then the next one when it ends, a pause between sessions, nights off) with Zipf-like
track popularity whose favourites drift from year to year; 30% of plays are skips. They
are COPYed into `plays` in 100k-row statements, so the rollup triggers (migration 0004)
do the same work they do for an import.

Then, in this process, the app answers each fragment through its WSGI interface (the
time measured is the server's: routing, queries, rendering; no network): every
dashboard panel for all time, the last 365 days and the last 30 days, with the fragment
cache emptied before each request (cold) and then served from it (warm); the history's
infinite-scroll page with its cursor 30 days, a year and ten years deep; a history
search; and the three entity pages for the user's favourites.

Last line: {"plays", "bytes_per_play", "fragments": {name: {range: {p50_ms, p95_ms}}},
"warm": {...same shape...}, ...}. `bytes_per_play` is pg_total_relation_size('plays')
(heap, primary key, TOAST) divided by its rows.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from cryptography.fernet import Fernet

from app.embedded_pg import ensure_server, stop
from app.migrate import upgrade
from app.models import PlaySource

TRACKS, ALBUMS, ARTISTS = 100_000, 25_000, 15_000
TZ = ZoneInfo("Europe/Berlin")
GENRES = ["indie rock", "shoegaze", "dream pop", "post-punk", "synthwave", "lo-fi beats", "jazz fusion", "afrobeats",
          "trip hop", "alt country", "art pop", "hyperpop", "neo soul", "drum and bass", "ambient", "k-pop",
          "bossa nova", "grunge", "city pop", "baroque pop", "house", "techno", "folk", "chamber pop"]
CHUNK = 100_000


def build_catalogue(conn: psycopg.Connection) -> None:
    # Albums are spread over artists and tracks over albums by multiplicative hashing, so a
    # popular track's album and artist are as scattered as in real listening.
    conn.execute("""
        INSERT INTO artists (spotify_id, name, image_url, genres, enriched_at)
        SELECT 'benchartist' || lpad(g::text, 11, '0'), 'Artist ' || g, 'https://i.scdn.co/image/a' || g,
               CASE WHEN g %% 5 = 0 THEN NULL
                    ELSE ARRAY[(%(genres)s::text[])[1 + g %% 24], (%(genres)s::text[])[1 + (g * 7) %% 24]] END,
               now()
          FROM generate_series(1, %(n)s) g
    """, {"n": ARTISTS, "genres": GENRES})
    conn.execute("""
        INSERT INTO albums (spotify_id, name, artist_name, album_type, release_date, release_date_precision,
                            total_tracks, image_url, enriched_at)
        SELECT 'benchalbum' || lpad(g::text, 12, '0'), 'Album ' || g, 'Artist ' || (1 + (g::bigint * 104729) %% %(artists)s),
               'album', (1960 + g %% 66)::text, 'year', 4, 'https://i.scdn.co/image/b' || g, now()
          FROM generate_series(1, %(n)s) g
    """, {"n": ALBUMS, "artists": ARTISTS})
    first_album = conn.execute("SELECT min(id) FROM albums").fetchone()[0]
    conn.execute("""
        INSERT INTO tracks (spotify_id, name, album_id, duration_ms, explicit, artist_name, enriched_at)
        SELECT 'benchtrack' || lpad(g::text, 12, '0'), 'Song number ' || g,
               %(first_album)s + ((g - 1) * 7919) %% %(albums)s, 150000 + (g * 6007) %% 150000, false,
               'Artist ' || (1 + ((((g - 1) * 7919) %% %(albums)s + 1)::bigint * 104729) %% %(artists)s), now()
          FROM generate_series(1, %(n)s) g
    """, {"n": TRACKS, "albums": ALBUMS, "artists": ARTISTS, "first_album": first_album})
    conn.execute("""
        INSERT INTO track_artists (track_id, position, artist_id)
        SELECT t.id, 0, ar.id FROM tracks t JOIN artists ar ON ar.name = t.artist_name
         WHERE t.spotify_id LIKE 'benchtrack%%'
    """)
    # One track in seven has a featured artist.
    conn.execute("""
        INSERT INTO track_artists (track_id, position, artist_id)
        SELECT t.id, 1, (SELECT min(id) FROM artists) + (t.id::bigint * 31) %% %(artists)s
          FROM tracks t WHERE t.spotify_id LIKE 'benchtrack%%' AND t.id %% 7 = 0
        ON CONFLICT DO NOTHING
    """, {"artists": ARTISTS})


def listening(seed: int, uid: int, plays: int, end: datetime, years: float, track_ids: list[int],
              durations: list[int]) -> io.StringIO:
    """COPY text of `plays` plays spread over the `years` before `end`: sessions of about
    a dozen plays back to back, started evenly through the waking hours (07:00-02:00
    local), skips, and favourites that drift from year to year."""
    rng = random.Random(seed)
    start = end - timedelta(days=365.25 * years)
    lengths: list[int] = []  # plays per session, about a dozen
    left = plays
    while left > 0:
        lengths.append(min(rng.randint(1, 23), left))
        left -= lengths[-1]
    days = (end - start).days
    log_n = math.log(len(track_ids) + 10)
    first_day = start.astimezone(TZ).date()
    rows: list[tuple[float, int, int]] = []
    at = 0.0
    for k, length in enumerate(lengths):
        # Session k's nominal start, squeezed into the waking hours of its day.
        position = k / len(lengths) * days
        day = first_day + timedelta(days=int(position))
        wake = datetime.combine(day, datetime.min.time(), tzinfo=TZ).timestamp() + 7 * 3600
        at = max(at + 11 * 60, wake + (position % 1) * 19 * 3600)  # a new session: > 10 minutes apart
        era = int(position / 365.25)
        for _ in range(length):
            rank = int(math.exp(rng.random() * log_n)) - 10  # Zipf-like, with a softened head
            index = (max(rank, 0) + 5_000 * era * (seed + 1)) % len(track_ids)
            ms = durations[index] if rng.random() < 0.7 else rng.randint(5_000, 60_000)
            at += ms / 1000 + rng.uniform(0.2, 2.0)  # played_at is when the play ended
            rows.append((at, track_ids[index], ms))
    # Sessions that ran long push later ones back; move the whole history so it ends before `end`.
    shift = min(0.0, end.timestamp() - rows[-1][0])
    out = io.StringIO()
    source = PlaySource.extended_history.value
    for at, track_id, ms in rows:
        moment = datetime.fromtimestamp(at + shift, tz=timezone.utc)
        out.write(f"{moment.isoformat()}\t{uid}\t{track_id}\t{ms}\t{source}\n")
    out.seek(0)
    return out


def load_plays(conn: psycopg.Connection, text: io.StringIO) -> float:
    """COPY in 100k-row statements (each fires the rollup triggers once, as an import does)."""
    started = time.monotonic()
    lines = text.getvalue().splitlines(keepends=True)
    for i in range(0, len(lines), CHUNK):
        with conn.transaction():
            with conn.cursor().copy("COPY plays (played_at, user_id, track_id, ms_played, source) FROM STDIN") as copy:
                copy.write("".join(lines[i:i + CHUNK]))
    return time.monotonic() - started


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1)}


def timed(client, url: str, reps: int, before=None) -> list[float]:
    samples = []
    for _ in range(reps):
        if before:
            before()
        started = time.perf_counter()
        response = client.get(url)
        samples.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"GET {url}: {response.status_code}\n{response.get_data(as_text=True)[:500]}")
    return samples


def build(database_url: str, args, now: datetime) -> float:
    """The catalogue, the users and their plays; returns COPY's plays per second."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        build_catalogue(conn)
        rows = conn.execute("SELECT id, duration_ms FROM tracks ORDER BY id").fetchall()
        track_ids, durations = [r[0] for r in rows], [r[1] for r in rows]
        users = [("bench-main", args.plays, 10.0)] + [(f"bench-other-{i}", 100_000, 3.0) for i in range(args.others)]
        loaded, copy_s = 0, 0.0
        for seed, (spotify_id, plays, years) in enumerate(users):
            uid = conn.execute("INSERT INTO users (spotify_id, display_name, timezone, preferences) "
                               "VALUES (%s, %s, %s, '{\"timezone_confirmed\": true}') RETURNING id",
                               (spotify_id, spotify_id, TZ.key)).fetchone()[0]
            copy_s += load_plays(conn, listening(seed, uid, plays, now - timedelta(hours=1), years, track_ids,
                                                 durations))
            loaded += plays
        conn.execute("VACUUM ANALYZE")
    return loaded / copy_s


def facts(database_url: str) -> dict:
    """The measured user, sizes, and the user's favourites (for entity pages and search)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        uid = conn.execute("SELECT id FROM users WHERE spotify_id = 'bench-main'").fetchone()[0]
        favourites = {kind: conn.execute(sql, (uid,)).fetchone()[0] for kind, sql in {
            "track": "SELECT track_id FROM track_totals WHERE user_id = %s ORDER BY plays DESC LIMIT 1",
            "album": """SELECT t.album_id FROM track_totals tt JOIN tracks t ON t.id = tt.track_id
                         WHERE tt.user_id = %s GROUP BY 1 ORDER BY sum(tt.plays) DESC LIMIT 1""",
            "artist": """SELECT ta.artist_id FROM track_totals tt JOIN track_artists ta ON ta.track_id = tt.track_id
                          WHERE tt.user_id = %s GROUP BY 1 ORDER BY sum(tt.plays) DESC LIMIT 1"""}.items()}
        return {
            "uid": uid, "favourites": favourites,
            "total": conn.execute("SELECT count(*) FROM plays").fetchone()[0],
            "users": conn.execute("SELECT count(*) FROM users").fetchone()[0],
            "mine": conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (uid,)).fetchone()[0],
            "size": conn.execute("SELECT pg_total_relation_size('plays')").fetchone()[0],
            "search": conn.execute("SELECT name FROM artists WHERE id = %s", (favourites["artist"],)).fetchone()[0],
        }


def measure(database_url: str, uid: int, favourites: dict[str, int], search: str, today: date,
            cold_reps: int, warm_reps: int, only: set[str] | None = None) -> tuple[dict, dict]:
    """({fragment: {range: percentiles}} with the fragment cache emptied, the same served warm)."""
    from app import create_app
    from app.config import load_settings
    from app.stats.history import Cursor
    from app.stats.routes import PANELS

    app = create_app(settings=load_settings({
        "DATABASE_URL": database_url, "SECRET_KEY": "bench-" + "k" * 32,
        "TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode(), "SPOTIFY_ACCOUNTS_URL": "http://127.0.0.1:9",
        "SPOTIFY_API_URL": "http://127.0.0.1:9", "LOG_LEVEL": "WARNING"}))
    from app.account import sessions
    from app.models import User
    from app.time import utcnow

    with app.extensions["database"].session() as db_session:  # a sign-in, as the OAuth callback makes one
        token = sessions.start(db_session, db_session.get(User, uid), now=utcnow(), lifetime=timedelta(days=1),
                               user_agent="bench.dashboard")
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"], session["_fresh"] = token, True
    cache = app.extensions["stats_cache"]
    ranges = {"all": "period=all", "year": f"period=custom&from={today - timedelta(days=364)}&to={today}",
              "30d": "period=30d"}
    cold: dict[str, dict] = {}
    warm: dict[str, dict] = {}
    for name in PANELS:
        if only and name not in only:
            continue
        for label, query in ranges.items():
            url = f"/dashboard/panel/{name}?{query}"
            timed(client, url, 1, cache.clear)  # first touch: Postgres pages into memory
            cold.setdefault(name, {})[label] = percentiles(timed(client, url, cold_reps, cache.clear))
            warm.setdefault(name, {})[label] = percentiles(timed(client, url, warm_reps))
            print(f"{name:12} {label:5} cold {cold[name][label]}  warm {warm[name][label]}", file=sys.stderr)

    # The history's infinite-scroll page, its cursor this deep (history pages are not cached).
    pages = {"history": {label: "/history/more?cursor=" + Cursor.at(
        datetime.combine(today - timedelta(days=days), datetime.min.time(), tzinfo=TZ)).encode()
        for label, days in {"30d": 30, "year": 365, "all": 3640}.items()},
        "history_search": {"all": f"/history?q={search}"}}
    pages.update({kind: {"all": f"/{kind}/{entity_id}"} for kind, entity_id in favourites.items()})
    for name, urls in pages.items():
        if only and name not in only:
            continue
        for label, url in urls.items():
            timed(client, url, 1)
            cold.setdefault(name, {})[label] = percentiles(timed(client, url, cold_reps))
        print(f"{name:14} {cold[name]}", file=sys.stderr)
    app.extensions["database"].dispose()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=9, help="other users, 100k plays each")
    parser.add_argument("--cold", type=int, default=25, help="repetitions with the fragment cache emptied")
    parser.add_argument("--warm", type=int, default=40, help="repetitions served from the fragment cache")
    parser.add_argument("--only", help="comma-separated fragments to measure (default: all)")
    # Development: keep (and on later runs reuse) the database in this directory.
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        pgdata = args.keep or Path(tmp) / "pg"
        reuse = args.keep is not None and (pgdata / "PG_VERSION").exists()
        database_url = ensure_server(pgdata, "bench", keep_running=args.keep is not None)
        try:
            upgrade(database_url)
            now = datetime.now(timezone.utc).replace(microsecond=0)
            started = time.monotonic()
            copy_rate = None if reuse else build(database_url, args, now)
            known = facts(database_url)
            if copy_rate:
                print(f"built {known['total']:,} plays ({known['mine']:,} for the measured user) in "
                      f"{time.monotonic() - started:.0f} s (COPY with rollup triggers: {copy_rate:,.0f} plays/s)",
                      file=sys.stderr)
            print(f"plays on disk: {known['size'] / 1e6:.0f} MB = {known['size'] / known['total']:.1f} B/play",
                  file=sys.stderr)
            cold, warm = measure(database_url, known["uid"], known["favourites"], known["search"],
                                 now.astimezone(TZ).date(), args.cold, args.warm,
                                 set(args.only.split(",")) if args.only else None)
        finally:
            if args.keep is None:
                stop(pgdata)  # before its directory goes

    print(json.dumps({"plays": known["mine"], "bytes_per_play": round(known["size"] / known["total"], 1),
                      "fragments": cold, "warm": warm, "plays_in_database": known["total"],
                      "users": known["users"], "copy_plays_per_s": round(copy_rate) if copy_rate else None}))


if __name__ == "__main__":
    main()
