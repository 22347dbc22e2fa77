"""The listening history: plays newest first, a page at a time, searchable.

Keyset pagination on the primary key (user_id, played_at, track_id): every page costs the
same at any depth, never OFFSET. A search (track, artist or album name) first finds the
user's matching tracks, then walks back through the UTC months that `track_months` says
hold plays of them, so a track heard three times in ten years is found without reading
ten years of plays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..models import SOURCE_LABELS, SPOTIFY_SOURCES, PlaySource
from ..time import datetime_to_ms, ms_to_datetime

PAGE = 50
MAX_MATCHES = 5000

# The History page's source filter: key -> (label, the plays.source values it covers).
SOURCES = {
    "spotify": ("Spotify", SPOTIFY_SOURCES),
    "scrobblers": ("Other players (API)", (PlaySource.listen,)),
    "lastfm": ("Last.fm", (PlaySource.lastfm,)),
    "listenbrainz": ("ListenBrainz", (PlaySource.listenbrainz,)),
    "maloja": ("Maloja", (PlaySource.maloja,)),
    "apple": ("Apple Music", (PlaySource.apple_music,)),
    "youtube": ("YouTube Music", (PlaySource.youtube_music,)),
}


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the next page holds plays strictly before this (played_at, track_id)."""

    played_at: datetime
    track_id: int

    def encode(self) -> str:
        return f"{datetime_to_ms(self.played_at)}.{self.track_id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        try:
            ms, track_id = (text or "").split(".")
            if not 0 <= int(track_id) < 2**31:  # a track id that fits no row
                return None
            return cls(ms_to_datetime(int(ms)), int(track_id))
        except (ValueError, OverflowError):  # not a cursor, or beyond the calendar
            return None

    @classmethod
    def at(cls, moment: datetime) -> Cursor:
        """Just after every play before `moment` (for 'jump to a date')."""
        return cls(moment, 0)


@dataclass
class Row:
    played_at: datetime
    track_id: int
    track: str
    track_spotify_id: str | None
    artists: list[dict]  # {id, name, spotify_id}
    album_id: int | None
    album: str | None
    album_spotify_id: str | None
    image_url: str | None
    ms_played: int | None
    source: int
    client: str | None  # the player that submitted a listen

    @property
    def source_label(self) -> str:
        """Where the play came from, as the page shows it ("Spotify export", "Pano Scrobbler")."""
        return self.client or SOURCE_LABELS.get(self.source, "Unknown")


_ROW = """
    SELECT p.played_at, p.track_id, t.name AS track, t.spotify_id AS track_spotify_id,
           coalesce((SELECT json_agg(json_build_object('id', a.id, 'name', a.name, 'spotify_id', a.spotify_id)
                                     ORDER BY ta.position)
                       FROM track_artists ta JOIN artists a ON a.id = ta.artist_id WHERE ta.track_id = t.id),
                    '[]'::json) AS artists,
           al.id AS album_id, al.name AS album, al.spotify_id AS album_spotify_id, al.image_url, p.ms_played, p.source,
           (SELECT name FROM play_clients WHERE id = p.client_id) AS client
      FROM plays p JOIN tracks t ON t.id = p.track_id LEFT JOIN albums al ON al.id = t.album_id
"""
_IN_SOURCES = "AND (CAST(:sources AS smallint[]) IS NULL OR p.source = ANY(CAST(:sources AS smallint[])))"


def page(conn: Connection, uid: int, cursor: Cursor | None, *, track_ids: list[int] | None = None,
         source: str | None = None, limit: int = PAGE) -> tuple[list[Row], Cursor | None]:
    """One page of plays before `cursor` (from one of SOURCES, if `source` names one), and
    the cursor of the next page (None: no more)."""
    before = cursor or Cursor(datetime(9999, 1, 1, tzinfo=timezone.utc), 0)
    sources = [int(s) for s in SOURCES[source][1]] if source else None
    if track_ids is None:
        rows = conn.execute(sa.text(f"""{_ROW}
             WHERE p.user_id = :uid AND (p.played_at, p.track_id) < (:before, :before_track) {_IN_SOURCES}
             ORDER BY p.played_at DESC, p.track_id DESC LIMIT :limit
        """), {"uid": uid, "before": before.played_at, "before_track": before.track_id, "limit": limit + 1,
               "sources": sources}).all()
    else:
        rows = _search_page(conn, uid, before, track_ids, limit + 1, sources)
    result = [Row(*r) for r in rows[:limit]]
    more = len(rows) > limit
    return result, (Cursor(result[-1].played_at, result[-1].track_id) if more and result else None)


def _search_page(conn: Connection, uid: int, before: Cursor, track_ids: list[int], want: int,
                 sources: list[int] | None) -> list:
    if not track_ids:
        return []
    months = conn.execute(sa.text("""
        SELECT DISTINCT month FROM track_months
         WHERE user_id = :uid AND track_id = ANY(:ids) AND month <= :before ORDER BY month DESC
    """), {"uid": uid, "ids": track_ids, "before": before.played_at}).scalars().all()
    found: list = []
    for month in months:
        month_end = (month + timedelta(days=32)).replace(day=1)
        found += conn.execute(sa.text(f"""{_ROW}
             WHERE p.user_id = :uid AND p.played_at >= :month AND p.played_at < :month_end
               AND (p.played_at, p.track_id) < (:before, :before_track) AND p.track_id = ANY(:ids) {_IN_SOURCES}
             ORDER BY p.played_at DESC, p.track_id DESC LIMIT :limit
        """), {"uid": uid, "month": month, "month_end": month_end, "before": before.played_at,
               "before_track": before.track_id, "ids": track_ids, "limit": want - len(found),
               "sources": sources}).all()
        if len(found) >= want:
            break
    return found


def matching_tracks(conn: Connection, uid: int, query: str) -> list[int]:
    """The user's tracks whose name, artist or album contains `query` (case-insensitive)."""
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if len(query) >= 3:
        # From the catalogue's trigram indexes (migration 0016) to the user's tracks: a few
        # index probes, however many tracks the user has.
        sql = """
            SELECT tt.track_id FROM track_totals tt
             WHERE tt.user_id = :uid AND tt.track_id IN (
                   SELECT id FROM tracks WHERE name ILIKE :q OR artist_name ILIKE :q
                   UNION ALL SELECT t.id FROM albums al JOIN tracks t ON t.album_id = al.id WHERE al.name ILIKE :q
                   UNION ALL SELECT ta.track_id FROM artists a JOIN track_artists ta ON ta.artist_id = a.id
                                                WHERE a.name ILIKE :q)
             LIMIT :limit"""
    else:  # no trigram to look up: read the user's own tracks
        sql = """
            SELECT tt.track_id FROM track_totals tt
              JOIN tracks t ON t.id = tt.track_id LEFT JOIN albums al ON al.id = t.album_id
             WHERE tt.user_id = :uid
               AND (t.name ILIKE :q OR al.name ILIKE :q OR t.artist_name ILIKE :q
                    OR EXISTS (SELECT 1 FROM track_artists ta JOIN artists a ON a.id = ta.artist_id
                                WHERE ta.track_id = t.id AND a.name ILIKE :q))
             LIMIT :limit"""
    return conn.execute(sa.text(sql), {"uid": uid, "q": pattern, "limit": MAX_MATCHES}).scalars().all()
