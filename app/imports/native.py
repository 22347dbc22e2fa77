"""Audiospective's own JSON export, read back (its fields: docs/exports.md).

A native file holds the archive as it was: plays to the millisecond with their source
(poll, extended history, account data) and what was played where known, and the
catalogue they point to, by the file's own ids. It is read in passes over the same file,
each streamed (ijson, behind sources.py's structure guard), so memory does not grow with
the file:

1. before staging: the catalogue sections and the gaps are copied into temporary tables
   (`stage_catalogue`);
2. while staging: each play is staged with a reference to its track (`read_play`);
3. after staging: plays get their track's Spotify id and names from the staged catalogue
   (`resolve`: a play whose track the file does not describe is malformed), and catalogue
   entries this instance lacks are created as the file describes them, with their
   credited artists in order and their album (`add_catalogue`); the merge then finds
   them, by Spotify id or, for name-only tracks, by names as for account data;
4. after the merge: gaps this archive does not have are added (`restore_gaps`).

Podcast and audiobook plays (`shows`, `episodes`, `episode_plays`) are read after the
plays (`episode_plays`): shows and episodes by the file's ids into memory (at most
MAX_EPISODES), then each play staged as an episode play, as Spotify's would be.

No counting rule applies: the plays were counted when they were archived. The usual
matching applies, so importing a file into the archive it came from adds nothing.
Catalogue rows this instance has already are left as they are (enrichment keeps them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, NamedTuple

import psycopg

from ..models import PlaySource
from ..time import ms_to_datetime, played_at_ms
from . import clients
from .formats import AUDIOBOOK_KIND, MALFORMED, PODCAST, EpisodePlay, _clean, _count, _storable
from .sources import InputError, Member, rows, top_level_value

VERSION = 1
SOURCES = {source.name: int(source) for source in PlaySource}  # as exports/files.py writes them
MAX_ID = 2**31 - 1
FILE_SHIFT = 32  # references are (file number << 32) | the file's id: ids only mean something in their file
MAX_GENRES = 50


class NativePlay(NamedTuple):
    played_at_ms: int
    source: int
    track_ref: int
    ms_played: int | None
    client: str | None = None  # the player of a listen sent through the API


def check(member: Member) -> None:
    """Refuse a file of a version this code does not know (a newer app wrote it)."""
    with member.open() as stream:
        version = top_level_value(stream, member.name, "version")
    if version != VERSION:
        raise InputError(f"{member.name} is an Audiospective export of version {version}, and this server reads "
                         f"version {VERSION}. Import it into an instance as new as the one that wrote it.")


def read_play(row: Any, file_no: int) -> NativePlay | str:
    if type(row) is not dict:
        return MALFORMED
    played = played_at_ms(row.get("played_at"))
    track = _id(row.get("track"))
    source = SOURCES.get(row.get("source")) if type(row.get("source")) is str else None
    ms_played = row.get("ms_played")
    if ms_played is not None:
        ms_played = _count(ms_played)
        if ms_played is None or ms_played > MAX_ID:
            return MALFORMED
    if played is None or track is None or source is None:
        return MALFORMED
    # A player name that cannot be stored costs the play its player, not its place.
    return NativePlay(played, source, _ref(file_no, track), ms_played, _text(row.get("client"), 200))


# --- the catalogue, staged --------------------------------------------------------------------

TABLES = """
    CREATE TEMP TABLE native_artists (ref bigint, spotify_id text, name text, genres text[], image_url text)
        ON COMMIT DROP;
    CREATE TEMP TABLE native_albums (ref bigint, spotify_id text, name text, artist_name text, album_type text,
        release_date text, release_date_precision text, total_tracks integer, image_url text, label text)
        ON COMMIT DROP;
    CREATE TEMP TABLE native_tracks (ref bigint, spotify_id text, name text, artist_name text, album_ref bigint,
        duration_ms integer, explicit boolean, isrc text, artist_refs bigint[]) ON COMMIT DROP;
    CREATE TEMP TABLE native_gaps (starts_at timestamptz, ends_at timestamptz, reason text, detected_at timestamptz,
        filled_at timestamptz) ON COMMIT DROP;
"""


def create_tables(conn: psycopg.Connection) -> None:
    conn.execute(TABLES)


def stage_catalogue(conn: psycopg.Connection, member: Member, file_no: int) -> None:
    """Copy the file's artists, albums, tracks and gaps into the temporary tables. Entries
    that cannot be read are left out (plays of a track left out are counted malformed)."""
    sections = (
        ("artists", "native_artists (ref, spotify_id, name, genres, image_url)", _artist),
        ("albums", "native_albums (ref, spotify_id, name, artist_name, album_type, release_date, "
                   "release_date_precision, total_tracks, image_url, label)", _album),
        ("tracks", "native_tracks (ref, spotify_id, name, artist_name, album_ref, duration_ms, explicit, isrc, "
                   "artist_refs)", _track),
        ("gaps", "native_gaps (starts_at, ends_at, reason, detected_at, filled_at)", _gap),
    )
    with conn.cursor() as cursor:
        for section, target, shape in sections:
            with cursor.copy(f"COPY {target} FROM STDIN") as copy:
                for item in rows(member, prefix=f"{section}.item"):
                    values = shape(item, file_no) if type(item) is dict else None
                    if values is not None:
                        copy.write_row(values)
    conn.execute("ANALYZE native_tracks")


def resolve(conn: psycopg.Connection) -> int:
    """Give staged native plays their track's Spotify id and names; returns how many
    name a track the file does not describe (they are no longer counted)."""
    conn.execute("""
        UPDATE import_stage s
           SET spotify_id = t.spotify_id, track_name = t.name, album_name = t.album_name,
               artist_name = coalesce(t.artist_name, t.first_artist, '')
          FROM (SELECT DISTINCT ON (nt.ref) nt.ref, nt.spotify_id, nt.name, nt.artist_name, al.name AS album_name,
                       (SELECT na.name FROM native_artists na WHERE na.ref = nt.artist_refs[1] LIMIT 1) AS first_artist
                  FROM native_tracks nt
                  LEFT JOIN LATERAL (SELECT name FROM native_albums WHERE ref = nt.album_ref LIMIT 1) al ON true
                 ORDER BY nt.ref) t
         WHERE s.track_ref = t.ref
    """)
    clients.resolve(conn)
    return conn.execute("UPDATE import_stage SET counted = false "
                        "WHERE track_ref IS NOT NULL AND track_name IS NULL AND counted").rowcount


def add_catalogue(conn: psycopg.Connection) -> None:
    """Create what the file describes and this instance does not have, as the file
    describes it: artists, albums, and tracks with their album and credited artists (by
    Spotify id, or for name-only entries by name). Only entries a staged play leads to."""
    # One row per track, keyed as the merge keys them: by Spotify id, else by names.
    conn.execute("""
        CREATE TEMP TABLE native_used ON COMMIT DROP AS
        SELECT DISTINCT ON (key) t.ref, t.spotify_id, t.name, coalesce(t.artist_name, s.artist_name) AS artist_name,
               t.album_ref, t.duration_ms, t.explicit, t.isrc, t.artist_refs,
               coalesce(t.spotify_id, lower(t.name) || chr(31) || lower(coalesce(t.artist_name, s.artist_name))) AS key
          FROM native_tracks t
          JOIN (SELECT DISTINCT ON (track_ref) track_ref, artist_name FROM import_stage WHERE counted
                 ORDER BY track_ref) s ON s.track_ref = t.ref
         ORDER BY key, t.ref
    """)
    artists = "SELECT a.* FROM native_artists a WHERE a.ref IN (SELECT unnest(artist_refs) FROM native_used)"
    albums = "SELECT al.* FROM native_albums al WHERE al.ref IN (SELECT album_ref FROM native_used)"
    conn.execute(f"""
        INSERT INTO artists (spotify_id, name, genres, image_url)
        SELECT DISTINCT ON (spotify_id) spotify_id, name, genres, image_url FROM ({artists}) a
         WHERE spotify_id IS NOT NULL ORDER BY spotify_id, ref
        ON CONFLICT (spotify_id) DO NOTHING
    """)
    conn.execute(f"""
        INSERT INTO artists (name)
        SELECT DISTINCT ON (lower(name)) name FROM ({artists}) a WHERE spotify_id IS NULL ORDER BY lower(name), ref
        ON CONFLICT (lower(name)) WHERE spotify_id IS NULL DO NOTHING
    """)
    conn.execute(f"""
        INSERT INTO albums (spotify_id, name, artist_name, album_type, release_date, release_date_precision,
                            total_tracks, image_url, label)
        SELECT DISTINCT ON (spotify_id) spotify_id, name, artist_name, album_type, release_date,
               release_date_precision, total_tracks, image_url, label
          FROM ({albums}) al WHERE spotify_id IS NOT NULL ORDER BY spotify_id, ref
        ON CONFLICT (spotify_id) DO NOTHING
    """)
    conn.execute(f"""
        INSERT INTO albums (name, artist_name)
        SELECT DISTINCT ON (lower(name), lower(coalesce(artist_name, ''))) name, coalesce(artist_name, '')
          FROM ({albums}) al WHERE spotify_id IS NULL ORDER BY lower(name), lower(coalesce(artist_name, '')), ref
        ON CONFLICT (lower(name), lower(artist_name)) WHERE spotify_id IS NULL DO NOTHING
    """)
    # Tracks, with their album; name-only ones as account-data imports name them (the merge
    # then finds them by those names). What each insert created gets its credits below.
    album_of = """
        LEFT JOIN LATERAL (SELECT * FROM native_albums WHERE ref = u.album_ref LIMIT 1) na ON true
        LEFT JOIN albums al ON (na.spotify_id IS NOT NULL AND al.spotify_id = na.spotify_id)
                            OR (na.spotify_id IS NULL AND al.spotify_id IS NULL AND lower(al.name) = lower(na.name)
                                AND lower(al.artist_name) = lower(coalesce(na.artist_name, '')))"""
    conn.execute(f"""
        CREATE TEMP TABLE native_created ON COMMIT DROP AS
        WITH inserted AS (
            INSERT INTO tracks (spotify_id, name, album_id, duration_ms, explicit, isrc)
            SELECT u.spotify_id, u.name, al.id, u.duration_ms, u.explicit, u.isrc FROM native_used u {album_of}
             WHERE u.spotify_id IS NOT NULL ORDER BY u.spotify_id
            ON CONFLICT (spotify_id) DO NOTHING
            RETURNING id, spotify_id
        )
        SELECT i.id, u.artist_refs FROM inserted i JOIN native_used u ON u.spotify_id = i.spotify_id
    """)
    conn.execute(f"""
        WITH inserted AS (
            INSERT INTO tracks (name, artist_name, album_id, duration_ms, explicit, isrc)
            SELECT u.name, u.artist_name, al.id, u.duration_ms, u.explicit, u.isrc FROM native_used u {album_of}
             WHERE u.spotify_id IS NULL
            ON CONFLICT DO NOTHING  -- a name-only track of that key exists (either unique index)
            RETURNING id, name, artist_name
        )
        INSERT INTO native_created
        SELECT i.id, u.artist_refs FROM inserted i
          JOIN native_used u ON u.spotify_id IS NULL AND lower(u.name) = lower(i.name)
                            AND lower(u.artist_name) = lower(i.artist_name)
    """)
    conn.execute("""
        INSERT INTO track_artists (track_id, position, artist_id)
        SELECT DISTINCT ON (c.id, credit.position) c.id, credit.position - 1, a.id
          FROM native_created c
          CROSS JOIN LATERAL unnest(c.artist_refs) WITH ORDINALITY AS credit(ref, position)
          JOIN LATERAL (SELECT * FROM native_artists WHERE ref = credit.ref LIMIT 1) na ON true
          JOIN artists a ON (na.spotify_id IS NOT NULL AND a.spotify_id = na.spotify_id)
                         OR (na.spotify_id IS NULL AND a.spotify_id IS NULL AND lower(a.name) = lower(na.name))
         WHERE credit.position <= 32767
         ORDER BY c.id, credit.position
        ON CONFLICT DO NOTHING
    """)


def restore_gaps(conn: psycopg.Connection, user_id: int) -> int:
    """Add the file's gaps this archive does not have; returns how many."""
    return conn.execute("""
        INSERT INTO gaps (user_id, starts_at, ends_at, reason, detected_at, filled_at)
        SELECT DISTINCT ON (g.starts_at, g.ends_at) %(user)s, g.starts_at, g.ends_at, g.reason,
               coalesce(g.detected_at, now()), g.filled_at
          FROM native_gaps g
         WHERE NOT EXISTS (SELECT 1 FROM gaps x WHERE x.user_id = %(user)s AND x.starts_at = g.starts_at
                                                  AND x.ends_at = g.ends_at)
         ORDER BY g.starts_at, g.ends_at
    """, {"user": user_id}).rowcount


# --- one catalogue entry: the values to COPY, or None to leave it out ---------------------------------


MAX_EPISODES = 200_000  # far above anyone's listening; what bounds this reader's memory
KINDS = {"podcast": PODCAST, "audiobook": AUDIOBOOK_KIND}


def episode_plays(member: Member) -> Iterator[EpisodePlay | str]:
    """The file's podcast and audiobook plays, each as an EpisodePlay or a skip reason."""
    shows: dict[int, tuple[int, str]] = {}
    for item in rows(member, prefix="shows.item"):
        if type(item) is dict and _id(item.get("id")) is not None and item.get("kind") in KINDS \
                and _text(item.get("name")):
            shows[_id(item["id"])] = (KINDS[item["kind"]], _text(item["name"]))
    episodes: dict[int, tuple[int, str, str, str | None]] = {}
    for item in rows(member, prefix="episodes.item"):
        if len(episodes) >= MAX_EPISODES:
            raise InputError(f"{member.name} describes more than {MAX_EPISODES:,} podcast episodes; refusing it.")
        if type(item) is dict and _id(item.get("id")) is not None and _id(item.get("show")) in shows \
                and _text(item.get("name")):
            kind, show = shows[_id(item["show"])]
            spotify_id = item.get("spotify_id")
            episodes[_id(item["id"])] = (kind, show, _text(item["name"]),
                                         spotify_id if isinstance(spotify_id, str) and spotify_id.isalnum()
                                         and len(spotify_id) <= 64 else None)
    for row in rows(member, prefix="episode_plays.item"):
        if type(row) is not dict:
            yield MALFORMED
            continue
        played, ms_played = played_at_ms(row.get("played_at")), _int(row.get("ms_played"))
        source = SOURCES.get(row.get("source")) if type(row.get("source")) is str else None
        episode = episodes.get(_id(row.get("episode")))
        if played is None or ms_played is None or source is None or episode is None:
            yield MALFORMED
            continue
        kind, show, name, spotify_id = episode
        yield EpisodePlay(played, source, kind, show, name, spotify_id, ms_played)


def _ref(file_no: int, value: int) -> int:
    return (file_no << FILE_SHIFT) | value


def _id(value: Any) -> int | None:
    return value if type(value) is int and 0 < value <= MAX_ID else None


def _text(value: Any, limit: int = 1000) -> str | None:
    if type(value) is not str or len(value) > limit or not _storable(value):
        return None
    return _clean(value)


def _spotify_id(value: Any) -> str | None:
    return value if type(value) is str and 0 < len(value) <= 64 and value.isascii() and value.isalnum() else None


def _url(value: Any) -> str | None:
    """An image address as enrichment stores them (Spotify's CDN; the simulator's in demo
    mode). Pages only load images from the hosts the Content Security Policy allows."""
    text = _text(value, 2000)
    return text if text and text.startswith(("https://", "http://")) else None


def _int(value: Any) -> int | None:
    number = _count(value) if value is not None else None
    return number if number is not None and number <= MAX_ID else None


def _artist(item: dict, file_no: int) -> tuple | None:
    ref, name = _id(item.get("id")), _text(item.get("name"))
    if ref is None or name is None:
        return None
    genres = item.get("genres")
    genres = [g for g in (_text(g, 200) for g in genres[:MAX_GENRES]) if g] if type(genres) is list else None
    return _ref(file_no, ref), _spotify_id(item.get("spotify_id")), name, genres, _url(item.get("image_url"))


def _album(item: dict, file_no: int) -> tuple | None:
    ref, name = _id(item.get("id")), _text(item.get("name"))
    if ref is None or name is None:
        return None
    return (_ref(file_no, ref), _spotify_id(item.get("spotify_id")), name, _text(item.get("artist_name")),
            _text(item.get("album_type"), 40), _text(item.get("release_date"), 20),
            _text(item.get("release_date_precision"), 10), _int(item.get("total_tracks")), _url(item.get("image_url")),
            _text(item.get("label")))


def _track(item: dict, file_no: int) -> tuple | None:
    ref, name = _id(item.get("id")), _text(item.get("name"))
    if ref is None or name is None:
        return None
    album = _id(item.get("album"))
    artists = item.get("artists")
    credits = [_ref(file_no, a) for a in (_id(a) for a in artists[:100]) if a is not None] \
        if type(artists) is list else []
    explicit = item.get("explicit")
    return (_ref(file_no, ref), _spotify_id(item.get("spotify_id")), name, _text(item.get("artist_name")),
            _ref(file_no, album) if album else None, _int(item.get("duration_ms")),
            explicit if type(explicit) is bool else None, _text(item.get("isrc"), 20), credits)


def _gap(item: dict, file_no: int) -> tuple | None:
    starts, ends = played_at_ms(item.get("starts_at")), played_at_ms(item.get("ends_at"))
    if starts is None or ends is None or ends < starts:
        return None
    detected, filled = played_at_ms(item.get("detected_at")), played_at_ms(item.get("filled_at"))
    return (_moment(starts), _moment(ends), _text(item.get("reason"), 500) or "imported",
            _moment(detected), _moment(filled))


def _moment(ms: int | None) -> datetime | None:
    return ms_to_datetime(ms) if ms is not None else None
