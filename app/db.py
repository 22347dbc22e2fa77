"""Database access shared by web requests, jobs, CLI commands and tests.

`Database` owns the SQLAlchemy engine and session factory for one process. Domain code
takes a `Session` argument and never reaches for a global, so the same function runs
from a view, a procrastinate task, a CLI command or a test.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import psycopg
import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import IntegerConverter

from .config import Settings, sqlalchemy_url
from .embedded_pg import ensure_server


# The database is down, restarting or out of connections: a moment's wait, not a bug
# (pages answer 503; jobs run again once it is back).
DATABASE_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, psycopg.OperationalError)


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL when configured, else the embedded server (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url
    return ensure_server(settings.data_dir / "pg")


class Database:
    def __init__(self, url: str, *, pool_size: int = 10):
        self.url = url  # psycopg form (postgresql://…), also what procrastinate connects with
        self.engine = sa.create_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            # A dropped connection (database restart, idle timeout) is replaced, not
            # handed to a request; the short connect timeout keeps /healthz honest.
            pool_pre_ping=True,
            connect_args={"connect_timeout": 5, "application_name": "audiospective"},
        )
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

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
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
