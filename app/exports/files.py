"""The export formats (docs/exports.md), each written row by row from a server-side cursor
into a binary sink, so memory does not grow with the archive.

    json      complete and versioned: the catalogue the plays point to, every play to the
              millisecond with its source and ms_played, the gaps. `audiospective import`
              reads it back into the same archive.
    csv       one row per play for spreadsheets: RFC 4180, UTF-8 with a byte-order mark
    spotify   a zip of Streaming_History_Audio_<years>_<n>.json in Spotify's own field
              names and types, for tools that read Spotify's export (this one included)
    listenbrainz  ListenBrainz's user export: a zip of user.json and listens/<year>/<month>.jsonl,
              one listen a line, stamped at its start; what ListenBrainz and Koito import

All of them read one snapshot (the caller's REPEATABLE READ transaction): the catalogue and
the plays of a JSON export agree even while polls add plays.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import IO, Callable, Iterator

import psycopg

from ..matching import SQL_START_STAMPED
from ..models import SOURCE_LABELS, SPOTIFY_SOURCES, PlaySource

FORMAT_VERSION = 1
FETCH_ROWS = 5000
SPOTIFY_FILE_ROWS = 15_000  # Spotify's own files hold ~15-18k rows (~12 MB)
SPOTIFY_DIR = "Spotify Extended Streaming History"
SOURCE_NAMES = {int(s): s.name for s in PlaySource}
# Cells a spreadsheet would run as a formula (CSV injection): such text gets a leading '.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Progress = Callable[[int], None]  # rows written so far


@dataclass(frozen=True)
class Scope:
    """Whose plays, and which: local dates in the user's zone, inclusive; None = unbounded."""

    user_id: int
    timezone: str
    period_from: date | None = None
    period_to: date | None = None

    def where(self, alias: str = "p") -> tuple[str, dict]:
        """The SQL condition on plays `alias`, and its parameters."""
        sql = f"{alias}.user_id = %(user)s"
        params: dict = {"user": self.user_id, "tz": self.timezone}
        if self.period_from:
            sql += f" AND {alias}.played_at >= (%(from)s::date)::timestamp AT TIME ZONE %(tz)s"
            params["from"] = self.period_from
        if self.period_to:
            sql += f" AND {alias}.played_at < ((%(to)s::date + 1)::timestamp AT TIME ZONE %(tz)s)"
            params["to"] = self.period_to
        return sql, params


def count_plays(conn: psycopg.Connection, scope: Scope) -> int:
    where, params = scope.where()
    return conn.execute(f"SELECT count(*) FROM plays p WHERE {where}", params).fetchone()[0]


def _stream(conn: psycopg.Connection, sql: str, params: dict) -> Iterator[tuple]:
    # A plan for all the rows, not the first ones (a cursor's default), and fetched in batches.
    conn.execute("SET LOCAL cursor_tuple_fraction = 1")
    with conn.cursor(name="export_rows") as cursor:
        cursor.itersize = FETCH_ROWS
        cursor.execute(sql, params)
        yield from cursor


# Plays with what a row needs: track, its album, its artists' names joined.
_PLAYS = """
    WITH mine AS MATERIALIZED (SELECT DISTINCT p.track_id FROM plays p WHERE {where}),
    names AS (
        SELECT ta.track_id, string_agg(a.name, ', ' ORDER BY ta.position) AS artists,
               (array_agg(a.name ORDER BY ta.position))[1] AS first_artist
          FROM track_artists ta JOIN artists a ON a.id = ta.artist_id
         WHERE ta.track_id IN (SELECT track_id FROM mine) GROUP BY ta.track_id
    )
    SELECT {columns}
      FROM plays p JOIN tracks t ON t.id = p.track_id
      LEFT JOIN albums al ON al.id = t.album_id
      LEFT JOIN names n ON n.track_id = t.id
     WHERE {where}
     ORDER BY p.played_at, p.track_id
"""


def _plays(conn: psycopg.Connection, scope: Scope, columns: str) -> Iterator[tuple]:
    where, params = scope.where()
    return _stream(conn, _PLAYS.format(where=where, columns=columns), params)


# --- CSV ------------------------------------------------------------------------------------------

CSV_HEADER = ["played_at_local", "played_at_utc", "timezone", "track", "artists", "album", "duration_ms",
              "ms_played", "source", "spotify_uri", "isrc"]


def write_csv(conn: psycopg.Connection, scope: Scope, out: IO[bytes], progress: Progress) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    text.write("\ufeff")  # the byte-order mark: how Excel knows the file is UTF-8
    writer = csv.writer(text, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_HEADER)
    rows = 0
    for row in _plays(conn, scope, """
            to_char(p.played_at AT TIME ZONE %(tz)s, 'YYYY-MM-DD HH24:MI:SS'),
            to_char(p.played_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), %(tz)s,
            t.name, coalesce(n.artists, t.artist_name), al.name, t.duration_ms, p.ms_played, p.source,
            'spotify:track:' || t.spotify_id, t.isrc"""):
        row = list(row)
        row[8] = SOURCE_NAMES.get(row[8], row[8])
        for i in (3, 4, 5):
            if row[i] and row[i].startswith(_FORMULA_START):
                row[i] = "'" + row[i]
        writer.writerow(row)
        rows += 1
        if rows % FETCH_ROWS == 0:
            progress(rows)
    text.flush()
    text.detach()
    return rows


# --- native JSON ----------------------------------------------------------------------------------

def write_json(conn: psycopg.Connection, scope: Scope, out: IO[bytes], progress: Progress, *,
               header: dict) -> int:
    """{"format": "audiospective", "version": 1, …header, "artists": [...], "albums": [...],
    "tracks": [...], "plays": [...], "gaps": [...]}: the catalogue first, so a reader can
    resolve each play's track as it streams past."""
    where, params = scope.where()
    text = io.TextIOWrapper(out, encoding="utf-8", newline="\n", write_through=True)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    text.write('{"format":"audiospective","version":%d' % FORMAT_VERSION)
    for key, value in header.items():
        text.write(f",{dumps(key)}:{dumps(value)}")
    mine = f"SELECT DISTINCT p.track_id FROM plays p WHERE {where}"

    def section(name: str, sql: str, shape: Callable[[tuple], dict]) -> None:
        text.write(f',\n"{name}":[')
        first = True
        for row in _stream(conn, sql, params):
            text.write(("\n" if first else ",\n") + dumps(shape(row)))
            first = False
        text.write("]")

    section("artists", f"""
        SELECT a.id, a.spotify_id, a.name, a.genres, a.image_url FROM artists a
         WHERE a.id IN (SELECT ta.artist_id FROM track_artists ta WHERE ta.track_id IN ({mine})) ORDER BY a.id""",
            lambda r: {"id": r[0], "spotify_id": r[1], "name": r[2], "genres": r[3], "image_url": r[4]})
    section("albums", f"""
        SELECT al.id, al.spotify_id, al.name, al.artist_name, al.album_type, al.release_date,
               al.release_date_precision, al.total_tracks, al.image_url, al.label FROM albums al
         WHERE al.id IN (SELECT t.album_id FROM tracks t WHERE t.id IN ({mine})) ORDER BY al.id""",
            lambda r: {"id": r[0], "spotify_id": r[1], "name": r[2], "artist_name": r[3], "album_type": r[4],
                       "release_date": r[5], "release_date_precision": r[6], "total_tracks": r[7],
                       "image_url": r[8], "label": r[9]})
    section("tracks", f"""
        SELECT t.id, t.spotify_id, t.name, t.artist_name, t.album_id, t.duration_ms, t.explicit, t.isrc,
               (SELECT array_agg(ta.artist_id ORDER BY ta.position) FROM track_artists ta WHERE ta.track_id = t.id)
          FROM tracks t WHERE t.id IN ({mine}) ORDER BY t.id""",
            lambda r: {"id": r[0], "spotify_id": r[1], "name": r[2], "artist_name": r[3], "album": r[4],
                       "duration_ms": r[5], "explicit": r[6], "isrc": r[7], "artists": r[8] or []})
    text.write(',\n"plays":[')
    rows = 0
    for played_at, track, ms_played, source, client in _stream(conn, f"""
            SELECT to_char(p.played_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), p.track_id,
                   p.ms_played, p.source, c.name
              FROM plays p LEFT JOIN play_clients c ON c.id = p.client_id
             WHERE {where} ORDER BY p.played_at, p.track_id""", params):
        text.write('%s{"played_at":"%s","track":%d,"ms_played":%s,"source":"%s"%s}' % (
            ",\n" if rows else "\n", played_at, track, "null" if ms_played is None else ms_played,
            SOURCE_NAMES.get(source, "unknown"), "" if client is None else ',"client":' + dumps(client)))
        rows += 1
        if rows % FETCH_ROWS == 0:
            progress(rows)
    text.write("]")
    gap_where = "g.user_id = %(user)s"
    if scope.period_from:
        gap_where += " AND g.ends_at >= (%(from)s::date)::timestamp AT TIME ZONE %(tz)s"
    if scope.period_to:
        gap_where += " AND g.starts_at < ((%(to)s::date + 1)::timestamp AT TIME ZONE %(tz)s)"
    iso = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'"
    section("gaps", f"""
        SELECT to_char(g.starts_at AT TIME ZONE 'UTC', {iso}), to_char(g.ends_at AT TIME ZONE 'UTC', {iso}),
               g.reason, to_char(g.detected_at AT TIME ZONE 'UTC', {iso}),
               to_char(g.filled_at AT TIME ZONE 'UTC', {iso})
          FROM gaps g WHERE {gap_where} ORDER BY g.starts_at""",
            lambda r: {"starts_at": r[0], "ends_at": r[1], "reason": r[2], "detected_at": r[3], "filled_at": r[4]})
    # Podcasts and audiobooks (app/podcasts): their shows, episodes or chapters, and plays.
    episode_where, _ = scope.where("ep")
    heard = f"SELECT DISTINCT ep.episode_id FROM episode_plays ep WHERE {episode_where}"
    section("shows", f"""
        SELECT s.id, s.kind, s.name FROM shows s
         WHERE s.id IN (SELECT e.show_id FROM episodes e WHERE e.id IN ({heard})) ORDER BY s.id""",
            lambda r: {"id": r[0], "kind": r[1], "name": r[2]})
    section("episodes", f"SELECT e.id, e.spotify_id, e.show_id, e.name FROM episodes e WHERE e.id IN ({heard}) "
                        "ORDER BY e.id",
            lambda r: {"id": r[0], "spotify_id": r[1], "show": r[2], "name": r[3]})
    section("episode_plays", f"""
        SELECT to_char(ep.played_at AT TIME ZONE 'UTC', {iso}), ep.episode_id, ep.ms_played, ep.source
          FROM episode_plays ep WHERE {episode_where} ORDER BY ep.played_at, ep.episode_id""",
            lambda r: {"played_at": r[0], "episode": r[1], "ms_played": r[2],
                       "source": SOURCE_NAMES.get(r[3], "unknown")})
    text.write("}\n")
    text.flush()
    text.detach()
    return rows


# --- Spotify's extended streaming history shape ---------------------------------------------------

def write_spotify(conn: psycopg.Connection, scope: Scope, out: IO[bytes], progress: Progress) -> int:
    """Spotify's field names, order and types. What the archive does not know is null
    (country, reasons…); `ms_played` is the track's length where the archive has no figure
    (polled plays: Spotify counted them as played); a play's `ts` is its end, to the
    second; `master_metadata_album_artist_name` is the album's artist, as Spotify's.
    `platform` names where a play that Spotify did not record came from (the player's
    name, or "Last.fm", …), so such plays are not passed off as Spotify's."""
    rows = 0
    batch: list[str] = []
    years: list[int] = []
    file_no = 0
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        def write_file() -> None:
            nonlocal file_no
            span = f"{years[0]}" if years[0] == years[-1] else f"{years[0]}-{years[-1]}"
            with archive.open(f"{SPOTIFY_DIR}/Streaming_History_Audio_{span}_{file_no}.json", "w",
                              force_zip64=True) as member:
                member.write(("[\n  " + ",\n  ".join(batch) + "\n]\n").encode("utf-8"))
            file_no += 1
            batch.clear()
            years.clear()

        for year, ts, ms_played, track, album_artist, album, spotify_id, source, client in _plays(conn, scope, """
                extract(year FROM p.played_at AT TIME ZONE 'UTC')::int,
                to_char(p.played_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                coalesce(p.ms_played, t.duration_ms, 0), t.name,
                coalesce(al.artist_name, n.first_artist, t.artist_name), al.name, t.spotify_id, p.source,
                (SELECT name FROM play_clients WHERE id = p.client_id)"""):
            platform = None if source in SPOTIFY_SOURCES else client or SOURCE_LABELS.get(source)
            batch.append(dumps({
                "ts": ts, "platform": platform, "ms_played": ms_played, "conn_country": None, "ip_addr": None,
                "master_metadata_track_name": track, "master_metadata_album_artist_name": album_artist,
                "master_metadata_album_album_name": album,
                "spotify_track_uri": f"spotify:track:{spotify_id}" if spotify_id else None,
                "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
                "audiobook_title": None, "audiobook_uri": None, "audiobook_chapter_uri": None,
                "audiobook_chapter_title": None, "reason_start": None, "reason_end": None, "shuffle": None,
                "skipped": None, "offline": None, "offline_timestamp": None, "incognito_mode": None,
            }))
            years.append(year)
            rows += 1
            if len(batch) == SPOTIFY_FILE_ROWS:
                write_file()
                progress(rows)
        if batch:
            write_file()
    return rows


# --- ListenBrainz --------------------------------------------------------------------------------

def write_listenbrainz(conn: psycopg.Connection, scope: Scope, out: IO[bytes], progress: Progress, *,
                       header: dict) -> int:
    """ListenBrainz's user export layout: `user.json`, then `listens/<year>/<month>.jsonl`
    by the month (UTC) each listen STARTED, one listen a line, as ListenBrainz writes them:
    `listened_at` the start in Unix seconds (the archive's end less what was played, or the
    track's length), `track_metadata` with names, and in `additional_info` the length,
    Spotify link, ISRC and where the play came from. Plays stream in order of their end,
    so a month's file is written once no later play can have started in it (a play lasts
    less than a day)."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    rows = 0
    pending: dict[tuple[int, int], list[str]] = {}
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr("user.json", dumps({"user_id": scope.user_id, "username": header["user"]["spotify_id"]}))

        def flush(before: tuple[int, int] | None) -> None:
            for month in sorted(m for m in pending if before is None or m < before):
                with archive.open(f"listens/{month[0]}/{month[1]}.jsonl", "w", force_zip64=True) as member:
                    member.write(("\n".join(pending.pop(month)) + "\n").encode("utf-8"))

        for (started, day_before, ended, length, source, track, artists, album, spotify_id, isrc,
             client) in _plays(conn, scope, f"""
                floor(extract(epoch FROM p.played_at) - coalesce(p.ms_played, CASE WHEN p.source IN
                      ({SQL_START_STAMPED}) THEN 0 ELSE t.duration_ms END, 0) / 1000.0)::bigint AS started,
                to_char((p.played_at - interval '1 day') AT TIME ZONE 'UTC', 'YYYYMM')::int,
                extract(epoch FROM p.played_at),
                coalesce(p.ms_played, t.duration_ms), p.source, t.name, coalesce(n.artists, t.artist_name, ''),
                al.name, t.spotify_id, t.isrc, (SELECT name FROM play_clients WHERE id = p.client_id)"""):
            moment = datetime.fromtimestamp(started, timezone.utc)
            month = (moment.year, moment.month)
            info: dict = {"submission_client": client or SOURCE_LABELS.get(source, "Audiospective")}
            if source in SPOTIFY_SOURCES:
                info |= {"music_service": "spotify.com", "listening_from": "spotify"}
            if length:
                info["duration_ms"] = int(length)
            if spotify_id:
                info["spotify_id"] = info["origin_url"] = f"https://open.spotify.com/track/{spotify_id}"
            if isrc:
                info["isrc"] = isrc
            metadata = {"artist_name": artists, "track_name": track, "additional_info": info}
            if album:
                metadata["release_name"] = album
            pending.setdefault(month, []).append(dumps({"listened_at": started, "inserted_at": float(ended),
                                                        "track_metadata": metadata}))
            rows += 1
            # Nothing ending after this play's end less a day can have started before that month.
            flush((day_before // 100, day_before % 100))
            if rows % FETCH_ROWS == 0:
                progress(rows)
        flush(None)
    return rows
