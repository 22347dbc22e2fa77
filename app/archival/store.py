"""Writing a polled page into the archive: set-based SQL, inside the caller's transaction.

The catalogue is upserted from the track objects embedded in the page (artists, albums,
tracks, track_artists), then plays are inserted with ON CONFLICT DO NOTHING, so a page
seen twice, or overlapping the previous one, adds nothing twice. Only plays not yet in
the archive cost catalogue work: most polls bring a handful of new plays among 50.

Rows are written in a stable order (sorted Spotify ids) so that concurrent polls
upserting the same artists cannot deadlock on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..matching import Bounds, bounds, reach_ms, same_play
from ..models import SPOTIFY_SOURCES, PlaySource
from ..time import datetime_to_ms, ms_to_datetime
from .page import Gap, PolledAlbum, PolledArtist, PolledPlay, PolledTrack


@dataclass(frozen=True)
class Stored:
    new_plays: int
    new_played_at_ms: tuple[int, ...]


def already_archived(session: Session, user_id: int, plays: Sequence[PolledPlay]) -> list[PolledPlay]:
    """The page's plays the archive already holds: polled before, imported from a data
    export or submitted by a scrobbler (same track, the same play by matching.py's rule)."""
    if not plays:
        return []
    lengths = session.execute(sa.text("SELECT longest_ms, unknown_length FROM listen_lengths WHERE user_id = :u"),
                              {"u": user_id}).first()
    before, after = reach_ms(*(lengths or (None, False)))
    rows = session.execute(sa.text("""
        SELECT t.spotify_id, lower(t.name), lower(t.artist_name), (extract(epoch FROM p.played_at) * 1000)::bigint,
               p.source, p.ms_played
          FROM plays p JOIN tracks t ON t.id = p.track_id
         WHERE p.user_id = :user_id AND p.played_at BETWEEN :oldest AND :newest
    """), {"user_id": user_id,
           "oldest": ms_to_datetime(min(p.played_at_ms for p in plays) - before),
           "newest": ms_to_datetime(max(p.played_at_ms for p in plays) + after)})
    # Spotify's tracks by id; name-only ones (from a scrobbler or account data, before
    # Spotify's id for them was known) by their names, as imports/merge.py matches them.
    existing: dict[object, list[Bounds]] = {}
    for spotify_id, name, artist, ms, source, ms_played in rows:
        existing.setdefault(spotify_id or (name, artist), []).append(bounds(ms, source, ms_played))
    poll = int(PlaySource.poll)
    return [p for p in plays if any(same_play(bounds(p.played_at_ms, poll, None), other)
                                    for key in _keys(p.track) for other in existing.get(key, ()))]


def _keys(track: PolledTrack) -> list[object]:
    """How the archive may know a polled track: its id, or the names a name-only track of
    it would carry (any one of its artists, or all of them as players write them)."""
    name = track.name.lower()
    artists = [a.name.lower() for a in track.artists]
    return [track.spotify_id] + [(name, artist) for artist in artists] + (
        [(name, ", ".join(artists))] if len(artists) > 1 else [])


def store_plays(session: Session, user_id: int, plays: Sequence[PolledPlay]) -> Stored:
    known = set(map(id, already_archived(session, user_id, plays)))
    fresh = [p for p in plays if id(p) not in known]
    if not fresh:
        return Stored(0, ())
    track_ids = upsert_tracks(session, [p.track for p in fresh])
    fresh.sort(key=lambda p: p.played_at_ms)
    inserted = session.execute(sa.text("""
        INSERT INTO plays (played_at, user_id, track_id, ms_played, source)
        SELECT played_at, :user_id, track_id, NULL, :source
          FROM unnest(CAST(:played_at AS timestamptz[]), CAST(:track_id AS integer[])) AS t(played_at, track_id)
        ON CONFLICT DO NOTHING
        RETURNING (extract(epoch FROM played_at) * 1000)::bigint
    """), {"user_id": user_id, "source": int(PlaySource.poll),
           "played_at": [p.played_at for p in fresh],
           "track_id": [track_ids[p.track.spotify_id] for p in fresh]}).scalars().all()
    return Stored(len(inserted), tuple(sorted(inserted)))


def uncovered(session: Session, user_id: int, gap: Gap) -> Gap | None:
    """What is really missing of a gap the cursor suggests, given every play archived (an
    import may have filled it since the last poll): nothing when plays from a Spotify export
    reach the page, else from the newest Spotify play archived before the page (other
    players' listens say nothing about what Spotify lost)."""
    oldest = ms_to_datetime(gap.ends_ms)
    newest_before, imported_since = session.execute(sa.text("""
        SELECT (SELECT max(played_at) FROM plays WHERE user_id = :user_id AND played_at < :oldest
                                                  AND source = ANY(:spotify)),
               EXISTS (SELECT 1 FROM plays WHERE user_id = :user_id AND played_at >= :oldest
                                              AND source = ANY(:exports))
    """), {"user_id": user_id, "oldest": oldest, "spotify": [int(s) for s in SPOTIFY_SOURCES],
           "exports": [int(s) for s in SPOTIFY_SOURCES if s != PlaySource.poll]}).one()
    if imported_since:
        return None
    starts_ms = max(gap.starts_ms, datetime_to_ms(newest_before)) if newest_before else gap.starts_ms
    return Gap(starts_ms, gap.ends_ms) if starts_ms < gap.ends_ms else None


def record_gap(session: Session, user_id: int, gap: Gap) -> None:
    session.execute(sa.text("""
        INSERT INTO gaps (user_id, starts_at, ends_at, reason)
        VALUES (:user_id, :starts_at, :ends_at, :reason)
    """), {"user_id": user_id, "starts_at": ms_to_datetime(gap.starts_ms), "ends_at": ms_to_datetime(gap.ends_ms),
           "reason": "more than 50 plays between two polls: Spotify no longer showed the oldest of them"})


# --- catalogue ------------------------------------------------------------------------------


def upsert_tracks(session: Session, tracks: Iterable[PolledTrack]) -> dict[str, int]:
    """Make the catalogue know these full track objects: Spotify track id -> tracks.id,
    creating what is missing and completing what an import knew only by name."""
    unique = {t.spotify_id: t for t in tracks}
    if not unique:
        return {}
    artists = {a.spotify_id: a for t in unique.values() for a in t.artists}
    albums = {t.album.spotify_id: t.album for t in unique.values() if t.album}
    artist_ids = _upsert_artists(session, artists.values())
    album_ids = _upsert_albums(session, albums.values())

    ordered = sorted(unique.values(), key=lambda t: t.spotify_id)
    params = {
        "spotify_id": [t.spotify_id for t in ordered],
        "name": [t.name for t in ordered],
        "album_id": [album_ids.get(t.album.spotify_id) if t.album else None for t in ordered],
        "duration_ms": [t.duration_ms for t in ordered],
        "explicit": [t.explicit for t in ordered],
        "isrc": [t.isrc for t in ordered],
    }
    created = dict(session.execute(sa.text("""
        INSERT INTO tracks (spotify_id, name, album_id, duration_ms, explicit, isrc, enriched_at)
        SELECT *, now() FROM unnest(CAST(:spotify_id AS text[]), CAST(:name AS text[]), CAST(:album_id AS integer[]),
                                    CAST(:duration_ms AS integer[]), CAST(:explicit AS boolean[]), CAST(:isrc AS text[]))
        ON CONFLICT (spotify_id) DO NOTHING
        RETURNING spotify_id, id
    """), params).all())
    # Tracks an import created from names alone: these full objects resolve them (album,
    # artists in order, duration), replacing the name-only placeholders. Locked first, in id
    # order, as the plays triggers lock unresolved tracks (migration 0015): neither misses
    # the other's rollup change, and they cannot deadlock.
    session.execute(sa.text("SELECT id FROM tracks WHERE spotify_id = ANY(:ids) AND enriched_at IS NULL "
                            "ORDER BY id FOR NO KEY UPDATE"), {"ids": params["spotify_id"]})
    resolved = dict(session.execute(sa.text("""
        UPDATE tracks t SET name = u.name, album_id = u.album_id, duration_ms = u.duration_ms,
               explicit = u.explicit, isrc = u.isrc, enriched_at = now(), missing_at = NULL
          FROM unnest(CAST(:spotify_id AS text[]), CAST(:name AS text[]), CAST(:album_id AS integer[]),
                      CAST(:duration_ms AS integer[]), CAST(:explicit AS boolean[]), CAST(:isrc AS text[]))
               AS u(spotify_id, name, album_id, duration_ms, explicit, isrc)
         WHERE t.spotify_id = u.spotify_id AND t.enriched_at IS NULL
        RETURNING t.spotify_id, t.id
    """), params).all())
    if resolved:
        session.execute(sa.text("DELETE FROM track_artists WHERE track_id = ANY(:ids)"),
                        {"ids": list(resolved.values())})
    linked = created | resolved
    if linked:
        links = [(linked[t.spotify_id], position, artist_ids[a.spotify_id])
                 for t in ordered if t.spotify_id in linked for position, a in enumerate(t.artists)]
        if links:
            session.execute(sa.text("""
                INSERT INTO track_artists (track_id, position, artist_id)
                SELECT * FROM unnest(CAST(:track_id AS integer[]), CAST(:position AS smallint[]),
                                     CAST(:artist_id AS integer[]))
                ON CONFLICT DO NOTHING
            """), {"track_id": [link[0] for link in links], "position": [link[1] for link in links],
                   "artist_id": [link[2] for link in links]})
    return linked | _ids_of(session, "tracks", [s for s in unique if s not in linked])


def _upsert_artists(session: Session, artists: Iterable[PolledArtist]) -> dict[str, int]:
    ordered = sorted(artists, key=lambda a: a.spotify_id)
    if not ordered:
        return {}
    created = dict(session.execute(sa.text("""
        INSERT INTO artists (spotify_id, name)
        SELECT * FROM unnest(CAST(:spotify_id AS text[]), CAST(:name AS text[]))
        ON CONFLICT (spotify_id) DO NOTHING
        RETURNING spotify_id, id
    """), {"spotify_id": [a.spotify_id for a in ordered], "name": [a.name for a in ordered]}).all())
    return created | _ids_of(session, "artists", [a.spotify_id for a in ordered if a.spotify_id not in created])


def _upsert_albums(session: Session, albums: Iterable[PolledAlbum]) -> dict[str, int]:
    ordered = sorted(albums, key=lambda a: a.spotify_id)
    if not ordered:
        return {}
    created = dict(session.execute(sa.text("""
        INSERT INTO albums (spotify_id, name, album_type, release_date, release_date_precision, total_tracks, image_url)
        SELECT * FROM unnest(CAST(:spotify_id AS text[]), CAST(:name AS text[]), CAST(:album_type AS text[]),
                             CAST(:release_date AS text[]), CAST(:precision AS text[]), CAST(:total AS integer[]),
                             CAST(:image_url AS text[]))
        ON CONFLICT (spotify_id) DO NOTHING
        RETURNING spotify_id, id
    """), {
        "spotify_id": [a.spotify_id for a in ordered], "name": [a.name for a in ordered],
        "album_type": [a.album_type for a in ordered], "release_date": [a.release_date for a in ordered],
        "precision": [a.release_date_precision for a in ordered], "total": [a.total_tracks for a in ordered],
        "image_url": [a.image_url for a in ordered],
    }).all())
    return created | _ids_of(session, "albums", [a.spotify_id for a in ordered if a.spotify_id not in created])


def _ids_of(session: Session, table: str, spotify_ids: list[str]) -> dict[str, int]:
    """Ids of rows that already existed (or that a concurrent poll created a moment ago)."""
    if not spotify_ids:
        return {}
    return dict(session.execute(
        sa.text(f"SELECT spotify_id, id FROM {table} WHERE spotify_id = ANY(:ids)"), {"ids": spotify_ids}
    ).all())
