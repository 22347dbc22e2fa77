"""One writer of a user's plays at a time: a poll, or an import while it merges.

Both compare what they bring with the plays already archived and insert what is new. Run
together, each would miss what the other has not committed yet and the same play would
be stored twice (a polled play and an exported play of it a few seconds apart). The lock
is a Postgres advisory lock on (namespace, user id): it holds across processes and
machines, and Postgres releases it if the holder dies.
"""

from __future__ import annotations

import zlib
from contextlib import contextmanager
from typing import Iterator

import sqlalchemy as sa

from .db import Database

NAMESPACE = zlib.crc32(b"audiospective.poll") & 0x7FFFFFFF  # the name polls have always used


@contextmanager
def held(database: Database, user_id: int, *, wait: bool) -> Iterator[bool]:
    """A session-level lock on its own connection, for a poll: held across the HTTP request
    (no transaction stays open meanwhile). Yields whether it was taken (with `wait`,
    always, once the current holder is done)."""
    params = {"ns": NAMESPACE, "id": user_id}
    with database.engine.connect() as conn:
        if wait:
            conn.execute(sa.text("SELECT pg_advisory_lock(:ns, :id)"), params)
            got = True
        else:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:ns, :id)"), params).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, :id)"), params)
                conn.commit()


def for_transaction_sql(user_id_param: str) -> str:
    """SQL taking the lock until the end of the caller's transaction (an import's merge);
    waits for a poll in progress."""
    return f"SELECT pg_advisory_xact_lock({NAMESPACE}, {user_id_param})"
