"""The connection budget of one process: its pool is a hard cap (psycopg connections
included), a full pool means waiting, and a server out of connection slots is waited for,
not an error. Against a Postgres of its own with max_connections = 6."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
import sqlalchemy as sa

from app import db
from conftest import TcpPostgres, wait_for

SLOTS = 6


@pytest.fixture(scope="module")
def small_postgres(tmp_path_factory):
    server = TcpPostgres(tmp_path_factory.mktemp("small-pg"), max_connections=str(SLOTS),
                         superuser_reserved_connections="0", reserved_connections="0")
    yield server
    server.stop()


def ours(admin) -> int:
    return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'audiospective'"
                         ).fetchone()[0]


def test_the_pool_is_a_hard_cap_for_orm_and_psycopg_connections_alike(small_postgres):
    database = db.Database(small_postgres.url(), pool_size=2)
    peak, errors = [0], []
    with psycopg.connect(small_postgres.url(), autocommit=True) as admin:
        def work(n: int) -> None:
            try:
                if n % 2:
                    with database.connection(autocommit=n % 4 == 1) as conn:
                        conn.execute("SELECT pg_sleep(0.1)")
                else:
                    with database.session() as session:
                        session.execute(sa.text("SELECT pg_sleep(0.1)"))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], ours(admin))
            time.sleep(0.01)
    database.dispose()
    assert not errors and peak[0] == 2  # 12 threads, never more than the pool's 2


def test_a_connection_from_the_pool_is_as_psycopg_connect_would_give(small_postgres):
    database = db.Database(small_postgres.url(), pool_size=1)
    with database.connection() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1)")
    with pytest.raises(ZeroDivisionError), database.connection() as conn:
        conn.execute("INSERT INTO kept VALUES (2)")
        1 / 0
    with database.connection(autocommit=True) as conn:
        assert conn.autocommit and conn.execute("SELECT array_agg(n) FROM kept").fetchone()[0] == [1]
    with database.connection() as conn:  # the same pooled connection, in transactions again
        assert not conn.autocommit
        conn.execute("DROP TABLE kept")
    database.dispose()


def test_a_server_out_of_slots_is_waited_for_then_the_work_goes_on(small_postgres, caplog):
    hogs = [psycopg.connect(small_postgres.url()) for _ in range(SLOTS)]
    database = db.Database(small_postgres.url(), pool_size=2)
    result: list = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: result.append(_one(database)))
    worker.start()
    time.sleep(1.0)  # the refused connection is being retried meanwhile
    assert worker.is_alive() and not result
    hogs.pop().close()  # another process lets one go
    worker.join(10)
    waited = time.monotonic() - started
    for hog in hogs:
        hog.close()
    database.dispose()
    assert result == [1] and waited >= 1.0
    assert "no free connection slot" in caplog.text


def test_no_slot_for_longer_than_the_patience_is_the_databases_unavailability(small_postgres, monkeypatch):
    monkeypatch.setattr(db, "CONNECT_PATIENCE_S", 0.5)
    hogs = [psycopg.connect(small_postgres.url()) for _ in range(SLOTS)]
    database = db.Database(small_postgres.url(), pool_size=1)
    try:
        with pytest.raises(db.DATABASE_UNAVAILABLE, match="too many clients"):
            _one(database)
    finally:
        for hog in hogs:
            hog.close()
        database.dispose()


def _one(database: db.Database) -> int:
    with database.session() as session:
        return session.execute(sa.text("SELECT 1")).scalar()


def _backend(database: db.Database) -> int:
    with database.connection(autocommit=True) as conn:
        return conn.execute("SELECT pg_backend_pid() -- marker").fetchone()[0]


def _last_statement(admin, pid: int) -> str:
    return admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


def _wait_until_gone(admin, pid: int) -> None:
    wait_for(lambda: admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is None,
             timeout=60, message=f"backend {pid} gone")


def test_a_recently_used_connection_is_handed_out_without_a_round_trip(small_postgres, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 3600.0)  # "recently", however slow this machine is today
    database = db.Database(small_postgres.url(), pool_size=1)
    with psycopg.connect(small_postgres.url(), autocommit=True) as admin:
        pid = _backend(database)
        with database.connection():
            pass
        with database.session():
            pass
        # Nothing was sent: the server's last statement from this connection is still ours.
        assert _last_statement(admin, pid) == "SELECT pg_backend_pid() -- marker"
    database.dispose()


def test_a_connection_idle_for_long_is_pinged_before_use(small_postgres, monkeypatch):
    database = db.Database(small_postgres.url(), pool_size=1)
    with psycopg.connect(small_postgres.url(), autocommit=True) as admin:
        pid = _backend(database)
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
        assert _backend(database) == pid
        assert admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'idle'",
                             [pid]).fetchone()[0] == 1
        with database.connection(autocommit=True):
            assert _last_statement(admin, pid) == "ROLLBACK"  # the ping, and its transaction ended
    database.dispose()


@pytest.mark.parametrize("orm", [False, True])
def test_a_connection_the_server_ended_is_replaced_not_handed_out(small_postgres, orm):
    """A restart or an administrator's pg_terminate_backend, seconds ago: the next request
    gets a new connection, not the error of the dead one."""
    database = db.Database(small_postgres.url(), pool_size=1)
    with psycopg.connect(small_postgres.url(), autocommit=True) as admin:
        pid = _backend(database)
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        _wait_until_gone(admin, pid)
        if orm:
            with database.session() as session:
                new = session.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        else:
            new = _backend(database)
        assert new != pid
    database.dispose()


def test_the_budget_formula():
    assert db.web_pool_size(3) == 4 and db.web_connections(3) == 5  # the pool, and the listen writer's
    assert db.worker_connections(2) == 8  # 2 x 2 + 1 pooled, 2 for the queue, its listener
    # The defaults on one web dyno (2 gunicorn processes) and one worker: 18, within 20.
    assert 2 * db.web_connections(3) + db.worker_connections(2) == 18


def test_a_server_gone_between_the_answer_and_the_end_of_the_request_costs_nothing(small_postgres):
    """Postgres killed while a request's session is still open (seen once in the SIGKILL
    drill: a 500 for a dashboard already rendered): ending the request does not fail,
    and the next request gets a live connection."""
    from flask import Flask

    app = Flask(__name__)
    database = db.Database(small_postgres.url(), pool_size=1)
    db.init_app(app, database)
    with psycopg.connect(small_postgres.url(), autocommit=True) as admin:
        with app.app_context():
            pid = db.get_session().execute(sa.text("SELECT pg_backend_pid()")).scalar()  # a transaction open
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            _wait_until_gone(admin, pid)
        with app.app_context():
            assert db.get_session().execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
    database.dispose()
