"""Listens as ListenBrainz's API gives them: a play's `listened_at` is when it STARTED
(ListenBrainz's and scrobblers' convention, Unix seconds), while Spotify stamps a play
when it ends; so a play's listened_at is its end less what was played (`ms_played`, else
the track's length). Newest first, as ListenBrainz orders them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..matching import SQL_START_STAMPED
from ..models import SOURCE_LABELS, SPOTIFY_SOURCES, PlaySource, User

DEFAULT_COUNT = 25  # ListenBrainz's DEFAULT_ITEMS_PER_GET
MAX_COUNT = 1000  # its MAX_ITEMS_PER_GET
MAX_TS = 2**31 - 1  # Unix seconds Postgres and clients agree on


class QueryError(ValueError):
    """A request ListenBrainz would answer with 400; the message is its error."""


@dataclass(frozen=True)
class Window:
    min_ts: int | None
    max_ts: int | None
    count: int


def window(args) -> Window:
    """min_ts / max_ts / count from a request's query string, checked as ListenBrainz does."""
    values = {}
    for name in ("min_ts", "max_ts", "count"):
        raw = args.get(name)
        if raw in (None, ""):
            values[name] = None
            continue
        try:
            values[name] = int(raw)
        except ValueError:
            raise QueryError(f"'{name}' should be a positive integer") from None
        if not 0 <= values[name] <= MAX_TS:
            raise QueryError(f"'{name}' should be a positive integer")
    if values["min_ts"] is not None and values["max_ts"] is not None:
        raise QueryError("You may only specify max_ts or min_ts, not both.")
    count = DEFAULT_COUNT if values["count"] is None else min(values["count"], MAX_COUNT)
    return Window(values["min_ts"], values["max_ts"], count)


PUBLIC = "public_listens"  # users.preferences: True when anyone may read the user's listens


def is_public(user: User) -> bool:
    return (user.preferences or {}).get(PUBLIC) is True


def owner(session: Session, name: str, reader: User | None) -> User | None:
    """Whose listens `name` names, if `reader` may read them: listens are private, so only
    their owner (by API token) may, unless the owner made them public (Settings → API)."""
    user = session.scalar(sa.select(User).where(User.spotify_id == name))
    if user is None:
        return None
    if is_public(user) or (reader is not None and reader.id == user.id):
        return user
    return None


# What was played: a listen of unknown length is stored at its start (0), a Spotify play
# without ms_played (polled) lasted its track.
_LENGTH = f"coalesce(p.ms_played, CASE WHEN p.source IN ({SQL_START_STAMPED}) THEN 0 ELSE t.duration_ms END, 0)"
_LISTENS = """
    WITH recent AS (
        SELECT p.played_at, p.ms_played, p.source, p.track_id, p.client_id,
               p.played_at - make_interval(secs => {length} / 1000.0) AS started
          FROM plays p JOIN tracks t ON t.id = p.track_id
         WHERE p.user_id = :uid {bounds}
         ORDER BY p.played_at {order} LIMIT :count
    )
    SELECT floor(extract(epoch FROM r.started))::bigint AS listened_at, r.played_at, r.ms_played, r.source,
           (SELECT name FROM play_clients WHERE id = r.client_id) AS client,
           t.name AS track, t.spotify_id, t.isrc, t.duration_ms, al.name AS album,
           coalesce((SELECT string_agg(a.name, ', ' ORDER BY ta.position) FROM track_artists ta
                      JOIN artists a ON a.id = ta.artist_id WHERE ta.track_id = t.id), t.artist_name, '') AS artists
      FROM recent r JOIN tracks t ON t.id = r.track_id LEFT JOIN albums al ON al.id = t.album_id
     ORDER BY r.played_at DESC
"""
# A play ends within a day of its start: bounds on the start become index ranges on the end.
_AFTER = ("AND p.played_at > to_timestamp(:min_ts) AND p.played_at - make_interval(secs => "
          "{length} / 1000.0) >= to_timestamp(:min_ts + 1)")
_BEFORE = ("AND p.played_at < to_timestamp(:max_ts) + interval '1 day' AND p.played_at - make_interval(secs => "
           "{length} / 1000.0) < to_timestamp(:max_ts)")
_LISTENS, _AFTER, _BEFORE = (sql.replace("{length}", _LENGTH) for sql in (_LISTENS, _AFTER, _BEFORE))


def listens(session: Session, user: User, win: Window) -> list[dict]:
    """The listens in `win`, newest first, in ListenBrainz's JSON shape."""
    if win.min_ts is not None:  # the `count` listens just after min_ts
        sql = _LISTENS.format(bounds=_AFTER, order="ASC")
    else:
        sql = _LISTENS.format(bounds=_BEFORE if win.max_ts is not None else "", order="DESC")
    rows = session.execute(sa.text(sql), {"uid": user.id, "count": win.count, "min_ts": win.min_ts,
                                          "max_ts": win.max_ts}).all()
    return [_listen(user, row) for row in rows]


def _listen(user: User, row) -> dict:
    if row.source in SPOTIFY_SOURCES:
        info = {"submission_client": SOURCE_LABELS[PlaySource(row.source)], "music_service": "spotify.com",
                "listening_from": "spotify"}
    else:
        info = {"submission_client": row.client or SOURCE_LABELS.get(row.source, "Audiospective")}
    if row.spotify_id:
        info["spotify_id"] = f"https://open.spotify.com/track/{row.spotify_id}"
        info["origin_url"] = info["spotify_id"]
    if row.isrc:
        info["isrc"] = row.isrc
    duration = row.ms_played if row.ms_played is not None else row.duration_ms
    if duration:
        info["duration_ms"] = int(duration)
    metadata = {"artist_name": row.artists, "track_name": row.track, "additional_info": info}
    if row.album:
        metadata["release_name"] = row.album
    return {"listened_at": int(row.listened_at), "track_metadata": metadata, "user_name": user.spotify_id,
            "inserted_at": int(row.played_at.astimezone(timezone.utc).timestamp())}


def listen_count(session: Session, user: User) -> int:
    return int(session.scalar(sa.text("SELECT coalesce(sum(plays), 0) FROM track_totals WHERE user_id = :uid"),
                              {"uid": user.id}))


def latest_ts(session: Session, user: User) -> int:
    latest: datetime | None = session.scalar(sa.text("SELECT max(played_at) FROM plays WHERE user_id = :uid"),
                                             {"uid": user.id})
    return int(latest.timestamp()) if latest else 0


def playing_now_metadata(row) -> dict:
    """A playing_now row as ListenBrainz's track_metadata."""
    info = {}
    if row.client:
        info["submission_client"] = row.client
    if row.spotify_id:
        info["spotify_id"] = f"https://open.spotify.com/track/{row.spotify_id}"
    if row.duration_ms:
        info["duration_ms"] = row.duration_ms
    metadata = {"artist_name": row.artist_name, "track_name": row.track_name, "additional_info": info}
    if row.release_name:
        metadata["release_name"] = row.release_name
    return metadata
