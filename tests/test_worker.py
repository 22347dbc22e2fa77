"""The real procrastinate worker, as a separate process, keeps the queue healthy."""

from __future__ import annotations

from conftest import wait_for


def test_jobs_of_a_dead_worker_are_retried_and_finish(db_conn, workers):
    # A worker that vanished (SIGKILL, lost machine) while holding a job.
    dead = db_conn.execute(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '10 minutes') RETURNING id"
    ).fetchone()[0]
    job = db_conn.execute(
        """INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, worker_id)
           VALUES ('maintenance', 'jobs.maintenance.prune_finished_jobs', '{"timestamp": 0}', 'doing', %s)
           RETURNING id""", (dead,)).fetchone()[0]

    worker = workers()
    wait_for(lambda: db_conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job,)
                                     ).fetchone() == ("succeeded",), message="the stalled job finished")
    assert db_conn.execute("SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - "
                           "interval '30 seconds'").fetchone()[0] == 1
    assert worker.stop() == 0, worker.output()
    assert f"retrying stalled job {job}" in worker.output()
    # A clean stop unregisters the worker.
    assert db_conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] == 0


def test_a_worker_that_stopped_on_its_own_error_is_not_reported_as_a_database_outage():
    """The supervisor restarts the worker either way; its log must say which it was (a
    broken import once read "the worker lost the database", sending people to Postgres)."""
    import procrastinate.exceptions
    import psycopg

    from app.queue import _database_lost

    connector = procrastinate.exceptions.ConnectorException("could not listen")
    connector.__cause__ = psycopg.OperationalError("server closed the connection unexpectedly")
    assert _database_lost(None) and _database_lost(connector)
    assert _database_lost(psycopg.OperationalError("connection refused"))
    assert not _database_lost(ImportError("cannot import name 'forget_old' from 'app.limits'"))
    assert not _database_lost(ValueError("a bug"))
