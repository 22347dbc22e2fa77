"""Submitted listens, from the request to the archive.

The request only writes the listens to `listen_inbox` and queues one merge job for the
user (a queueing lock keeps it to one waiting job however many requests arrive), so a
scrobbler's request costs one insert, and a burst of them is merged in one set-based
pass. The job merges a user's inbox the way an import is merged (imports/merge.py):
tracks found by Spotify id, ISRC or names, the same play already archived (polled,
imported, scrobbled by another player) not counted again, by matching.py's rule for
start-stamped plays. Listens show up in the archive within seconds.

playing_now is kept apart, one row per user until it expires, and never becomes a play.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import queue
from ..imports.merge import STAGE, Merged, merge
from ..models import PlaySource, User
from .submit import PLAYING_NOW, Submission, playing_now_seconds

log = logging.getLogger(__name__)

MERGE_BATCH = 50_000  # listens per merge transaction
DEFAULT_CLIENT = "ListenBrainz API"


def queueing_lock(user_id: int) -> str:
    return f"listens-{user_id}"


def accept(session: Session, user: User, submission: Submission, *, now: datetime) -> int:
    """Write what was submitted, in the caller's transaction; how many listens were queued."""
    if submission.listen_type == PLAYING_NOW:
        _playing_now(session, user, submission, now)
        return 0
    clients = _client_ids(session, {listen.client or DEFAULT_CLIENT for listen in submission.listens})
    listens = submission.listens
    session.execute(sa.text("""
        INSERT INTO listen_inbox (user_id, client_id, listened_at, track_name, artist_name, release_name, spotify_id,
                                  isrc, duration_ms, received_at)
        SELECT :user_id, * , :now FROM unnest(CAST(:client AS smallint[]), CAST(:listened_at AS bigint[]),
                                             CAST(:track AS text[]), CAST(:artist AS text[]), CAST(:release AS text[]),
                                             CAST(:spotify_id AS text[]), CAST(:isrc AS text[]),
                                             CAST(:duration AS integer[]))
    """), {"user_id": user.id, "now": now,
           "client": [clients[listen.client or DEFAULT_CLIENT] for listen in listens],
           "listened_at": [listen.listened_at for listen in listens],
           "track": [listen.track_name for listen in listens], "artist": [listen.artist_name for listen in listens],
           "release": [listen.release_name for listen in listens],
           "spotify_id": [listen.spotify_id for listen in listens], "isrc": [listen.isrc for listen in listens],
           "duration": [listen.duration_ms for listen in listens]})
    _queue_merge(session, user.id)
    return len(listens)


def _client_ids(session: Session, names: set[str]) -> dict[str, int]:
    sorted_names = sorted(names)  # a stable order: concurrent requests cannot deadlock on the upsert
    session.execute(sa.text("INSERT INTO play_clients (name) SELECT unnest(CAST(:names AS text[])) "
                            "ON CONFLICT (name) DO NOTHING"), {"names": sorted_names})
    rows = session.execute(sa.text("SELECT name, id FROM play_clients WHERE name = ANY(:names)"),
                           {"names": sorted_names})
    return dict(rows.all())


def _queue_merge(session: Session, user_id: int) -> None:
    """One waiting merge job per user: when one is queued already, it will take these
    listens too (it reads the inbox when it starts, after this transaction commits)."""
    lock = queueing_lock(user_id)
    waiting = session.scalar(sa.text("SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = :lock "
                                     "AND status = 'todo'"), {"lock": lock})
    if waiting:
        return
    # Another request may queue it between that look and this insert: a savepoint keeps
    # the unique violation from taking this request's listens with it.
    try:
        with session.begin_nested():
            queue.defer(queue.MERGE_LISTENS, session, {"user_id": user_id}, queueing_lock=lock)
    except queue.AlreadyEnqueued:
        pass


def _playing_now(session: Session, user: User, submission: Submission, now: datetime) -> None:
    listen = submission.listens[0]
    session.execute(sa.text("""
        INSERT INTO playing_now (user_id, track_name, artist_name, release_name, client, spotify_id, duration_ms,
                                 started_at, expires_at)
        VALUES (:user_id, :track, :artist, :release, :client, :spotify_id, :duration, :now, :expires)
        ON CONFLICT (user_id) DO UPDATE SET
            track_name = excluded.track_name, artist_name = excluded.artist_name, release_name = excluded.release_name,
            client = excluded.client, spotify_id = excluded.spotify_id, duration_ms = excluded.duration_ms,
            started_at = excluded.started_at, expires_at = excluded.expires_at
    """), {"user_id": user.id, "track": listen.track_name, "artist": listen.artist_name,
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
