"""Merging listens submitted through the API. The work is app/api/ingest.py's."""

from __future__ import annotations

from app.api.ingest import merge_inbox, queue_forgotten_merges
from app.imports.merge import AccountGone
from app.queue import MERGE_LISTENS, app, flask_app


@app.task(**MERGE_LISTENS.options())
def merge_listens(user_id: int) -> dict:
    try:
        merged = merge_inbox(flask_app().extensions["database"], user_id)
    except AccountGone:
        return {"status": "deleted"}  # their inbox went with them
    return {"batches": len(merged), "new_plays": sum(m.imported for m in merged),
            "already_archived": sum(m.already_in_archive for m in merged),
            "repeated": sum(m.duplicate_in_upload for m in merged)}


@app.periodic(cron="* * * * *", periodic_id="merge_forgotten_listens")
@app.task(name="jobs.listens.merge_forgotten_listens", queue="listens", queueing_lock="merge_forgotten_listens",
          priority=MERGE_LISTENS.priority)
def merge_forgotten_listens(timestamp: int) -> dict:
    flask = flask_app()
    return {"queued_for": queue_forgotten_merges(flask.extensions["database"], now=flask.extensions["clock"]())}
