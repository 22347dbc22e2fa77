"""One artist, album or track through a user's eyes: when first and last heard, how much,
where it ranks in their all-time chart, plays over time, its top tracks, recent plays."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .history import Row, page
from .queries import Ranked, ranked_items

KINDS = ("artists", "albums", "tracks")


@dataclass
class EntityStats:
    kind: str
    id: int
    name: str
    spotify_id: str | None
    image_url: str | None
    subtitle: str | None
    plays: int
    ms: int
    first_played_at: datetime
    last_played_at: datetime
    rank: int
    ranked_among: int
    monthly: list[tuple[date, int]]  # calendar months (UTC), first play's month to last's
    top_tracks: list[Ranked] = field(default_factory=list)
    recent: list[Row] = field(default_factory=list)
    links: dict[str, list[dict]] = field(default_factory=dict)  # related artists/albums for a track or album

    @property
    def minutes(self) -> int:
        return round(self.ms / 60_000)


def _track_ids(conn: Connection, kind: str, entity_id: int) -> list[int]:
    query = {
        "tracks": "SELECT :id",
        "artists": "SELECT track_id FROM track_artists WHERE artist_id = :id",
        "albums": "SELECT id FROM tracks WHERE album_id = :id",
    }[kind]
    return conn.execute(sa.text(query), {"id": entity_id}).scalars().all()


def entity_stats(conn: Connection, uid: int, kind: str, entity_id: int) -> EntityStats | None:
    """None when this user has never played it."""
    if kind not in KINDS:
        raise ValueError(kind)
    ids = _track_ids(conn, kind, entity_id)
    plays, ms, first, last = conn.execute(sa.text("""
        SELECT coalesce(sum(plays), 0), coalesce(sum(ms), 0), min(first_played_at), max(last_played_at)
          FROM track_totals WHERE user_id = :uid AND track_id = ANY(:ids)
    """), {"uid": uid, "ids": ids}).one()
    if not plays:
        return None
    [item] = ranked_items(conn, kind, [_Row(entity_id, plays, ms)])
    rank, among = _rank(conn, uid, kind, int(plays))
    monthly = _monthly(conn, uid, ids)
    stats = EntityStats(kind, entity_id, item.name, item.spotify_id, item.image_url, item.subtitle, int(plays), int(ms),
                        first, last, rank, among, monthly)
    if kind != "tracks":
        rows = conn.execute(sa.text("""
            SELECT track_id AS id, plays, ms FROM track_totals WHERE user_id = :uid AND track_id = ANY(:ids)
             ORDER BY plays DESC, track_id LIMIT 10
        """), {"uid": uid, "ids": ids}).all()
        stats.top_tracks = ranked_items(conn, "tracks", rows)
    stats.recent, _ = page(conn, uid, None, track_ids=ids, limit=10)
    stats.links = _links(conn, kind, entity_id)
    return stats


@dataclass(frozen=True)
class _Row:
    id: int
    plays: int
    ms: int


def _rank(conn: Connection, uid: int, kind: str, plays: int) -> tuple[int, int]:
    """Rank in the user's all-time chart by plays (ties share a rank), and the chart's size."""
    table, column = {"tracks": ("track_totals", "track_id"), "artists": ("artist_totals", "artist_id"),
                     "albums": ("album_totals", "album_id")}[kind]
    source = f"SELECT {column} AS id, plays FROM {table} WHERE user_id = :uid"
    above, total = conn.execute(sa.text(f"""
        SELECT count(*) FILTER (WHERE plays > :plays), count(*) FROM ({source}) chart
    """), {"uid": uid, "plays": plays}).one()
    return above + 1, total


def _monthly(conn: Connection, uid: int, ids: list[int]) -> list[tuple[date, int]]:
    counts = {row[0].date(): int(row[1]) for row in conn.execute(sa.text("""
        SELECT month, sum(plays) FROM track_months WHERE user_id = :uid AND track_id = ANY(:ids) GROUP BY month
    """), {"uid": uid, "ids": ids})}
    if not counts:
        return []
    points, cursor, last = [], min(counts), max(counts)
    while cursor <= last:
        points.append((cursor, counts.get(cursor, 0)))
        cursor = (cursor + timedelta(days=32)).replace(day=1)
    return points


def _links(conn: Connection, kind: str, entity_id: int) -> dict[str, list[dict]]:
    """The artists of a track or album, and a track's album, for navigation."""
    links: dict[str, list[dict]] = {}
    if kind == "tracks":
        links["artists"] = [dict(r._mapping) for r in conn.execute(sa.text("""
            SELECT a.id, a.name, a.spotify_id FROM track_artists ta JOIN artists a ON a.id = ta.artist_id
             WHERE ta.track_id = :id ORDER BY ta.position"""), {"id": entity_id})]
        links["albums"] = [dict(r._mapping) for r in conn.execute(sa.text("""
            SELECT al.id, al.name, al.spotify_id FROM tracks t JOIN albums al ON al.id = t.album_id
             WHERE t.id = :id"""), {"id": entity_id})]
    elif kind == "albums":
        links["artists"] = [dict(r._mapping) for r in conn.execute(sa.text("""
            SELECT DISTINCT ON (a.id) a.id, a.name, a.spotify_id FROM tracks t
              JOIN track_artists ta ON ta.track_id = t.id AND ta.position = 0 JOIN artists a ON a.id = ta.artist_id
             WHERE t.album_id = :id ORDER BY a.id LIMIT 5"""), {"id": entity_id})]
    return links
