"""Submitted listens, from the request to the archive.

The request only writes the listens to `listen_inbox` and queues one merge job for the
user (a queueing lock keeps it to one waiting job however many requests arrive), so a
scrobbler's single listen costs one statement on one psycopg connection (token, rate
limit and the listen together), and a burst of them is merged in one set-based pass.
The job merges a user's inbox the way an import is merged (imports/merge.py):
tracks found by Spotify id, ISRC or names, the same play already archived (polled,
imported, scrobbled by another player) not counted again, by matching.py's rule for
start-stamped plays. Listens show up in the archive within seconds (MERGE_DELAY_S, then
the merge itself).

playing_now is kept apart, one row per user until it expires, and never becomes a play.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import queue
from ..imports import clients
from ..imports.merge import STAGE, Merged, merge
from ..limits import Limit, Usage, count_sql, key
from ..models import PlaySource
from .submit import PLAYING_NOW, Submission, playing_now_seconds
from .tokens import TOUCH_EVERY, digest, rate_subject

log = logging.getLogger(__name__)

MERGE_BATCH = 50_000  # listens per merge transaction
MERGE_DELAY_S = 2  # how long listens gather before their merge starts
DEFAULT_CLIENT = "ListenBrainz API"


LOCK_PREFIX = "listens-"


def queueing_lock(user_id: int) -> str:
    return f"{LOCK_PREFIX}{user_id}"


@dataclass(frozen=True)
class Authorised:
    user_id: int | None  # None: no live token
    usage: Usage  # where the token stands in its rate limit
    written: bool = False  # the submission's listens were written by the same statement
    merge_waiting: bool = False  # (when written) a merge job is queued already


def authorise(conn: psycopg.Connection, token: str, limit: Limit, *, now: datetime,
              submission: Submission | None = None) -> Authorised:
    """Check the token and count the request against its rate limit, in one statement on
    `conn` (in autocommit: the statement is its transaction). The token's last use is
    written at most every tokens.TOUCH_EVERY.

    With the listens of a `submission`, the same statement writes them when the token is
    live and within its limit (and only then), and commits durably: a single listen
    costs one round trip. Without, the commit does not wait for the disk (a lost count or
    last-used time errs on the client's side)."""
    params = {"digest": digest(token), "now": now, "touch_before": now - TOUCH_EVERY,
              "key": key(limit, rate_subject(token)), "window": limit.window, "hits": limit.hits}
    if submission is not None:
        params |= _listen_params(submission)
        writes = f"""
            allowed AS (SELECT t.user_id FROM token t, counted c WHERE c.hits <= %(hits)s),
            added AS ({_INBOX_INSERT.format(user="a.user_id", source="allowed a, ")}),
            state AS (SELECT {_MERGE_WAITING.format(user="(SELECT user_id FROM allowed)")} AS waiting)"""
    else:
        # Nothing written, so no merge to look for (false); the count is committed without
        # waiting for the disk, set for this statement's own transaction.
        writes = "state AS (SELECT set_config('synchronous_commit', 'off', true) IS NULL AS waiting)"
    user_id, window_start, hits, waiting = conn.execute(f"""
        WITH token AS (
            SELECT id, user_id, last_used_at FROM api_tokens WHERE digest = %(digest)s AND revoked_at IS NULL
        ), touched AS (
            UPDATE api_tokens SET last_used_at = %(now)s
             WHERE id = (SELECT id FROM token WHERE last_used_at IS NULL OR last_used_at <= %(touch_before)s)
        ), counted AS ({count_sql(lambda name: f"%({name})s")}),
        {writes}
        SELECT (SELECT user_id FROM token), window_start, hits, waiting FROM counted, state
    """, params).fetchone()
    usage = Usage(limit.hits, hits, window_start + limit.window)
    written = submission is not None and user_id is not None and hits <= limit.hits
    return Authorised(user_id, usage, written, bool(waiting) and written)


def accept(conn: psycopg.Connection, who: Authorised, submission: Submission, *, now: datetime) -> None:
    """Write what was submitted (unless authorise() wrote it already) and see that a merge
    will take it; `conn` in autocommit."""
    if submission.listen_type == PLAYING_NOW:
        _playing_now(conn, who.user_id, submission, now)
        return
    waiting = who.merge_waiting if who.written else conn.execute(f"""
        WITH added AS ({_INBOX_INSERT.format(user="%(user_id)s", source="")})
        SELECT {_MERGE_WAITING.format(user="%(user_id)s")}
    """, {"user_id": who.user_id, "now": now} | _listen_params(submission)).fetchone()[0]
    if not waiting:
        _queue_merge(conn, who.user_id)


# The listens of a submission into the inbox, as user {user} (from {source}). They travel
# as one JSON parameter, each listen a list: eight array parameters cost the web process
# more to adapt than the rest of a single listen's request.
_INBOX_INSERT = """
    INSERT INTO listen_inbox (user_id, client_name, listened_at, track_name, artist_name, release_name, spotify_id,
                              isrc, duration_ms, received_at)
    SELECT {user}, r->>0, (r->>1)::bigint, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::integer, %(now)s
      FROM {source}json_array_elements(%(listens)s::json) r"""
# Whether a merge job for the user is waiting already (it will take what this statement writes).
_MERGE_WAITING = (f"EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = '{LOCK_PREFIX}' || {{user}} "
                  "AND status = 'todo')")


def _listen_params(submission: Submission) -> dict:
    return {"listens": json.dumps([
        [listen.client or DEFAULT_CLIENT, listen.listened_at, listen.track_name, listen.artist_name,
         listen.release_name, listen.spotify_id, listen.isrc, listen.duration_ms] for listen in submission.listens],
        ensure_ascii=False)}


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
                                          ms_played, counted, isrc, client_name)
                SELECT row_number() OVER (ORDER BY id), {int(PlaySource.listen)}, listened_at * 1000, spotify_id,
                       track_name, artist_name, release_name, duration_ms, true, isrc, client_name
                  FROM taken
            """, {"user": user_id}).rowcount
            if taken == 0:
                session.rollback()
                return results
            clients.resolve(conn)
            merged = merge(conn, user_id, taken, fill_gaps=False)
            session.commit()
        log.info("listens for user %s: %s taken, %s new plays, %s already archived, %s repeated", user_id, taken,
                 merged.imported, merged.already_in_archive, merged.duplicate_in_upload)
        results.append(merged)
        if taken < MERGE_BATCH:
            return results
