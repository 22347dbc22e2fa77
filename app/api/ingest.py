"""Submitted listens, from the request to the archive.

The request only writes the listens to `listen_inbox` and queues one merge job for the
user (a queueing lock keeps it to one waiting job however many requests arrive), so a
scrobbler's request costs three statements on one psycopg connection (token and rate
limit; clients; listens), and a burst of them is merged in one set-based pass. The job merges a user's inbox the way an import is merged (imports/merge.py):
tracks found by Spotify id, ISRC or names, the same play already archived (polled,
imported, scrobbled by another player) not counted again, by matching.py's rule for
start-stamped plays. Listens show up in the archive within seconds (MERGE_DELAY_S, then
the merge itself).

playing_now is kept apart, one row per user until it expires, and never becomes a play.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import queue
from ..imports.merge import STAGE, Merged, merge
from ..limits import Limit, Usage, count_sql, key
from ..models import PlaySource
from .submit import PLAYING_NOW, Submission, playing_now_seconds
from .tokens import TOUCH_EVERY, digest, rate_subject

log = logging.getLogger(__name__)

MERGE_BATCH = 50_000  # listens per merge transaction
MERGE_DELAY_S = 2  # how long listens gather before their merge starts
DEFAULT_CLIENT = "ListenBrainz API"


def queueing_lock(user_id: int) -> str:
    return f"listens-{user_id}"


def authorise(conn: psycopg.Connection, token: str, limit: Limit, *, now: datetime) -> tuple[int | None, Usage]:
    """(the user id a live token belongs to, or None; where the token stands in its rate
    limit), in one statement, committed without waiting for the disk (a lost count or
    last-used time errs on the client's side). The token's last use is written at most
    every tokens.TOUCH_EVERY."""
    user_id, window_start, hits = conn.execute(f"""
        WITH token AS (
            SELECT id, user_id, last_used_at FROM api_tokens WHERE digest = %(digest)s AND revoked_at IS NULL
        ), touched AS (
            UPDATE api_tokens SET last_used_at = %(now)s
             WHERE id = (SELECT id FROM token WHERE last_used_at IS NULL OR last_used_at <= %(touch_before)s)
        ), counted AS ({count_sql(lambda name: f"%({name})s")})
        SELECT (SELECT user_id FROM token), window_start, hits FROM counted
    """, {"digest": digest(token), "now": now, "touch_before": now - TOUCH_EVERY,
          "key": key(limit, rate_subject(token)), "window": limit.window}).fetchone()
    conn.execute("SET LOCAL synchronous_commit = off")
    conn.commit()
    return user_id, Usage(limit.hits, hits, window_start + limit.window)


def accept(conn: psycopg.Connection, user_id: int, submission: Submission, *, now: datetime) -> int:
    """Write what was submitted and commit; how many listens were queued. Two statements
    (clients, then listens and whether a merge is waiting): this is the API's busiest path."""
    if submission.listen_type == PLAYING_NOW:
        _playing_now(conn, user_id, submission, now)
        conn.commit()
        return 0
    listens = submission.listens
    clients = _client_ids(conn, {listen.client or DEFAULT_CLIENT for listen in listens})
    waiting = conn.execute("""
        WITH added AS (
            INSERT INTO listen_inbox (user_id, client_id, listened_at, track_name, artist_name, release_name,
                                      spotify_id, isrc, duration_ms, received_at)
            SELECT %(user_id)s, r.*, %(now)s
              FROM unnest(%(client)s::smallint[], %(listened_at)s::bigint[], %(track)s::text[], %(artist)s::text[],
                          %(release)s::text[], %(spotify_id)s::text[], %(isrc)s::text[], %(duration)s::integer[]) r
        )
        SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = %(lock)s AND status = 'todo')
    """, {"user_id": user_id, "now": now, "lock": queueing_lock(user_id),
          "client": [clients[listen.client or DEFAULT_CLIENT] for listen in listens],
          "listened_at": [listen.listened_at for listen in listens],
          "track": [listen.track_name for listen in listens], "artist": [listen.artist_name for listen in listens],
          "release": [listen.release_name for listen in listens],
          "spotify_id": [listen.spotify_id for listen in listens], "isrc": [listen.isrc for listen in listens],
          "duration": [listen.duration_ms for listen in listens]}).fetchone()[0]
    if not waiting:
        _queue_merge(conn, user_id)
    conn.commit()
    return len(listens)


def _client_ids(conn: psycopg.Connection, names: set[str]) -> dict[str, int]:
    sorted_names = sorted(names)  # a stable order: concurrent requests cannot deadlock on the upsert
    # One round trip: the names already known, and the new ones as they are inserted.
    found = dict(conn.execute("""
        WITH known AS (SELECT name, id FROM play_clients WHERE name = ANY(%(names)s)),
        added AS (INSERT INTO play_clients (name)
                  SELECT n FROM unnest(%(names)s::text[]) n WHERE n NOT IN (SELECT name FROM known)
                  ON CONFLICT (name) DO NOTHING RETURNING name, id)
        SELECT name, id FROM known UNION ALL SELECT name, id FROM added
    """, {"names": sorted_names}).fetchall())
    if len(found) < len(names):  # another request added one between our look and our insert
        found |= dict(conn.execute("SELECT name, id FROM play_clients WHERE name = ANY(%s)", (sorted_names,)).fetchall())
    return found


def _queue_merge(conn: psycopg.Connection, user_id: int) -> None:
    """One waiting merge job per user: when one is queued already, it will take these
    listens too (it reads the inbox when it starts, after this transaction commits). It
    starts MERGE_DELAY_S after the first listen that found none waiting, so that a burst
    of requests is merged in one pass instead of one pass each: a merge's fixed cost (a
    dozen statements and temporary tables) is far above a single listen's."""
    # Another request may queue it between our look and this insert: a savepoint keeps
    # the unique violation from taking this request's listens with it.
    try:
        with conn.transaction():
            queue.defer(queue.MERGE_LISTENS, conn, {"user_id": user_id}, queueing_lock=queueing_lock(user_id),
                        schedule_in={"seconds": MERGE_DELAY_S})
    except queue.AlreadyEnqueued:
        pass


def _playing_now(conn: psycopg.Connection, user_id: int, submission: Submission, now: datetime) -> None:
    listen = submission.listens[0]
    conn.execute("""
        INSERT INTO playing_now (user_id, track_name, artist_name, release_name, client, spotify_id, duration_ms,
                                 started_at, expires_at)
        VALUES (%(user_id)s, %(track)s, %(artist)s, %(release)s, %(client)s, %(spotify_id)s, %(duration)s, %(now)s,
                %(expires)s)
        ON CONFLICT (user_id) DO UPDATE SET
            track_name = excluded.track_name, artist_name = excluded.artist_name, release_name = excluded.release_name,
            client = excluded.client, spotify_id = excluded.spotify_id, duration_ms = excluded.duration_ms,
            started_at = excluded.started_at, expires_at = excluded.expires_at
    """, {"user_id": user_id, "track": listen.track_name, "artist": listen.artist_name,
          "release": listen.release_name, "client": listen.client, "spotify_id": listen.spotify_id,
          "duration": listen.duration_ms, "now": now,
          "expires": now + timedelta(seconds=playing_now_seconds(listen))})


def playing_now(session: Session, user_id: int, *, now: datetime):
    """What the user's player last said is playing, if it has not ended since (a row of
    playing_now), else None."""
    return session.execute(sa.text("SELECT * FROM playing_now WHERE user_id = :u AND expires_at > :now"),
                           {"u": user_id, "now": now}).first()


def merge_inbox(database, user_id: int) -> list[Merged]:
    """Merge the user's waiting listens into their plays, MERGE_BATCH at a time, each batch
    one transaction (the listens leave the inbox as their plays arrive)."""
    results = []
    while True:
        with database.sessionmaker() as session:
            conn = session.connection().connection.driver_connection
            conn.execute(STAGE)
            taken = conn.execute(f"""
                WITH taken AS (
                    DELETE FROM listen_inbox WHERE id IN (
                        SELECT id FROM listen_inbox WHERE user_id = %(user)s ORDER BY id LIMIT {MERGE_BATCH}
                           FOR UPDATE SKIP LOCKED)
                    RETURNING *
                )
                INSERT INTO import_stage (row_no, source, played_ms, spotify_id, track_name, artist_name, album_name,
                                          ms_played, counted, isrc, client_id)
                SELECT row_number() OVER (ORDER BY id), {int(PlaySource.listen)}, listened_at * 1000, spotify_id,
                       track_name, artist_name, release_name, duration_ms, true, isrc, client_id
                  FROM taken
            """, {"user": user_id}).rowcount
            if taken == 0:
                session.rollback()
                return results
            merged = merge(conn, user_id, taken, fill_gaps=False)
            session.commit()
        log.info("listens for user %s: %s taken, %s new plays, %s already archived, %s repeated", user_id, taken,
                 merged.imported, merged.already_in_archive, merged.duplicate_in_upload)
        results.append(merged)
        if taken < MERGE_BATCH:
            return results
