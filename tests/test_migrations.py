"""Migrations create the contract schema (docs/architecture.md, "Data model") and the job queue's tables."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.config import sqlalchemy_url
from app.migrate import current, downgrade, head, include_object, upgrade
from app.models import Base
from conftest import fresh_database

CONTRACT = {"users", "artists", "albums", "tracks", "track_artists", "plays", "gaps"}
OURS = CONTRACT | {"spotify_tokens", "archive_state", "api_budget", "app_flags"}
QUEUE = {"procrastinate_jobs", "procrastinate_workers", "procrastinate_events", "procrastinate_periodic_defers"}


def tables(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_schema_has_the_contract_tables(db_conn):
    assert OURS | QUEUE <= tables(db_conn)


def test_models_and_migrations_agree(database_url):
    engine = sa.create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_object": include_object}),
                                Base.metadata)
    engine.dispose()
    assert diff == []


def test_plays_keep_milliseconds_and_one_index_serves_uniqueness_and_ranges(db_conn):
    indexes = db_conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'plays'").fetchall()
    assert [i[0].split(" USING ")[1] for i in indexes] == ["btree (user_id, played_at, track_id)"]

    user = db_conn.execute("INSERT INTO users (spotify_id, display_name) VALUES ('u', 'U') RETURNING id").fetchone()[0]
    track = db_conn.execute("INSERT INTO tracks (name) VALUES ('T') RETURNING id").fetchone()[0]
    db_conn.execute("INSERT INTO plays (user_id, track_id, played_at, source) VALUES (%s, %s, %s, 1)",
                    (user, track, "2025-10-22T23:00:36.512345Z"))
    stored = db_conn.execute("SELECT to_char(played_at AT TIME ZONE 'UTC', 'HH24:MI:SS.US') FROM plays").fetchone()[0]
    assert stored == "23:00:36.512000"
    with pytest.raises(psycopg.errors.UniqueViolation):
        db_conn.execute("INSERT INTO plays (user_id, track_id, played_at, source) VALUES (%s, %s, %s, 2)",
                        (user, track, "2025-10-22T23:00:36.512Z"))
    # Deleting a user deletes their archive.
    db_conn.execute("DELETE FROM users WHERE id = %s", (user,))
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 0


def test_downgrade_to_nothing_and_back(pg_admin_url):
    url = fresh_database(pg_admin_url, "audiospective_migrations")
    upgrade(url)
    assert current(url) == f"{head()} (head)"
    downgrade(url, "base")
    with psycopg.connect(url) as conn:
        assert tables(conn) == {"alembic_version"}
        assert conn.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'procrastinate%'").fetchone()[0] == 0
    upgrade(url)
    with psycopg.connect(url) as conn:
        assert OURS | QUEUE <= tables(conn)
