"""Episode and chapter plays staged by an import (imports/merge.py's `import_stage`, rows
with an `episode_kind`) into `episode_plays`, in the import's transaction.

Shows are known by kind and name (Spotify's exports give no show id); episodes by Spotify
id when the extended history gives one, else by name within their show, where an episode
known by id is preferred, so account data's rows (names only) meet the extended history's.
The same play is not counted twice: within the upload, account data defers to the
extended history; against the archive, matching.py's rule for end-stamped plays.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..matching import sql_same_play
from ..models import PlaySource

KIND_NAME = "CASE e.kind WHEN 1 THEN 'podcast' ELSE 'audiobook' END"


@dataclass
class MergedEpisodes:
    staged: int
    added: int
    duplicate_in_upload: int
    already_in_archive: int


def merge_episodes(conn: psycopg.Connection, user_id: int) -> MergedEpisodes:
    """Take the staged episode rows out of import_stage and into the user's episode plays."""
    staged = conn.execute("SELECT count(*) FROM import_stage WHERE counted AND episode_kind IS NOT NULL").fetchone()[0]
    if not staged:
        return MergedEpisodes(0, 0, 0, 0)
    conn.execute("""
        CREATE TEMP TABLE import_episodes ON COMMIT DROP AS
        SELECT DISTINCT ON (source, episode_kind, coalesce(spotify_id, lower(artist_name) || chr(31) || lower(track_name)),
                            played_ms)
               row_no, source, episode_kind AS kind, 'epoch'::timestamptz + played_ms * interval '1 millisecond' AS played_at,
               spotify_id, artist_name AS show, track_name AS episode, ms_played,
               NULL::integer AS episode_id, false AS duplicate, false AS known
          FROM import_stage WHERE counted AND episode_kind IS NOT NULL
         ORDER BY source, episode_kind, coalesce(spotify_id, lower(artist_name) || chr(31) || lower(track_name)),
                  played_ms, row_no
    """)
    conn.execute("DELETE FROM import_stage WHERE episode_kind IS NOT NULL")
    unique = conn.execute("SELECT count(*) FROM import_episodes").fetchone()[0]
    conn.execute(f"""
        INSERT INTO shows (kind, name)
        SELECT DISTINCT ON ({KIND_NAME}, lower(e.show)) {KIND_NAME}, e.show FROM import_episodes e
         ORDER BY {KIND_NAME}, lower(e.show), e.show
        ON CONFLICT (kind, lower(name)) DO NOTHING
    """)
    show_of = f"JOIN shows s ON s.kind = {KIND_NAME} AND lower(s.name) = lower(e.show)"
    conn.execute(f"""
        INSERT INTO episodes (spotify_id, show_id, name)
        SELECT DISTINCT ON (e.spotify_id) e.spotify_id, s.id, e.episode FROM import_episodes e {show_of}
         WHERE e.spotify_id IS NOT NULL ORDER BY e.spotify_id, e.row_no
        ON CONFLICT (spotify_id) DO NOTHING
    """)
    conn.execute("UPDATE import_episodes e SET episode_id = ep.id FROM episodes ep WHERE ep.spotify_id = e.spotify_id")
    by_name = f"""
        UPDATE import_episodes e SET episode_id = (
               SELECT ep.id FROM episodes ep JOIN shows s ON s.id = ep.show_id
                WHERE s.kind = {KIND_NAME} AND lower(s.name) = lower(e.show) AND lower(ep.name) = lower(e.episode)
                ORDER BY ep.spotify_id IS NULL, ep.id LIMIT 1)
         WHERE e.episode_id IS NULL
    """
    conn.execute(by_name)
    conn.execute(f"""
        INSERT INTO episodes (show_id, name)
        SELECT DISTINCT ON (s.id, lower(e.episode)) s.id, e.episode FROM import_episodes e {show_of}
         WHERE e.episode_id IS NULL ORDER BY s.id, lower(e.episode), e.row_no
        ON CONFLICT (show_id, lower(name)) WHERE spotify_id IS NULL DO NOTHING
    """)
    conn.execute(by_name)
    same = sql_same_play(("a.played_at", "a.source", "a.ms_played"), ("b.played_at", "b.source", "b.ms_played"))
    # Account data repeats what the extended history holds: the finer clock stands.
    conn.execute(f"""
        UPDATE import_episodes a SET duplicate = true
         WHERE a.source = {int(PlaySource.account_data)} AND EXISTS (
               SELECT 1 FROM import_episodes b
                WHERE b.source = {int(PlaySource.extended_history)} AND b.episode_id = a.episode_id AND {same})
    """)
    conn.execute(f"""
        UPDATE import_episodes a SET known = true
         WHERE NOT a.duplicate AND EXISTS (
               SELECT 1 FROM episode_plays b
                WHERE b.user_id = %(user)s AND b.episode_id = a.episode_id
                  AND b.played_at BETWEEN a.played_at - interval '10 minutes' AND a.played_at + interval '10 minutes'
                  AND {same})
    """, {"user": user_id})
    added = conn.execute("""
        INSERT INTO episode_plays (played_at, user_id, episode_id, ms_played, source)
        SELECT played_at, %(user)s, episode_id, ms_played, source FROM import_episodes
         WHERE NOT duplicate AND NOT known ORDER BY played_at
        ON CONFLICT DO NOTHING
    """, {"user": user_id}).rowcount
    if added:  # the dashboard's cached fragments are keyed by this version
        conn.execute("""
            INSERT INTO archive_versions AS r (user_id, version) VALUES (%(user)s, 1)
            ON CONFLICT (user_id) DO UPDATE SET version = r.version + 1
        """, {"user": user_id})
    duplicates = conn.execute("SELECT count(*) FROM import_episodes WHERE duplicate").fetchone()[0]
    return MergedEpisodes(staged=staged, added=added, duplicate_in_upload=(staged - unique) + duplicates,
                          already_in_archive=unique - duplicates - added)
