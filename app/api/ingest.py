"""Submitted listens, from the request to the archive.

The request only writes the listens to `listen_inbox` and queues one merge job for the
user (a queueing lock keeps it to one waiting job however many requests arrive), so a
scrobbler's single listen costs at most one statement on one psycopg connection (token,
rate limit and the listen together; requests arriving together share one: writer() for
threads, AsyncWriter on the web process's event loop),
and a burst of them is merged in one set-based pass.
The job merges a user's inbox the way an import is merged (imports/merge.py):
tracks found by Spotify id, ISRC or names, the same play already archived (polled,
imported, scrobbled by another player) not counted again, by matching.py's rule for
start-stamped plays. Listens show up in the archive within seconds (MERGE_DELAY_S, then
the merge itself).

playing_now is kept apart, one row per user until it expires, and never becomes a play.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Awaitable, Callable, Sequence

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import queue
from ..db import APPLICATION_NAME, CONNECT_TIMEOUT_S, DATABASE_UNAVAILABLE
from ..groupcommit import AsyncGroupCommit, GroupCommit
from ..imports import clients
from ..imports.merge import STAGE, Merged, merge
from ..limits import Limit, Usage, count_sql, key
from ..models import PlaySource
from .submit import PLAYING_NOW, Submission, playing_now_seconds
from .tokens import TOUCH_EVERY, digest, rate_subject

log = logging.getLogger(__name__)

MERGE_BATCH = 50_000  # listens per merge transaction
MERGE_DELAY_S = 2  # how long listens gather before their merge starts
FORGOTTEN_AFTER = timedelta(minutes=1)  # listens waiting this long with no merge queued get one
DEFAULT_CLIENT = "ListenBrainz API"


LOCK_PREFIX = "listens-"


def queueing_lock(user_id: int) -> str:
    return f"{LOCK_PREFIX}{user_id}"


@dataclass(frozen=True)
class Request:
    """One request's part in a statement: its token, and the listens to write when the
    token is live and within its limit (None: a request that only counts)."""
    token: str
    submission: Submission | None = None


@dataclass(frozen=True)
class Authorised:
    user_id: int | None  # None: no live token
    usage: Usage  # where the token stands in its rate limit
    written: bool = False  # the request's listens are in the inbox, and a merge will take them


def authorise(conn: psycopg.Connection, requests: Sequence[Request], limit: Limit, *,
              now: datetime) -> list[Authorised]:
    """Check each request's token and count the request against its rate limit, in one
    statement on `conn` (in autocommit: the statement is its transaction), which also
    writes the listens of every request whose token is live and within its limit (and
    only those). The tokens' last use is written at most every tokens.TOUCH_EVERY.

    With listens, the commit is durable and a merge is queued for each user who has none
    waiting; without, it does not wait for the disk (a lost count or last-used time errs
    on the client's side). Requests of one token are counted in the order given, as if
    they had come one by one."""
    results, merging = _authorised(requests, limit, conn.execute(*_authorise_statement(requests, limit, now))
                                   .fetchall())
    queue_merges(conn, merging)
    return results


async def authorise_async(conn: psycopg.AsyncConnection, requests: Sequence[Request], limit: Limit, *,
                          now: datetime, queue_merges_for: Callable[[list[int]], Awaitable[None]]
                          ) -> list[Authorised]:
    """authorise() on an asynchronous connection: the same statement, and the same
    merges queued, by `queue_merges_for(users)` (a merge is queued by procrastinate, on a
    connection of its own kind)."""
    cursor = await conn.execute(*_authorise_statement(requests, limit, now))
    results, merging = _authorised(requests, limit, await cursor.fetchall())
    if merging:
        await queue_merges_for(merging)
    return results


def _authorise_statement(requests: Sequence[Request], limit: Limit, now: datetime) -> tuple[str, dict]:
    listens = any(r.submission is not None for r in requests)
    digests = [digest(r.token) for r in requests]
    return _AUTHORISE.format(durability="true" if listens else _NOT_DURABLE), {
        "requests": json.dumps([[d, key(limit, rate_subject(r.token, token_digest=d))]
                                + ([_listen_rows(r.submission)] if r.submission is not None else [])
                                for r, d in zip(requests, digests)], ensure_ascii=False),
        "now": now, "touch_before": now - TOUCH_EVERY, "window": limit.window, "hits": limit.hits}


def _authorised(requests: Sequence[Request], limit: Limit, rows) -> tuple[list[Authorised], list[int]]:
    """The statement's rows as each request's answer, and the users whose listens it wrote
    with no merge waiting for them."""
    results, merging = [], []
    for request, (user_id, window_start, hits, waiting) in zip(requests, rows, strict=True):
        written = request.submission is not None and user_id is not None and hits <= limit.hits
        results.append(Authorised(user_id, Usage(limit.hits, hits, window_start + limit.window), written))
        if written and not waiting and user_id not in merging:
            merging.append(user_id)
    return results, merging


def queue_merges(conn: psycopg.Connection, users: Sequence[int]) -> None:
    for user_id in users:
        _queue_merge(conn, user_id)


def accept(conn: psycopg.Connection, user_id: int, submission: Submission, *, now: datetime) -> None:
    """Write what authorise() did not (playing_now; listens read only once the token
    was checked) and see that a merge will take it; `conn` in autocommit."""
    if submission.listen_type == PLAYING_NOW:
        _playing_now(conn, user_id, submission, now)
        return
    waiting = conn.execute(f"""
        WITH added AS ({_INBOX_INSERT.format(user="%(user_id)s", source="", listens="%(listens)s::json")})
        SELECT {_MERGE_WAITING.format(user="%(user_id)s")}
    """, {"user_id": user_id, "now": now, "listens": json.dumps(_listen_rows(submission), ensure_ascii=False)}
    ).fetchone()[0]
    if not waiting:
        _queue_merge(conn, user_id)


def _one_requests_doing(error: BaseException) -> bool:
    """Whether a failed statement may be one request's doing (written again one by one),
    not the database not answering (which concerns them all)."""
    return not isinstance(error, DATABASE_UNAVAILABLE)


def writer(database, limit: Callable[[], Limit], clock) -> GroupCommit[Request, Authorised]:
    """authorise() for the requests of a whole web process, gathered (app/groupcommit.py):
    under load, a statement and a durable commit for several requests instead of each."""
    def write(requests: Sequence[Request]) -> list[Authorised]:
        with database.connection(autocommit=True) as conn:
            return authorise(conn, requests, limit(), now=clock())
    return GroupCommit(write, alone=_one_requests_doing)


class AsyncWriter:
    """writer() for the web process's event loop (fastpath.SubmitListensASGI): requests
    gathered by an AsyncGroupCommit, on one asynchronous connection of its own, opened
    when first needed and again after the database went away. The merges it queues go
    through the pool, in a thread (procrastinate defers on a synchronous connection)."""

    def __init__(self, database, limit: Callable[[], Limit], clock):
        self._database, self._limit, self._clock = database, limit, clock
        self._conn: psycopg.AsyncConnection | None = None
        self._group = AsyncGroupCommit(self._write, alone=_one_requests_doing)

    async def submit(self, request: Request) -> Authorised:
        return await self._group.submit(request)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _write(self, requests: Sequence[Request]) -> list[Authorised]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            await self.close()
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(
                self._database.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                application_name=APPLICATION_NAME)
        return await authorise_async(self._conn, requests, self._limit(), now=self._clock(),
                                     queue_merges_for=lambda users: asyncio.to_thread(self._queue_merges, users))

    def _queue_merges(self, users: list[int]) -> None:
        with self._database.connection(autocommit=True) as conn:
            queue_merges(conn, users)


# The listens of a submission into the inbox, as user {user} (from {source}). They travel
# as JSON, each listen a list: eight array parameters cost the web process more to adapt
# than the rest of a single listen's request.
_INBOX_INSERT = """
    INSERT INTO listen_inbox (user_id, client_name, listened_at, track_name, artist_name, release_name, spotify_id,
                              isrc, duration_ms, received_at)
    SELECT {user}, r->>0, (r->>1)::bigint, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::integer, %(now)s
      FROM {source}json_array_elements({listens}) r"""
# Whether a merge job for the user is waiting already, so that it will take what this
# statement writes. Locked (FOR SHARE) until the statement commits: a worker takes a job
# with FOR UPDATE SKIP LOCKED, so it cannot start this merge, read the inbox without
# these listens and leave them for the minute's sweep; a job taken meanwhile is seen as
# no longer waiting (the lock waits for its update), and the listens queue a merge.
_MERGE_WAITING = (f"EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = '{LOCK_PREFIX}' || {{user}} "
                  "AND status = 'todo' FOR SHARE)")
# A statement that writes nothing but counts is committed without waiting for the disk.
_NOT_DURABLE = "set_config('synchronous_commit', 'off', true) IS NULL"
# Each request a JSON list: [token digest, rate-limit key, (its listens)]. Its hits are the
# hits its key had before the statement and those of the requests before it in the list.
_AUTHORISE = f"""
    WITH request AS (
        SELECT n, r->>0 AS digest, r->>1 AS key, r->2 AS listens
          FROM json_array_elements(%(requests)s::json) WITH ORDINALITY AS x(r, n)
    ), token AS (
        SELECT request.n, t.id, t.user_id, t.last_used_at
          FROM request JOIN api_tokens t ON t.digest = request.digest AND t.revoked_at IS NULL
    ), touched AS (
        UPDATE api_tokens SET last_used_at = %(now)s
         WHERE id IN (SELECT id FROM token WHERE last_used_at IS NULL OR last_used_at <= %(touch_before)s)
    ), counted AS ({count_sql(lambda name: f"%({name})s", counts="SELECT key, count(*) AS n FROM request GROUP BY key")}
    ), ranked AS (
        SELECT request.n, request.listens, c.window_start,
               c.hits - count(*) OVER (PARTITION BY request.key)
                      + row_number() OVER (PARTITION BY request.key ORDER BY request.n) AS hits
          FROM request JOIN counted c USING (key)
    ), allowed AS (
        SELECT token.user_id, ranked.listens FROM ranked JOIN token USING (n)
         WHERE ranked.hits <= %(hits)s AND ranked.listens IS NOT NULL
    ), added AS ({_INBOX_INSERT.format(user="a.user_id", source="allowed a, ", listens="a.listens")})
    SELECT token.user_id, ranked.window_start, ranked.hits,
           token.user_id IS NOT NULL AND ranked.listens IS NOT NULL AND {_MERGE_WAITING.format(user="token.user_id")}
      FROM ranked LEFT JOIN token USING (n) CROSS JOIN (SELECT {{durability}}) AS d(durable)
     ORDER BY ranked.n"""


def _listen_rows(submission: Submission) -> list[list]:
    return [[listen.client or DEFAULT_CLIENT, listen.listened_at, listen.track_name, listen.artist_name,
             listen.release_name, listen.spotify_id, listen.isrc, listen.duration_ms] for listen in submission.listens]


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


def queue_forgotten_merges(database, *, now: datetime) -> list[int]:
    """Queue a merge for every user whose listens have waited in the inbox for over
    FORGOTTEN_AFTER with no merge queued or running: the listens' statement commits before
    their merge is queued, so a web process that dies in between (or a merge job that
    failed for good) would otherwise leave them there until the user's next listen. The
    users it queued for."""
    with database.connection(autocommit=True) as conn:
        users = [row[0] for row in conn.execute(f"""
            SELECT DISTINCT user_id FROM listen_inbox i
             WHERE received_at < %(before)s
               AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs
                                WHERE queueing_lock = '{LOCK_PREFIX}' || i.user_id AND status IN ('todo', 'doing'))
             ORDER BY user_id
        """, {"before": now - FORGOTTEN_AFTER})]
        queue_merges(conn, users)
    if users:
        log.warning("listens of %s user(s) were waiting without a merge; merging them now", len(users))
    return users


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
