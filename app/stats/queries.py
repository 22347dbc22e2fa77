"""Listening statistics for one user and one period, read from the rollups (migrations 0004
and 0015).

Exactness: a period is whole local days in the user's time zone, and `listening_hours` is
kept in that zone, so its sums are exact. Per-track, per-artist and per-album counts come
from an exact cover of the period by as few rows as it takes: all time from `*_totals`;
whole UTC years and months from `*_years` and `*_months` (a year's row less its other
months where that reads fewer rows); the parts of months at either end from `plays`
itself, or from the month's row less the plays outside the period when those are fewer.

Every query is scoped to one user id; nothing here can read another user's plays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .periods import Period

TOP_LIMIT = 10
MOVEMENT_DEPTH = 100  # ranks beyond this in the previous period count as "new"
GENRE_COVERAGE = 0.5  # share of plays whose artist has genres before genres are shown
HISTORY_PAGE = 50


# --- per-track counts over a period ----------------------------------------------------------


def _month_floor(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _month_ceil(moment: datetime) -> datetime:
    floor = _month_floor(moment)
    return floor if floor == moment else (floor + timedelta(days=32)).replace(day=1)


def _year_floor(moment: datetime) -> datetime:
    return _month_floor(moment).replace(month=1)


KINDS = ("tracks", "artists", "albums")
# kind -> (rollup table prefix, id column, extra counted columns, raw per-track counts `pt`
# turned into the kind's). Raw plays are counted per track first: the few thousand tracks of
# a partial month are then looked up one by one (OFFSET 0 keeps the planner from hashing
# the whole catalogue's links instead, which grows with every user's library).
ROLLUPS = {
    "tracks": ("track", "track_id", "", "SELECT track_id AS id, plays, ms FROM ({pt}) pt"),
    "artists": ("artist", "artist_id", ", lead_plays",
                "SELECT ta.artist_id AS id, sum(pt.plays)::int AS plays, sum(pt.ms)::bigint AS ms, "
                "coalesce(sum(pt.plays) FILTER (WHERE ta.position = 0), 0)::int AS lead_plays "
                "FROM ({pt}) pt CROSS JOIN LATERAL (SELECT artist_id, position FROM track_artists l "
                "WHERE l.track_id = pt.track_id OFFSET 0) ta GROUP BY 1"),
    "albums": ("album", "album_id", "",
               "SELECT t.album_id AS id, sum(pt.plays)::int AS plays, sum(pt.ms)::bigint AS ms "
               "FROM ({pt}) pt CROSS JOIN LATERAL (SELECT album_id FROM tracks l WHERE l.id = pt.track_id "
               "AND l.album_id IS NOT NULL OFFSET 0) t GROUP BY 1"),
}


def counts(kind: str, start: datetime | None, end: datetime, tag: str = "",
           ids_only: bool = False) -> tuple[str, dict[str, Any]]:
    """SQL yielding (id, plays, ms) of user :uid's tracks, artists or albums in [start, end)
    (artists also lead_plays: plays where they are credited first), and its parameters
    (named with `tag`, so that several counts can share a statement). `ids_only`: just
    the ids, for counting them."""
    prefix, column, extra, raw = ROLLUPS[kind]
    counted = ", plays" if ids_only else f", plays, ms{extra}"
    if start is None:
        return f"SELECT {column} AS id{counted} FROM {prefix}_totals WHERE user_id = :uid", {}
    parts: list[str] = []
    params: dict[str, Any] = {}
    subtracts = False

    def add(grain: str, a: datetime, b: datetime, sign: int = 1) -> None:
        nonlocal subtracts
        if a >= b:
            return
        n = f"{tag}{len(parts)}"
        params[f"a{n}"], params[f"b{n}"] = a, b
        values = counted if sign > 0 else "".join(f", -{c} AS {c}" for c in counted.replace(",", " ").split())
        subtracts |= sign < 0
        if grain == "raw":
            # The track's length only where ms_played is unknown (polls): a lookup per such
            # play is far cheaper than joining all of `tracks` for every play.
            sql = raw.format(pt=f"""
                SELECT p.track_id, count(*)::int AS plays,
                       sum(coalesce(p.ms_played,
                                    (SELECT d.duration_ms FROM tracks d WHERE d.id = p.track_id), 0))::bigint AS ms
                  FROM plays p WHERE p.user_id = :uid AND p.played_at >= :a{n} AND p.played_at < :b{n}
                 GROUP BY p.track_id""")
            parts.append(sql if values == f", plays, ms{extra}" else f"SELECT id{values} FROM ({sql}) r")
        else:
            parts.append(f"SELECT {column} AS id{values} FROM {prefix}_{grain}s "
                         f"WHERE user_id = :uid AND {grain} >= :a{n} AND {grain} < :b{n}")

    def add_within_month(a: datetime, b: datetime) -> None:
        """[a, b) inside one UTC month: its plays, or, when they are most of the month, the
        month's rollup less the plays outside (fewer rows, and no per-track lookups)."""
        if a >= b:
            return
        month, next_month = _month_floor(a), _month_ceil(a + timedelta(microseconds=1))
        if b - a > (next_month - month) / 2:
            add("month", month, next_month)
            add("raw", month, a, -1)
            add("raw", b, next_month, -1)
        else:
            add("raw", a, b)

    m1, m2 = _month_ceil(start), _month_floor(end)
    if m1 >= m2:  # within one month, or across one month's end
        add_within_month(start, min(end, m1))
        add_within_month(max(start, m1), end)
    else:
        add_within_month(start, m1)
        _cover_months(m1, m2, add)
        add_within_month(m2, end)
    if len(parts) == 1 and not subtracts and "FROM plays" in parts[0]:
        return parts[0], params
    # Integer columns throughout, and milliseconds summed as float8 (exact below 2^53 ms):
    # numeric sums, Postgres' default for bigint, made this aggregate half the query's time.
    # A year less some of its months (a month less some of its days) can leave an id with
    # nothing: HAVING drops it.
    having = " HAVING sum(plays) > 0" if subtracts else ""
    if ids_only:
        return f"SELECT id FROM ({' UNION ALL '.join(parts)}) cover GROUP BY id{having}", params
    lead = ", sum(lead_plays)::int AS lead_plays" if extra else ""
    return (f"SELECT id, sum(plays)::int AS plays, sum(ms::float8)::bigint AS ms{lead} "
            f"FROM ({' UNION ALL '.join(parts)}) cover GROUP BY id{having}"), params


def _cover_months(m1: datetime, m2: datetime, add) -> None:
    """Cover whole UTC months [m1, m2) with the fewest rollup rows: a year's row where the
    span holds all of it, or most of it (less its other months' rows, subtracted), else
    month rows. A year holds about a third of the rows of its twelve months."""
    cursor, full_from = m1, None
    while cursor < m2:
        year_start, year_end = _year_floor(cursor), _year_floor(cursor).replace(year=cursor.year + 1)
        span_end = min(m2, year_end)
        months = (span_end.year - cursor.year) * 12 + span_end.month - cursor.month
        if months == 12:
            full_from = full_from or year_start
        else:
            if full_from:
                add("year", full_from, year_start)
                full_from = None
            if months >= 7:
                add("year", year_start, year_end)
                add("month", year_start, cursor, -1)
                add("month", span_end, year_end, -1)
            else:
                add("month", cursor, span_end)
        cursor = span_end
    if full_from:
        add("year", full_from, cursor)


def _day_bounds(period: Period) -> tuple[str, dict[str, Any]]:
    """The period's rows of listening_hours (local days, as the period is)."""
    if period.first_day is None:
        return "user_id = :uid AND day <= :last_day", {"last_day": period.last_day}
    return ("user_id = :uid AND day >= :first_day AND day <= :last_day",
            {"first_day": period.first_day, "last_day": period.last_day})


# --- panels ------------------------------------------------------------------------------------


@dataclass
class Totals:
    plays: int
    ms: int
    estimated: int  # plays whose listening time is the track's length (polled plays)
    tracks: int
    artists: int
    albums: int
    days: int
    # Podcast and audiobook episodes counted in `plays` and `ms`, when the person asks
    # (account.preferences.COUNT_PODCASTS); otherwise 0 and they are not in them.
    episode_plays: int = 0
    episode_ms: int = 0

    @property
    def minutes(self) -> int:
        return round(self.ms / 60_000)

    @property
    def estimated_share(self) -> float:
        return self.estimated / self.plays if self.plays else 0.0


def totals(conn: Connection, uid: int, period: Period) -> Totals:
    where, params = _day_bounds(period)
    plays, ms, estimated, days = conn.execute(sa.text(f"""
        SELECT coalesce(sum(plays), 0), coalesce(sum(ms), 0), coalesce(sum(estimated), 0), count(DISTINCT day)
          FROM listening_hours WHERE {where}
    """), {"uid": uid, **params}).one()
    sql, params = {}, {"uid": uid}
    for kind in KINDS:
        sql[kind], more = counts(kind, period.start, period.end, tag=kind, ids_only=True)
        params.update(more)
    tracks, artists, albums = conn.execute(sa.text(f"""
        SELECT (SELECT count(*) FROM ({sql["tracks"]}) c),
               (SELECT count(*) FROM ({sql["artists"]}) c),
               (SELECT count(*) FROM ({sql["albums"]}) c)
    """), params).one()
    return Totals(int(plays), int(ms), int(estimated), tracks, artists, albums, days)


@dataclass
class Ranked:
    id: int
    name: str
    plays: int
    ms: int
    spotify_id: str | None
    image_url: str | None
    subtitle: str | None  # artists of a track, artist of an album
    rank: int
    previous_rank: int | None = None  # None: new to the chart (or no previous period)

    @property
    def minutes(self) -> int:
        return round(self.ms / 60_000)

    @property
    def movement(self) -> int | None:
        return None if self.previous_rank is None else self.previous_rank - self.rank


def _ranking_sql(counts_sql: str, by: str) -> str:
    # Every credited artist gets the play (the rollups' rule): a featured artist's song
    # counts for them too.
    order = "ms" if by == "minutes" else "plays"
    return f"SELECT id, plays, ms FROM ({counts_sql}) c ORDER BY {order} DESC, plays DESC, id LIMIT :limit"


def top(conn: Connection, uid: int, period: Period, kind: str, by: str = "plays",
        limit: int = TOP_LIMIT) -> list[Ranked]:
    if kind not in KINDS:
        raise ValueError(kind)
    counts_sql, params = counts(kind, period.start, period.end)
    rows = conn.execute(sa.text(_ranking_sql(counts_sql, by)), {"uid": uid, "limit": limit, **params}).all()
    ranked = ranked_items(conn, kind, rows)
    previous = period.previous()
    if previous is not None and ranked:
        counts_sql, params = counts(kind, previous.start, previous.end)
        before = conn.execute(sa.text(_ranking_sql(counts_sql, by)),
                              {"uid": uid, "limit": MOVEMENT_DEPTH, **params}).all()
        ranks = {r.id: i + 1 for i, r in enumerate(before)}
        for item in ranked:
            item.previous_rank = ranks.get(item.id)
    return ranked


def ranked_items(conn: Connection, kind: str, rows) -> list[Ranked]:
    """Rows of (id, plays, ms), best first, with what it takes to show them."""
    details = describe(conn, kind, [r.id for r in rows])
    items = []
    for i, r in enumerate(rows):
        name, spotify_id, image, subtitle = details.get(r.id, ("(unknown)", None, None, None))
        items.append(Ranked(r.id, name, int(r.plays), int(r.ms), spotify_id, image, subtitle, rank=i + 1))
    return items


def describe(conn: Connection, kind: str, ids: list[int]) -> dict[int, tuple[str, str | None, str | None, str | None]]:
    """id -> (name, spotify id, image url, subtitle) for display."""
    if not ids:
        return {}
    if kind == "tracks":
        query = """
            SELECT t.id, t.name, t.spotify_id, al.image_url,
                   coalesce((SELECT string_agg(a.name, ', ' ORDER BY ta.position) FROM track_artists ta
                              JOIN artists a ON a.id = ta.artist_id WHERE ta.track_id = t.id), t.artist_name)
              FROM tracks t LEFT JOIN albums al ON al.id = t.album_id WHERE t.id = ANY(:ids)"""
    elif kind == "artists":
        query = "SELECT id, name, spotify_id, image_url, NULL FROM artists WHERE id = ANY(:ids)"
    else:
        query = """
            SELECT al.id, al.name, al.spotify_id, al.image_url,
                   coalesce((SELECT a.name FROM tracks t JOIN track_artists ta ON ta.track_id = t.id AND ta.position = 0
                              JOIN artists a ON a.id = ta.artist_id WHERE t.album_id = al.id LIMIT 1), al.artist_name)
              FROM albums al WHERE al.id = ANY(:ids)"""
    return {row[0]: tuple(row[1:]) for row in conn.execute(sa.text(query), {"ids": ids})}


def clock(conn: Connection, uid: int, period: Period) -> list[list[int]]:
    """Plays by local weekday (0 = Monday) and hour: 7 rows of 24."""
    where, params = _day_bounds(period)
    grid = [[0] * 24 for _ in range(7)]
    for weekday, hour, plays in conn.execute(sa.text(f"""
        SELECT extract(isodow FROM day)::int - 1, hour, sum(plays) FROM listening_hours WHERE {where} GROUP BY 1, 2
    """), {"uid": uid, **params}):
        grid[weekday][hour] = int(plays)
    return grid


@dataclass
class Timeline:
    unit: str  # day, week or month
    points: list[tuple[date, int]]


def timeline(conn: Connection, uid: int, period: Period) -> Timeline:
    where, params = _day_bounds(period)
    first_day = period.first_day
    if first_day is None:
        first_day = conn.execute(sa.text(f"SELECT min(day) FROM listening_hours WHERE {where}"),
                                 {"uid": uid, **params}).scalar()
        if first_day is None:
            return Timeline("month", [])
    days = (period.last_day - first_day).days + 1
    unit = "day" if days <= 45 else "week" if days <= 400 else "month"
    counts = {row[0]: int(row[1]) for row in conn.execute(sa.text(f"""
        SELECT date_trunc(:unit, day)::date, sum(plays) FROM listening_hours WHERE {where} GROUP BY 1
    """), {"uid": uid, "unit": unit, **params})}
    points, cursor = [], _truncate(first_day, unit)
    while cursor <= period.last_day:
        points.append((cursor, counts.get(cursor, 0)))
        cursor = _advance(cursor, unit)
    return Timeline(unit, points)


def _truncate(day: date, unit: str) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    return day


def _advance(day: date, unit: str) -> date:
    if unit == "day":
        return day + timedelta(days=1)
    if unit == "week":
        return day + timedelta(days=7)
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


@dataclass
class Discoveries:
    tracks: int
    artists: int
    top_tracks: list[Ranked] = field(default_factory=list)
    top_artists: list[Ranked] = field(default_factory=list)


def discoveries(conn: Connection, uid: int, period: Period, limit: int = 5) -> Discoveries:
    """Tracks and artists first played in the period (how many, and the most played)."""
    if period.start is None:  # over all time everything was a discovery once: only the counts
        tracks, artists = conn.execute(sa.text("""
            SELECT (SELECT count(*) FROM track_totals WHERE user_id = :uid),
                   (SELECT count(*) FROM artist_totals WHERE user_id = :uid)
        """), {"uid": uid}).one()
        return Discoveries(tracks, artists)
    params: dict[str, Any] = {"uid": uid, "limit": limit, "start": period.start, "end": period.end}
    new_track = "AND tt.first_played_at >= :start AND tt.first_played_at < :end"
    # A new track's artist is new unless one of their tracks was first played before: the
    # candidates are few, and each is checked through that artist's own tracks (OFFSET 0
    # keeps it a per-candidate probe; as an anti-join Postgres hashes all the user's tracks).
    new_artist = """AND NOT EXISTS (
        SELECT 1 FROM track_artists older JOIN track_totals ot ON ot.track_id = older.track_id
         WHERE older.artist_id = ta.artist_id AND ot.user_id = :uid AND ot.first_played_at < :start OFFSET 0)"""
    found = {}
    for kind, sql in (("tracks", f"""
        SELECT tt.track_id AS id, tt.plays, tt.ms FROM track_totals tt WHERE tt.user_id = :uid {new_track}"""), (
        "artists", f"""
        SELECT ta.artist_id AS id, sum(tt.plays) AS plays, sum(tt.ms) AS ms
          FROM track_totals tt JOIN track_artists ta ON ta.track_id = tt.track_id
         WHERE tt.user_id = :uid {new_track} {new_artist} GROUP BY ta.artist_id""")):
        rows = conn.execute(sa.text(f"""
            SELECT id, plays, ms, count(*) OVER () AS found FROM ({sql}) new ORDER BY plays DESC, id LIMIT :limit
        """), params).all()
        found[kind] = (rows[0].found if rows else 0, ranked_items(conn, kind, rows))
    return Discoveries(found["tracks"][0], found["artists"][0], found["tracks"][1], found["artists"][1])


@dataclass
class Habits:
    longest_streak: tuple[date, date, int] | None  # first day, last day, days
    busiest_day: tuple[date, int] | None
    sessions: list[tuple[datetime, datetime, int, int]]  # started, ended, plays, ms


def habits(conn: Connection, uid: int, period: Period, sessions: int = 3) -> Habits:
    where, params = _day_bounds(period)
    base = {"uid": uid, "start": period.start, "end": period.end, **params}
    streak = conn.execute(sa.text(f"""
        WITH days AS (SELECT DISTINCT day FROM listening_hours WHERE {where}),
             runs AS (SELECT day, day - (row_number() OVER (ORDER BY day))::int AS run FROM days)
        SELECT min(day), max(day), count(*) FROM runs GROUP BY run ORDER BY count(*) DESC, min(day) DESC LIMIT 1
    """), base).one_or_none()
    busiest = conn.execute(sa.text(f"""
        SELECT day, sum(plays) FROM listening_hours WHERE {where} GROUP BY 1 ORDER BY 2 DESC, 1 DESC LIMIT 1
    """), base).one_or_none()
    session_bounds = "AND started_at >= :start AND started_at < :end" if period.start else "AND started_at < :end"
    longest = conn.execute(sa.text(f"""
        SELECT started_at, ended_at, plays, ms FROM listening_sessions WHERE user_id = :uid {session_bounds}
         ORDER BY ended_at - started_at DESC, started_at DESC LIMIT :limit
    """), {**base, "limit": sessions}).all()
    return Habits(
        longest_streak=(streak[0], streak[1], int(streak[2])) if streak else None,
        busiest_day=(busiest[0], int(busiest[1])) if busiest and busiest[1] else None,
        sessions=[(r.started_at, r.ended_at, r.plays, int(r.ms)) for r in longest],
    )


@dataclass
class Genres:
    coverage: float  # share of plays whose primary artist has genre data
    top: list[tuple[str, int]]  # genre, plays

    @property
    def shown(self) -> bool:
        return self.coverage >= GENRE_COVERAGE and bool(self.top)


def genres(conn: Connection, uid: int, period: Period, limit: int = 10) -> Genres:
    """Genres of the artists credited first, weighted by those plays."""
    counts_sql, params = counts("artists", period.start, period.end)
    rows = conn.execute(sa.text(f"""
        WITH by_artist AS (SELECT c.id AS artist_id, c.lead_plays AS plays, a.genres
                             FROM ({counts_sql}) c JOIN artists a ON a.id = c.id WHERE c.lead_plays > 0),
             coverage AS (SELECT coalesce(sum(plays) FILTER (WHERE cardinality(genres) > 0), 0) AS with_genres,
                                 coalesce(sum(plays), 0) AS total FROM by_artist)
        SELECT g.genre, sum(b.plays) AS plays, (SELECT with_genres FROM coverage), (SELECT total FROM coverage)
          FROM by_artist b, unnest(b.genres) AS g(genre)
         GROUP BY g.genre ORDER BY 2 DESC, 1 LIMIT :limit
    """), {"uid": uid, "limit": limit, **params}).all()
    if not rows:
        return Genres(0.0, [])
    with_genres, total = rows[0][2], rows[0][3]
    return Genres(float(with_genres) / float(total) if total else 0.0, [(r.genre, int(r.plays)) for r in rows])
