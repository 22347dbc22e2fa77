"""The procrastinate app: the job queue lives in the same Postgres as everything else.

Tasks here are thin: they find the process's Flask app (for configuration, the database
and templates) and call domain code in `app/`, which a CLI command or a test can call
just the same.

The connector is bound at run time (`bind`), not import time, because the database URL
comes from validated configuration and, locally, from the embedded server it may start.
"""

from __future__ import annotations

from typing import Any

import procrastinate
import procrastinate.manager
import procrastinate.tasks
from flask import Flask

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=["jobs.maintenance", "jobs.archival", "jobs.imports"],
)

_flask_app: Flask | None = None

# Only ever used with an explicit connection, so it is never opened.
_sync_job_manager = procrastinate.manager.JobManager(connector=procrastinate.SyncPsycopgConnector())


def defer_in_transaction(task: procrastinate.tasks.Task, connection: Any, *task_kwargs: dict,
                         **options: Any) -> list[int]:
    """Defer jobs on the caller's psycopg connection (e.g. a SQLAlchemy session's), so they
    exist exactly when that transaction commits. procrastinate's own path would, inside a
    running worker, hand a sync connection to its async connector, which cannot use it."""
    deferrer = task.configure(connection=connection, **options)
    deferrer.job_manager = _sync_job_manager
    return deferrer.batch_defer(*task_kwargs)


def bind(flask_app: Flask) -> procrastinate.App:
    """Point the queue at this process's database and remember its Flask app for tasks."""
    global _flask_app
    _flask_app = flask_app
    database = flask_app.extensions["database"]
    connector = procrastinate.PsycopgConnector(conninfo=database.url, min_size=1, max_size=10)
    # What App.replace_connector does, kept for the life of the process.
    app.connector = connector
    app.job_manager.connector = connector
    return app


def flask_app() -> Flask:
    if _flask_app is None:
        raise RuntimeError("jobs.bind(flask_app) was not called in this process")
    return _flask_app
