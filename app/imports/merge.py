"""Staging and merging imported plays: COPY into a temporary table, then set-based SQL.

Runs inside the import's single transaction on one psycopg connection; the temporary
tables disappear with it. Order of work:

1. duplicates within the upload: the same track ending at the same moment, twice (Spotify's
   files repeat rows across file boundaries), then account-data rows that are the same
   play as an extended-history row of the upload (even one skipped as private or short:
   its verdict stands);
2. tracks: extended rows name their track by Spotify id: unknown ones are created with the
   export's names and linked to name-only album and artist rows until enrichment resolves
   them; rows without an id (account data, and extended history from before 2021) are
   matched by track and artist name against what this user has played (and this upload
   names), else become name-only tracks;
   Listens (from the API, app/api/ingest.py) may also name their track by ISRC, and
   name their artists as players show them ("A, B"): both are tried. A listen's end is
   then its start plus the track's length (matching.py);
3. plays already in the archive (polled, imported or submitted before): same track, and
   the same play by matching.py's rule;
4. everything else is inserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg

from .. import archive_lock
from ..matching import SQL_START_STAMPED, UNCERTAINTY_MS, farthest_ms, reach_ms, sql_bounds, sql_same_play
from ..models import PlaySource
from ..podcasts.merge import merge_episodes
from .formats import EpisodePlay, Play
from .native import NativePlay

# `counted` is false for extended rows that were skipped but identify a play (private,
# short, …): they are staged only so account-data rows of the same plays are skipped too.
STAGE = """
    CREATE TEMP TABLE import_stage (
        row_no integer, source smallint, played_ms bigint, spotify_id text,
        track_name text, artist_name text, album_name text, ms_played integer, counted boolean,
        track_ref bigint,  -- native rows: their track in the file's catalogue (imports/native.py)
        isrc text, client_id smallint,  -- listens: their player, from client_name (clients.py)
        client_name text,  -- the player a listen came from (API listens, an Audiospective export's)
        episode_kind smallint  -- episodes and chapters (podcasts.py): the show in artist_name, the episode in track_name
    ) ON COMMIT DROP
"""
COPY = ("COPY import_stage (row_no, source, played_ms, spotify_id, track_name, artist_name, album_name, ms_played, "
        "counted, track_ref, isrc, episode_kind, client_name) FROM STDIN")
# What identifies a row's track within the upload.
ROW_KEY = "coalesce(spotify_id, track_key || chr(31) || artist_key)"
# A row without a Spotify id is matched by its names in lower case: lowered once, here.
# (Lowering is not cheap outside the C locale: done in each step that needs the names, it
# was a second of a 250,000-row Last.fm import.)
NAME_KEYS = ", ".join(f"CASE WHEN spotify_id IS NULL THEN lower({name}_name) END AS {name}_key"
                      for name in ("track", "artist", "album"))
# Scrobbles' played_ms is their START until their track (and so its length) is known.
SCROBBLED = f"IN ({SQL_START_STAMPED})"


class AccountGone(Exception):
    """The user was deleted while their import was being read."""


class Stager:
    """Streams plays into the staging table with COPY, as a context manager: leaving it
    with an exception aborts the COPY, so the connection can roll back cleanly."""

    def __init__(self, conn: psycopg.Connection):
        conn.execute(STAGE)
        self._cursor = conn.cursor()
        self._copy_cm = self._cursor.copy(COPY)
        self.staged = 0

    def __enter__(self) -> Stager:
        self._copy = self._copy_cm.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._copy_cm.__exit__(*exc_info)
        finally:
            self._cursor.close()

    def add(self, row_no: int, play: Play) -> None:
        self._copy.write_row((row_no, play.source, play.played_at_ms, play.spotify_id, play.track_name,
                              play.artist_name, play.album_name, play.ms_played, True, None, play.isrc, None, None))
        self.staged += 1

    def add_native(self, row_no: int, play: NativePlay) -> None:
        """A play of Audiospective's own export: names come from its catalogue later."""
        self._copy.write_row((row_no, play.source, play.played_at_ms, None, None, None, None, play.ms_played, True,
                              play.track_ref, None, None, play.client))
        self.staged += 1

    def add_skipped(self, row_no: int, played_ms: int, track_name: str) -> None:
        self._copy.write_row((row_no, int(PlaySource.extended_history), played_ms, None, track_name, None, None,
                              None, False, None, None, None, None))

    def add_episode(self, row_no: int, play: EpisodePlay) -> None:
        self._copy.write_row((row_no, play.source, play.played_at_ms, play.spotify_id, play.episode, play.show, None,
                              play.ms_played, True, None, None, play.kind, None))
        self.staged += 1


@dataclass
class Merged:
    duplicate_in_upload: int
    already_in_archive: int
    imported: int  # music plays
    episodes: int  # podcast episode and audiobook chapter plays (app/podcasts)
    new_tracks: int
    name_only_tracks: int
    gaps_filled: int
    first_ms: int | None
    last_ms: int | None


def merge(conn: psycopg.Connection, user_id: int, staged: int, stage: callable = lambda name: None, *,
          fill_gaps: bool = True) -> Merged:
    """Merge the staged rows into the user's plays. `fill_gaps`: the rows are Spotify's
    own record of a period (an export), so gaps they span are filled; other players'
    listens say nothing about what Spotify's recently-played lost."""
    extended, account = int(PlaySource.extended_history), int(PlaySource.account_data)
    # The user's archive lock, until the import commits: a poll waits for the merge (or is
    # rescheduled), so it never inserts a play the merge has matched or is inserting, and
    # the merge sees every play a poll committed before it.
    stage("waiting for a poll in progress")
    conn.execute(archive_lock.for_transaction_sql("%(user)s"), {"user": user_id})
    # An account deleted while this import was read: nothing may be written for it.
    if conn.execute("SELECT 1 FROM users WHERE id = %s FOR KEY SHARE", (user_id,)).fetchone() is None:
        raise AccountGone(f"user {user_id} was deleted during the import")
    # Sorts and hashes of a whole upload in memory: at the default 4 MB, a 250,000-row
    # import's de-duplication and name matching spilled to disk (26 MB and 15 MB sorts).
    # Only this transaction's statements, and each node takes only what it needs.
    conn.execute("SET LOCAL work_mem = '64MB'")
    episodes = merge_episodes(conn, user_id)
    staged -= episodes.staged
    stage("removing duplicates within the upload")
    conn.execute(f"""
        CREATE TEMP TABLE import_rows ON COMMIT DROP AS
        SELECT row_no, source, 'epoch'::timestamptz + played_ms * interval '1 millisecond' AS played_at, played_ms,
               spotify_id, track_name, artist_name, album_name, ms_played, isrc, client_id,
               track_ref IS NOT NULL AS native,  -- an Audiospective export's row: played_at as archived
               {NAME_KEYS}, NULL::integer AS track_id, false AS duplicate, false AS known
          FROM import_stage WHERE counted
    """)
    conn.execute("ANALYZE import_rows")  # a table made by a query has no statistics: the joins below need them
    # The same track at the same moment more than once: the first row stays. Grouped by
    # hashing, and deleted only where there are any (most uploads have none): sorting the
    # whole upload by that key (DISTINCT ON) was a second of a 250,000-row import.
    if conn.execute(f"""
        CREATE TEMP TABLE import_repeated ON COMMIT DROP AS
        SELECT source, {ROW_KEY} AS row_key, played_ms, min(row_no) AS first FROM import_rows
         GROUP BY 1, 2, 3 HAVING count(*) > 1
    """).rowcount:
        conn.execute("ANALYZE import_repeated")  # or a nested loop over the rows can look cheapest
        conn.execute(f"""
            DELETE FROM import_rows r USING import_repeated d
             WHERE r.source = d.source AND r.played_ms = d.played_ms AND r.row_no > d.first
               AND {ROW_KEY} IS NOT DISTINCT FROM d.row_key  -- (unqualified: import_repeated has no such columns)
        """)
    unique, has_account = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE source = {account}) > 0 FROM import_rows").fetchone()
    if has_account and _exists(conn, f"import_stage WHERE source = {extended}"):
        # Account data repeats plays the extended history holds (counted or skipped): the
        # extended row's verdict stands. Matched by track name: account data names the track's
        # artist, the extended history the album's.
        early, late = _offsets(PlaySource.account_data, PlaySource.extended_history)
        conn.execute(f"CREATE INDEX ON import_stage (lower(track_name), played_ms) WHERE source = {extended}")
        conn.execute("ANALYZE import_stage")
        conn.execute(f"""
            UPDATE import_rows a SET duplicate = true
             WHERE a.source = {account} AND EXISTS (
                   SELECT 1 FROM import_stage e
                    WHERE e.source = {extended} AND lower(e.track_name) = a.track_key
                      AND e.played_ms BETWEEN a.played_ms + {early} AND a.played_ms + {late})
        """)

    stage("finding tracks")
    new_tracks = _resolve_by_spotify_id(conn)
    has_names = _exists(conn, "import_rows WHERE spotify_id IS NULL AND NOT duplicate")
    has_listens = _exists(conn, f"import_rows WHERE source {SCROBBLED}")
    if has_listens:
        _resolve_by_isrc(conn, user_id)
    name_only = _resolve_by_names(conn, user_id) if has_names else 0
    if has_listens:
        # A listen ends a track's length after it starts: the listen's own, else the catalogue's
        # (none known: it stays at its start, and its rows are not rewritten for nothing). An
        # Audiospective export's listens are as archived, already moved: never twice.
        conn.execute(f"""
            UPDATE import_rows r SET played_at = r.played_at + make_interval(secs => r.ms_played / 1000.0)
             WHERE r.source {SCROBBLED} AND r.ms_played IS NOT NULL AND NOT r.native
        """)
        conn.execute(f"""
            UPDATE import_rows r SET ms_played = t.duration_ms,
                   played_at = r.played_at + make_interval(secs => t.duration_ms / 1000.0)
              FROM tracks t
             WHERE r.source {SCROBBLED} AND r.ms_played IS NULL AND t.id = r.track_id AND t.duration_ms IS NOT NULL
               AND NOT r.native
        """)

    stage("matching against your archive")
    # One index probe per row: the user's plays in the row's time window, from the plays
    # primary key (user_id, played_at, track_id). OFFSET 0 keeps Postgres from turning the
    # EXISTS into a hash join on track_id, which it picks when the statistics of plays are
    # stale (as right after a big import) and which compares every row with every play of
    # the same track: quadratic for favourite tracks (minutes for a re-imported history).
    before, after = _reach(conn, user_id)
    row, play = ("r.played_at", "r.source", "r.ms_played"), ("p.played_at", "p.source", "p.ms_played")
    mine = sql_bounds(*row)
    first, last, longest = conn.execute(
        "SELECT min(played_at), max(played_at), coalesce(max(ms_played), 0) FROM import_rows WHERE NOT duplicate"
    ).fetchone()
    # How far before and after a row the plays it may be the same play as can lie.
    back, on = (timedelta(milliseconds=farthest_ms(longest) + reach) for reach in (before, after))
    # A first import (or one of years the archive does not reach) has nothing to match:
    # one probe of the plays index instead of one per row; and only rows near the
    # archive's first and last plays can match any (an import of the years before it
    # began, say, mostly cannot).
    archived_first, archived_last = conn.execute("SELECT min(played_at), max(played_at) FROM plays WHERE user_id = %s",
                                                 (user_id,)).fetchone()
    if first is not None and _exists(conn, "plays WHERE user_id = %s AND played_at BETWEEN %s AND %s",
                                     (user_id, first - back, last + on)):
        conn.execute("ANALYZE import_rows")  # track ids found: the statistics matching is planned by
        # The general forms only where they are needed: their extra joins and comparisons, per
        # candidate play, made re-importing a Spotify export three times slower.
        aliases = _same_tracks(conn, user_id)
        same_track = ("FROM import_same s JOIN plays p ON p.track_id = s.same WHERE s.track_id = r.track_id"
                      if aliases else "FROM plays p WHERE p.track_id = r.track_id")
        ends_only = not has_listens and before == reach_ms(None, False)[0] and after == reach_ms(None, False)[1]
        # Only rows of a track the user has plays of (or whose aliases they have) can match
        # one: a hashed look-up first (inside CASE, so the planner cannot make it a join
        # after the probe), and the index probe only for those. The tracks this import just
        # created have no plays; into an archive of other music, that was every row probed
        # for nothing.
        played = ("SELECT s.track_id FROM import_same s JOIN track_totals tt ON tt.track_id = s.same"
                  if aliases else "SELECT tt.track_id FROM track_totals tt") + " WHERE tt.user_id = %(user)s"
        conn.execute(f"""
            UPDATE import_rows r SET known = true
             WHERE NOT r.duplicate AND r.played_at BETWEEN %(from)s AND %(to)s
               AND CASE WHEN r.track_id IN ({played}) THEN EXISTS (
                   SELECT 1 {same_track} AND p.user_id = %(user)s
                      AND p.played_at BETWEEN {mine['end_lo']} - make_interval(secs => {before / 1000})
                                          AND {mine['end_hi']} + make_interval(secs => {after / 1000})
                      AND {sql_same_play(row, play, ends_only=ends_only)}
                   OFFSET 0) ELSE false END
        """, {"user": user_id, "from": archived_first - on, "to": archived_last + back})

    stage("saving plays")
    imported = conn.execute("""
        INSERT INTO plays (played_at, user_id, track_id, ms_played, source, client_id)
        SELECT played_at, %(user)s, track_id, ms_played, source, client_id
          FROM import_rows WHERE NOT duplicate AND NOT known
         ORDER BY played_at  -- appends to the (user_id, played_at, …) index instead of scattering into it
        ON CONFLICT DO NOTHING
    """, {"user": user_id}).rowcount
    if has_listens:
        conn.execute(f"""
            INSERT INTO listen_lengths AS l (user_id, longest_ms, unknown_length)
            SELECT %(user)s, max(ms_played), bool_or(ms_played IS NULL) FROM import_rows
             WHERE source {SCROBBLED} AND NOT duplicate AND NOT known
            HAVING count(*) > 0
            ON CONFLICT (user_id) DO UPDATE
               SET longest_ms = greatest(l.longest_ms, excluded.longest_ms),
                   unknown_length = l.unknown_length OR excluded.unknown_length
        """, {"user": user_id})
    duplicates_across, candidates, known, first, last = conn.execute("""
        SELECT count(*) FILTER (WHERE duplicate), count(*) FILTER (WHERE NOT duplicate AND NOT known),
               count(*) FILTER (WHERE known), min(played_ms), max(played_ms)
          FROM import_rows""").fetchone()
    known += candidates - imported

    gaps = conn.execute("""
        UPDATE gaps SET filled_at = now()
         WHERE user_id = %(user)s AND filled_at IS NULL
           AND starts_at >= 'epoch'::timestamptz + %(first)s * interval '1 millisecond'
           AND ends_at <= 'epoch'::timestamptz + %(last)s * interval '1 millisecond'
    """, {"user": user_id, "first": first, "last": last}).rowcount if first is not None and fill_gaps else 0
    return Merged(duplicate_in_upload=(staged - unique) + duplicates_across + episodes.duplicate_in_upload,
                  already_in_archive=known + episodes.already_in_archive, imported=imported, episodes=episodes.added,
                  new_tracks=new_tracks, name_only_tracks=name_only, gaps_filled=gaps, first_ms=first, last_ms=last)


def _resolve_by_spotify_id(conn: psycopg.Connection) -> int:
    """Tracks named by Spotify id; returns how many were new to the catalogue."""
    conn.execute("""
        CREATE TEMP TABLE import_new_tracks ON COMMIT DROP AS
        SELECT DISTINCT ON (r.spotify_id) r.spotify_id, r.track_name, r.artist_name, r.album_name
          FROM import_rows r
         WHERE r.spotify_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tracks t WHERE t.spotify_id = r.spotify_id)
         ORDER BY r.spotify_id, r.row_no
    """)
    _name_only_artists(conn, "SELECT artist_name FROM import_new_tracks")
    _name_only_albums(conn, "SELECT album_name, artist_name FROM import_new_tracks")
    created = conn.execute("""
        WITH inserted AS (
            INSERT INTO tracks (spotify_id, name, album_id)
            SELECT n.spotify_id, n.track_name, al.id
              FROM import_new_tracks n
              LEFT JOIN albums al ON al.spotify_id IS NULL AND lower(al.name) = lower(n.album_name)
                                 AND lower(al.artist_name) = lower(n.artist_name)
             ORDER BY n.spotify_id
            ON CONFLICT (spotify_id) DO NOTHING
            RETURNING id, spotify_id
        ), linked AS (
            INSERT INTO track_artists (track_id, position, artist_id)
            SELECT i.id, 0, a.id FROM inserted i
              JOIN import_new_tracks n ON n.spotify_id = i.spotify_id
              JOIN artists a ON a.spotify_id IS NULL AND lower(a.name) = lower(n.artist_name)
            RETURNING 1
        )
        SELECT count(*) FROM inserted
    """).fetchone()[0]
    conn.execute("UPDATE import_rows r SET track_id = t.id FROM tracks t "
                 "WHERE r.spotify_id IS NOT NULL AND t.spotify_id = r.spotify_id")
    return created


# (track_id, artist_key) for the tracks of a relation with a track_id column: each of a
# track's artists, and all of them as players write them ("a, b"); names in lower case.
CREDITED = """
    SELECT ta.track_id, lower(a.name) AS artist_key FROM {tracks} x
      JOIN track_artists ta ON ta.track_id = x.track_id JOIN artists a ON a.id = ta.artist_id
    UNION ALL
    SELECT ta.track_id, lower(string_agg(a.name, ', ' ORDER BY ta.position)) FROM {tracks} x
      JOIN track_artists ta ON ta.track_id = x.track_id JOIN artists a ON a.id = ta.artist_id
     GROUP BY ta.track_id HAVING count(*) > 1
"""


def _same_tracks(conn: psycopg.Connection, user_id: int) -> bool:
    """import_same (track_id, same): the tracks whose plays a row of track_id may be the same
    play as: itself, the name-only tracks of the user's that carry its names (a scrobbler or
    account data named a track before Spotify's id for it was known), and the user's songs
    without an artist of its name and album. Whether there are any such others.

    In steps, each table analysed: joined in one statement, the planner (misled by the
    catalogue's stale statistics right after an import) chose nested loops over lower()
    that took a minute for 5,000 tracks."""
    conn.execute("""
        CREATE TEMP TABLE import_same ON COMMIT DROP AS
        SELECT DISTINCT track_id, track_id AS same FROM import_rows WHERE track_id IS NOT NULL
    """)
    conn.execute("""
        CREATE TEMP TABLE import_name_only ON COMMIT DROP AS
        SELECT n.id, lower(n.name) AS track_key, lower(n.artist_name) AS artist_key
          FROM track_totals tt JOIN tracks n ON n.id = tt.track_id
         WHERE tt.user_id = %(user)s AND n.spotify_id IS NULL
    """, {"user": user_id})
    spotify = "FROM import_same s JOIN tracks t ON t.id = s.track_id AND t.spotify_id IS NOT NULL"
    aliases = 0
    if _exists(conn, "import_name_only") and _exists(conn, spotify.removeprefix("FROM ")):
        conn.execute(f"""
            CREATE TEMP TABLE import_keys ON COMMIT DROP AS
            SELECT c.track_id, lower(t.name) AS track_key, c.artist_key
              FROM ({CREDITED.format(tracks=f"(SELECT t.id AS track_id {spotify})")}) c
              JOIN tracks t ON t.id = c.track_id
        """)
        conn.execute("ANALYZE import_keys")
        conn.execute("ANALYZE import_name_only")
        aliases = conn.execute("""
            INSERT INTO import_same (track_id, same)
            SELECT DISTINCT k.track_id, n.id FROM import_keys k
              JOIN import_name_only n ON n.track_key = k.track_key AND n.artist_key = k.artist_key
        """).rowcount
    if _exists(conn, "import_name_only WHERE artist_key = ''"):
        # Songs without an artist (Apple's play activity names none) of the same name and
        # album: a row that names its artist cannot find them by its names, and they may be
        # its play (Apple's file imported before a scrobbler's record of the same plays).
        conn.execute("""
            CREATE TEMP TABLE import_no_artist ON COMMIT DROP AS
            SELECT n.id, n.track_key, lower(al.name) AS album_key
              FROM import_name_only n JOIN tracks t ON t.id = n.id JOIN albums al ON al.id = t.album_id
             WHERE n.artist_key = ''
        """)
        conn.execute("ANALYZE import_no_artist")
        conn.execute("ANALYZE import_same")
        aliases += conn.execute("""
            INSERT INTO import_same (track_id, same)
            SELECT DISTINCT s.track_id, n.id
              FROM (SELECT DISTINCT s.track_id, lower(t.name) AS track_key, lower(al.name) AS album_key
                      FROM import_same s JOIN tracks t ON t.id = s.track_id JOIN albums al ON al.id = t.album_id) s
              JOIN import_no_artist n ON n.track_key = s.track_key AND n.album_key = s.album_key AND n.id <> s.track_id
        """).rowcount
    conn.execute("CREATE INDEX ON import_same (track_id)")
    conn.execute("ANALYZE import_same")
    return aliases > 0


def _resolve_by_isrc(conn: psycopg.Connection, user_id: int) -> None:
    """Listens without a Spotify id but with an ISRC: the catalogue's track with that ISRC
    (one the user has played, when a recording is on several releases)."""
    conn.execute("""
        UPDATE import_rows r SET track_id = pick.id
          FROM (SELECT DISTINCT ON (t.isrc) t.isrc, t.id FROM tracks t
                 WHERE t.isrc IN (SELECT isrc FROM import_rows WHERE spotify_id IS NULL AND isrc IS NOT NULL)
                 ORDER BY t.isrc, EXISTS (SELECT 1 FROM track_totals tt
                                           WHERE tt.user_id = %(user)s AND tt.track_id = t.id) DESC, t.id) pick
         WHERE r.spotify_id IS NULL AND r.isrc = pick.isrc AND NOT r.duplicate
    """, {"user": user_id})


def _resolve_by_names(conn: psycopg.Connection, user_id: int) -> int:
    """Rows without a Spotify id (nor a known ISRC): by (track, artist) names among this
    user's tracks and this upload's, the artist being any one of the track's or all of
    them as players write them ("A, B"); among several, the one on the album the row
    names. Returns how many name-only tracks had to be created (with their album, when
    the row names one).

    The work is done on the rows' distinct names (import_named: tens of thousands where
    the rows are hundreds of thousands), each lowered once; the rows get their track from
    them in one pass at the end. Done on the rows themselves, every step read them all
    again and lowered their names again: 2.6 s of a 250,000-row Last.fm import."""
    conn.execute("""
        CREATE TEMP TABLE import_named ON COMMIT DROP AS
        SELECT track_key, artist_key, coalesce(album_key, '') AS album_key, album_key IS NULL AS no_album,
               min(row_no) AS row_no, min(artist_name) AS artist_name, min(album_name) AS album_name,
               NULL::integer AS track_id
          FROM import_rows WHERE spotify_id IS NULL AND NOT duplicate AND track_id IS NULL
         GROUP BY 1, 2, 3, 4
    """)
    conn.execute("ANALYZE import_named")
    conn.execute(f"""
        CREATE TEMP TABLE import_names ON COMMIT DROP AS
        WITH mine AS (  -- track_totals: one row per track the user has plays of, kept by the plays triggers
            SELECT track_id FROM track_totals WHERE user_id = %(user)s
            UNION SELECT track_id FROM import_rows WHERE track_id IS NOT NULL
        ), credited AS ({CREDITED.format(tracks="mine")})
        SELECT lower(t.name) AS track_key, c.artist_key, lower(al.name) AS album_key, t.id AS track_id,
               t.spotify_id IS NULL AS name_only
          FROM credited c JOIN tracks t ON t.id = c.track_id LEFT JOIN albums al ON al.id = t.album_id
        UNION ALL  -- and the user's songs without an artist (credited to nobody), under an empty artist
        SELECT lower(t.name), '', lower(al.name), t.id, true
          FROM mine m JOIN tracks t ON t.id = m.track_id LEFT JOIN albums al ON al.id = t.album_id
         WHERE t.spotify_id IS NULL AND t.artist_name = ''
    """, {"user": user_id})
    conn.execute("""
        UPDATE import_named g SET track_id = n.track_id
          FROM (SELECT DISTINCT ON (track_key, artist_key, album_key) * FROM import_names
                 WHERE album_key IS NOT NULL ORDER BY track_key, artist_key, album_key, name_only, track_id) n
         WHERE g.track_id IS NULL AND NOT g.no_album
           AND n.track_key = g.track_key AND n.artist_key = g.artist_key AND n.album_key = g.album_key
    """)
    conn.execute("""
        UPDATE import_named g SET track_id = n.track_id
          FROM (SELECT DISTINCT ON (track_key, artist_key) * FROM import_names
                 ORDER BY track_key, artist_key, name_only, track_id) n
         WHERE g.track_id IS NULL AND g.artist_key <> '' AND n.track_key = g.track_key AND n.artist_key = g.artist_key
    """)
    # Rows that name no artist (Apple's recent play activity): by track and album name. Their
    # own track (the song of that album without an artist, which an earlier import made) was
    # taken by the first look-up: found here instead, a song of the album with an artist would
    # win, and the same file imported again would add its plays a second time.
    conn.execute("""
        UPDATE import_named g SET track_id = n.track_id
          FROM (SELECT DISTINCT ON (track_key, album_key) * FROM import_names WHERE album_key IS NOT NULL
                 ORDER BY track_key, album_key, name_only, track_id) n
         WHERE g.track_id IS NULL AND g.artist_key = '' AND NOT g.no_album
           AND n.track_key = g.track_key AND n.album_key = g.album_key
    """)
    unresolved = "FROM import_named WHERE track_id IS NULL"
    _name_only_artists(conn, f"SELECT artist_name {unresolved}")
    _name_only_albums(conn, f"SELECT album_name, artist_name {unresolved}")
    created = conn.execute(f"""
        WITH picked AS (  -- per (track, artist): the first row naming an album, else the first row;
                          -- a track without an artist is one per album (migration 0025)
            SELECT coalesce(min(row_no) FILTER (WHERE NOT no_album), min(row_no)) AS row_no
              {unresolved}
             GROUP BY track_key, artist_key, CASE WHEN artist_key = '' THEN album_key END,
                      CASE WHEN artist_key = '' THEN no_album END
        ), wanted AS (
            SELECT r.track_name, r.artist_name, r.album_name FROM import_rows r JOIN picked p ON p.row_no = r.row_no
             ORDER BY r.track_key, r.artist_key
        ), inserted AS (
            INSERT INTO tracks (name, artist_name, album_id)
            SELECT w.track_name, w.artist_name, al.id FROM wanted w
              LEFT JOIN albums al ON al.spotify_id IS NULL AND lower(al.name) = lower(w.album_name)
                                 AND lower(al.artist_name) = lower(w.artist_name)
            ON CONFLICT DO NOTHING  -- a name-only track of that key exists (either unique index)
            RETURNING id, artist_name
        ), linked AS (
            INSERT INTO track_artists (track_id, position, artist_id)
            SELECT i.id, 0, a.id FROM inserted i
              JOIN artists a ON a.spotify_id IS NULL AND lower(a.name) = lower(i.artist_name)
            RETURNING 1
        )
        SELECT count(*) FROM inserted
    """).fetchone()[0]
    # Every name left now has its track, found by its key: each distinct key probes the
    # name-only index once (LATERAL: the planner cannot turn it round and scan the names
    # once per track, which it chose when the catalogue's statistics were stale: 2 s).
    conn.execute(f"""
        WITH keys AS MATERIALIZED (
            SELECT DISTINCT track_key, artist_key {unresolved} AND artist_key <> ''
        ), found AS MATERIALIZED (
            SELECT k.track_key, k.artist_key, t.id FROM keys k
             CROSS JOIN LATERAL (SELECT id FROM tracks WHERE spotify_id IS NULL AND artist_name <> ''
                                    AND lower(name) = k.track_key AND lower(artist_name) = k.artist_key LIMIT 1) t
        )
        UPDATE import_named g SET track_id = f.id FROM found f
         WHERE g.track_id IS NULL AND g.track_key = f.track_key AND g.artist_key = f.artist_key
    """)
    conn.execute(f"""
        WITH keys AS MATERIALIZED (  -- (no album: a key of its own, equalities only, so it hashes)
            SELECT DISTINCT track_key, album_key, no_album {unresolved} AND artist_key = ''
        ), found AS MATERIALIZED (
            SELECT k.track_key, k.album_key, k.no_album, t.id FROM keys k
              LEFT JOIN LATERAL (SELECT id FROM albums WHERE NOT k.no_album AND spotify_id IS NULL
                                    AND lower(name) = k.album_key AND lower(artist_name) = '' LIMIT 1) al ON true
             CROSS JOIN LATERAL (SELECT id FROM tracks WHERE spotify_id IS NULL AND artist_name = ''
                                    AND lower(name) = k.track_key AND coalesce(album_id, 0) = coalesce(al.id, 0)
                                  LIMIT 1) t
        )
        UPDATE import_named g SET track_id = f.id FROM found f
         WHERE g.track_id IS NULL AND g.artist_key = '' AND g.track_key = f.track_key
           AND g.album_key = f.album_key AND g.no_album = f.no_album
    """)
    # The one pass over the rows: each gets its name's track. Statistics of the names as they
    # are now: those taken while no name had a track made a nested loop over the rows, once per
    # name, look cheapest (22 s for a Spotify export whose first years are names only).
    conn.execute("ANALYZE import_named")
    conn.execute("""
        UPDATE import_rows r SET track_id = g.track_id FROM import_named g
         WHERE r.spotify_id IS NULL AND NOT r.duplicate AND r.track_id IS NULL
           AND r.track_key = g.track_key AND r.artist_key = g.artist_key
           AND coalesce(r.album_key, '') = g.album_key AND (r.album_key IS NULL) = g.no_album
    """)
    return created


def _reach(conn: psycopg.Connection, user_id: int) -> tuple[int, int]:
    """matching.reach_ms for this user's archive (its listens make the window wider)."""
    row = conn.execute("SELECT longest_ms, unknown_length FROM listen_lengths WHERE user_id = %s",
                       (user_id,)).fetchone()
    return reach_ms(*(row or (None, False)))


def _offsets(a: PlaySource, b: PlaySource) -> tuple[int, int]:
    """The range of (b's stored time - a's stored time), in ms, for which matching.py calls
    two plays from these sources the same play."""
    (a_lo, a_hi), (b_lo, b_hi) = UNCERTAINTY_MS[a], UNCERTAINTY_MS[b]
    return a_lo - b_hi, a_hi - b_lo


def _name_only_artists(conn: psycopg.Connection, names_query: str) -> None:
    conn.execute(f"""
        INSERT INTO artists (name)
        SELECT min(artist_name) FROM ({names_query}) n
         WHERE artist_name <> '' GROUP BY lower(artist_name) ORDER BY lower(artist_name)
        ON CONFLICT (lower(name)) WHERE spotify_id IS NULL DO NOTHING
    """)


def _name_only_albums(conn: psycopg.Connection, names_query: str) -> None:
    conn.execute(f"""
        INSERT INTO albums (name, artist_name)
        SELECT min(album_name), min(artist_name) FROM ({names_query}) n
         WHERE album_name IS NOT NULL
         GROUP BY lower(album_name), lower(artist_name) ORDER BY lower(album_name), lower(artist_name)
        ON CONFLICT (lower(name), lower(artist_name)) WHERE spotify_id IS NULL DO NOTHING
    """)


def _exists(conn: psycopg.Connection, rows: str, params: tuple = ()) -> bool:
    """Whether `FROM {rows}` finds any (it stops at the first, where count(*) reads them all)."""
    return conn.execute(f"SELECT EXISTS (SELECT 1 FROM {rows})", params).fetchone()[0]
