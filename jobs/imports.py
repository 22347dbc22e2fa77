"""Import jobs. The work is app/imports/service.py's."""

from __future__ import annotations

from typing import Any

from app.imports.service import limits_from, run_import

from . import app, defer_in_transaction, flask_app


@app.task(queue="imports")
def import_export(import_id: int) -> dict:
    flask = flask_app()
    record = run_import(flask.extensions["database"], import_id, limits=limits_from(flask.config["SETTINGS"]))
    return {"status": record.status, "report": record.report, "error": record.error}


def defer_import(connection: Any, import_id: int, user_id: int) -> None:
    """In the upload's transaction; one import per user runs at a time (their merges would
    otherwise race over the same plays)."""
    defer_in_transaction(import_export, connection, {"import_id": import_id}, lock=f"import-user-{user_id}")
