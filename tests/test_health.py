"""GET /healthz: 200 with queue and worker facts when the database answers, 503 when not."""

from __future__ import annotations

from app import create_app
from app.config import load_settings
from conftest import app_environ, free_port, fresh_database


def test_healthy(client, db_conn):
    db_conn.execute("INSERT INTO procrastinate_workers DEFAULT VALUES")
    db_conn.execute("INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('default', 'x'), ('default', 'y')")
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["queue"] == {"depth": 2}
    assert body["worker"]["alive"] == 1 and body["worker"]["last_heartbeat_age_s"] < 5
    assert body["archive"] == {"newest_successful_poll_age_s": None}


def test_database_unreachable_gives_503(simulator):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app({"TESTING": True}, settings=load_settings(app_environ(dead, simulator.url)))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "database": "unreachable"}


def test_unmigrated_database_gives_503_with_the_fix(pg_admin_url, simulator):
    empty = fresh_database(pg_admin_url, "audiospective_unmigrated")
    app = create_app({"TESTING": True}, settings=load_settings(app_environ(empty, simulator.url)))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["schema"] == "missing: run `audiospective db upgrade`"
    app.extensions["database"].dispose()
