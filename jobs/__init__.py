"""The procrastinate app: the job queue lives in the same Postgres as everything else.

Tasks here are thin: they find the process's Flask app (for configuration, the database
and templates) and call domain code in `app/`, which a CLI command or a test can call
just the same.

The connector is bound at run time (`bind`), not import time, because the database URL
comes from validated configuration and, locally, from the embedded server it may start.
"""

from __future__ import annotations

import procrastinate
from flask import Flask

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(),
    import_paths=["jobs.maintenance"],
)

_flask_app: Flask | None = None


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
