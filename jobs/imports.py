"""Import jobs. The work is app/imports/service.py's."""

from __future__ import annotations

from app.imports.service import limits_from, run_import
from app.queue import IMPORT, app, flask_app


@app.task(**IMPORT.options())
def import_export(import_id: int) -> dict:
    flask = flask_app()
    record = run_import(flask.extensions["database"], import_id, limits=limits_from(flask.config["SETTINGS"]))
    if record is None:
        return {"status": "deleted"}
    return {"status": record.status, "report": record.report, "error": record.error}
