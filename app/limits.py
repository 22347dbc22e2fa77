"""Rate limits on actions people (or scripts) can repeat: a fixed window per key, counted
in Postgres (`rate_limits`), so a limit holds however many web processes and machines
serve the requests. One statement per hit: an upsert that starts a new window when the
old one is over and returns the count.

Over a limit, `Limited` says when to try again; views answer 429 with `Retry-After` and a
friendly page (`too_many`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Limit:
    name: str
    hits: int
    window: timedelta


class Limited(Exception):
    def __init__(self, limit: Limit, retry_after: timedelta):
        super().__init__(f"{limit.name}: more than {limit.hits} in {limit.window}")
        self.limit, self.retry_after = limit, retry_after

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.retry_after.total_seconds()))


# What a person (or a script) may repeat, across every web process.
SIGN_INS_PER_IP = Limit("sign-in-ip", 60, timedelta(minutes=10))
IMPORTS_PER_USER = Limit("import-user", 20, timedelta(days=1))
EXPORTS_PER_USER = Limit("export-user", 30, timedelta(days=1))


@dataclass(frozen=True)
class Usage:
    """Where a subject stands in its current window (for ListenBrainz's X-RateLimit-* headers)."""

    limit: int
    used: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def hit(session: Session, limit: Limit, subject: str, *, now: datetime, durable: bool = True) -> Usage:
    """Count one use of `limit` by `subject` (an address, an IP, a user id); Limited if it
    is over, else where it stands. Runs in its own transaction, so a refused request still
    counts, and a rolled-back request does too (a failed attempt is an attempt); and the
    counter's row is locked for one statement only, however long the request runs.

    `durable=False` for limits counted on every request of a busy endpoint: the commit
    does not wait for the disk (a crash may forget the last half second of counts, which
    errs on the side of the client)."""
    with Session(session.get_bind()) as own, own.begin():
        if not durable:
            own.execute(sa.text("SET LOCAL synchronous_commit = off"))
        _, window_start, hits = own.execute(sa.text(count_sql(lambda name: f":{name}")),
                                         {"key": key(limit, subject), "now": now, "window": limit.window}).one()
    if hits > limit.hits:
        raise Limited(limit, window_start + limit.window - now)
    return Usage(limit.hits, hits, window_start + limit.window)


def key(limit: Limit, subject: str) -> str:
    """The counter's row in rate_limits."""
    return f"{limit.name}:{subject}"[:300]


def count_sql(param: Callable[[str], str], *, counts: str | None = None) -> str:
    """The one statement that counts hits: an upsert that starts a new window when the old
    one is over, returning (key, window_start, hits). Its parameters `key`, `now` and
    `window` are written by `param` in the caller's style (`:now` for SQLAlchemy, `%(now)s`
    for psycopg, which the API's busiest path uses inside a statement of its own).

    One hit for `key`; or, with `counts` (a query of (key, n) rows), n hits for each key,
    which is how the API counts the requests it writes together (app/groupcommit.py). The
    keys are taken in order, so that two such statements lock their rows in the same order."""
    now, window = param("now"), param("window")
    rows = f"SELECT key, {now}, n FROM ({counts}) c ORDER BY key" if counts else f"VALUES ({param('key')}, {now}, 1)"
    return f"""
        INSERT INTO rate_limits AS r (key, window_start, hits) {rows}
        ON CONFLICT (key) DO UPDATE
           SET window_start = CASE WHEN r.window_start <= {now} - {window} THEN {now} ELSE r.window_start END,
               hits = CASE WHEN r.window_start <= {now} - {window} THEN excluded.hits ELSE r.hits + excluded.hits END
        RETURNING key, window_start, hits"""


def forget_old(session: Session, *, now: datetime, older_than: timedelta = timedelta(days=2)) -> int:
    """Remove windows long over (a periodic job)."""
    return session.execute(sa.text("DELETE FROM rate_limits WHERE window_start < :cut"),
                           {"cut": now - older_than}).rowcount
