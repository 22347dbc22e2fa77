"""Database access shared by web requests, jobs, CLI commands and tests.

`Database` owns the SQLAlchemy engine and session factory for one process. Domain code
takes a `Session` argument and never reaches for a global, so the same function runs
from a view, a procrastinate task, a CLI command or a test.
"""

from __future__ import annotations

import logging
import random
import select
import time
from contextlib import contextmanager
from typing import Iterator

import psycopg
import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import IntegerConverter

from .config import Settings, sqlalchemy_url
from .embedded_pg import ensure_server


log = logging.getLogger(__name__)

# The database is down, restarting or out of connections: a moment's wait, not a bug
# (pages answer 503; jobs run again once it is back).
DATABASE_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, psycopg.OperationalError)

# --- the connection budget (README, "Connection budget") -------------------------------
# Each process opens at most its pool's size: every connection, psycopg ones included
# (Database.connection), comes from the one pool, with no overflow. A thread that finds it
# empty waits (POOL_WAIT_S) for one to come back, rather than opening another.
POOL_WAIT_S = 30
# A connection the server refuses for want of slots ("too many clients", a role's
# connection limit) is tried again for this long, backing off, before it is an error.
CONNECT_PATIENCE_S = 15
QUEUE_POOL_SIZE = 2  # procrastinate's, in a worker; its LISTEN takes one more of its own
CONNECT_TIMEOUT_S = 5  # short, to keep /healthz honest
APPLICATION_NAME = "audiospective"


def web_pool_size(threads: int) -> int:
    """A request holds up to two connections at once (its session, and a statistics read or
    a rate-limit count on their own): with one more than the threads, some thread can
    always take its second, so a busy pool means a wait, never a deadlock."""
    return threads + 1


def web_connections(threads: int) -> int:
    """All a web process may open: its pool, and the connection of the listen API's
    writer on the event loop (ingest.AsyncWriter)."""
    return web_pool_size(threads) + 1


def worker_pool_size(concurrency: int) -> int:
    """A job holds up to three (an export: its progress, its snapshot, a PDF's statistics),
    so with 2 per job and one more, some job can always finish."""
    return 2 * concurrency + 1


def worker_connections(concurrency: int) -> int:
    """All a worker process may open: its pool, the queue's pool and the queue's listener."""
    return worker_pool_size(concurrency) + QUEUE_POOL_SIZE + 1


def _refused_for_slots(exc: psycopg.OperationalError) -> bool:
    # SQLSTATE 53300 (too_many_connections); libpq reports connection-time errors by text.
    text = str(exc)
    return getattr(exc, "sqlstate", None) == "53300" or "too many clients" in text \
        or "too many connections" in text or "remaining connection slots are reserved" in text


def connect_patiently(connect, *args, **kwargs):
    """`connect(...)`, tried again while the server is out of connection slots: another
    process's connections come back within moments, so a page or a job waits a little
    instead of failing. Any other error, or still no slot after CONNECT_PATIENCE_S, raises."""
    deadline = time.monotonic() + CONNECT_PATIENCE_S
    delay = 0.05
    while True:
        try:
            return connect(*args, **kwargs)
        except psycopg.OperationalError as exc:
            if not _refused_for_slots(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("the database has no free connection slot; trying again in %.2f s", delay)
            time.sleep(delay * (0.5 + random.random()))  # jittered: waiters do not retry in step
            delay = min(delay * 2, 2.0)


# A pooled connection unused for longer than this is pinged (a round trip) before it is
# handed out; one used more recently is only looked at (see _quiet).
PING_AFTER_IDLE_S = 10


def _quiet(conn: psycopg.Connection) -> bool:
    """Whether an idle connection has heard nothing from the server, without a round trip.
    A server that shuts down, restarts, crashes or ends an idle session leaves a message
    or the end of the stream on the socket, so a connection that has something to read
    while it has asked nothing is gone. (A network that drops a connection silently
    leaves nothing to read: the ping after PING_AFTER_IDLE_S catches that.)"""
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return not poller.poll(0)


def _check_on_checkout(dbapi_conn, record, _proxy) -> None:
    """The pool's liveness check. SQLAlchemy's pre-ping costs a round trip on every
    checkout (three for an autocommit caller: BEGIN, the ping, ROLLBACK), a third of what
    a scrobbler's single listen cost; this one costs a poll() unless the connection sat
    unused for a while. A dropped connection is replaced, not handed to a request."""
    idle_s = time.monotonic() - record.info.get("idle_since", 0.0)
    alive = _quiet(dbapi_conn)
    if alive and idle_s > PING_AFTER_IDLE_S:
        try:
            dbapi_conn.execute(";")
            dbapi_conn.rollback()
        except psycopg.Error:
            alive = False
    if not alive:
        # The server went away, so the pool's other connections did too: all replaced.
        raise sa.exc.InvalidatePoolError("the database closed the connection")


def _mark_idle(dbapi_conn, record, *_args) -> None:
    record.info["idle_since"] = time.monotonic()


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL when configured, else the embedded server (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url
    return ensure_server(settings.data_dir / "pg")


class Database:
    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = url  # psycopg form (postgresql://…), also what procrastinate connects with
        self.pool_size = pool_size
        self.engine = sa.create_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=POOL_WAIT_S,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S, "application_name": APPLICATION_NAME},
        )

        @sa.event.listens_for(self.engine, "do_connect")
        def _connect(dialect, record, cargs, cparams):
            return connect_patiently(dialect.loaded_dbapi.connect, *cargs, **cparams)

        sa.event.listen(self.engine, "checkout", _check_on_checkout)
        sa.event.listen(self.engine, "connect", _mark_idle)
        sa.event.listen(self.engine, "checkin", _mark_idle)

        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def connection(self, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
        """A plain psycopg connection (COPY, a long transaction, progress written beside
        it), taken from the pool so it counts against the budget like any other. As
        `with psycopg.connect(...)`: committed at the end, rolled back on an exception."""
        raw = self.engine.raw_connection()
        conn = raw.driver_connection
        try:
            conn.autocommit = autocommit
            yield conn
            if not autocommit and not conn.closed:
                conn.commit()
        except BaseException:
            if not conn.closed and not autocommit:
                conn.rollback()
            raise
        finally:
            if not conn.closed and autocommit:
                conn.autocommit = False  # the pool's other users expect transactions
            raw.close()  # back to the pool (rolled back if anything is left open)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on any exception."""
        with self.sessionmaker() as session:
            with session.begin():
                yield session

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """A connection for the statistics' read-only queries. Without parallel workers:
        starting them costs more than they save on queries of tens of milliseconds, and
        a dashboard runs nine such queries at once (a year's totals: 61 -> 46 ms)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


class IdConverter(IntegerConverter):
    """`<id:name>` in a route: a row id, which Postgres keeps in 32 bits. A bigger number
    names no row: 404, not an out-of-range error from the database."""

    def __init__(self, url_map, *args, **kwargs):
        super().__init__(url_map, *args, max=2**31 - 1, **kwargs)


def init_app(app: Flask, database: Database) -> None:
    app.extensions["database"] = database
    app.url_map.converters["id"] = IdConverter
    app.teardown_appcontext(_close_request_session)


def get_database(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["database"]


def get_session() -> Session:
    """The request's session, opened on first use and closed when the request ends."""
    if "db_session" not in g:
        g.db_session = get_database().sessionmaker()
    return g.db_session


def _close_request_session(exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is None:
        return
    try:
        if exc is not None:
            session.rollback()
        session.close()
    except DATABASE_UNAVAILABLE as error:
        # The server went away after the answer was made (a crash, a restart): the answer
        # stands, and the dead connection is dropped instead of going back to the pool.
        log.warning("database gone while ending a request: %s", str(error).splitlines()[0][:200])
        session.invalidate()
