"""Merging listens submitted through the API. The work is app/api/ingest.py's."""

from __future__ import annotations

from app.api.ingest import merge_inbox
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
