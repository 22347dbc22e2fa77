"""Export jobs. The work is app/exports/service.py's."""

from __future__ import annotations

from app.email.outbox import mail_context
from app.exports.service import expire_exports, run_export
from app.queue import EXPORT, app, flask_app


@app.task(**EXPORT.options())
def write_export(export_id: int) -> dict:
    flask = flask_app()
    settings = flask.config["SETTINGS"]
    with mail_context(flask):
        record = run_export(flask.extensions["database"], export_id, clock=flask.extensions["clock"],
                            expiry_days=settings.export_expiry_days, mail_secret=settings.secret_key)
    return {"status": record.status if record else "deleted", "rows": record.rows_written if record else 0}


@app.periodic(cron="*/10 * * * *", periodic_id="expire_exports")
@app.task(name="jobs.exports.expire_exports", queue="maintenance", queueing_lock="expire_exports")
def delete_expired_exports(timestamp: int) -> int:
    flask = flask_app()
    return expire_exports(flask.extensions["database"], flask.extensions["clock"]())
