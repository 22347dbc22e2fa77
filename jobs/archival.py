"""Archival jobs: the dispatcher, poll batches, enrichment. All logic is in app/archival."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.archival.dispatch import dispatch_due
from app.archival.enrich import KINDS, Enricher
from app.archival.poll import Archivist, poll_batch as poll_users

from . import app, defer_in_transaction, flask_app

POLL_PRIORITY = 10  # above everything else: a late poll can lose plays for good
ENRICH_PRIORITY = -10  # below everything else


@app.periodic(cron="* * * * * */20", periodic_id="dispatch_polls")
@app.task(queue="archival", queueing_lock="dispatch_polls", priority=POLL_PRIORITY)
def dispatch_polls(timestamp: int) -> int:
    archivist = _archivist()
    return dispatch_due(archivist.database, archivist.budget, archivist.settings, archivist.clock(), _defer_batches)


@app.task(queue="archival", priority=POLL_PRIORITY)
def poll_batch(user_ids: list[int], dispatched_at: str | None = None) -> dict:
    results = poll_users(_archivist(), user_ids, datetime.fromisoformat(dispatched_at) if dispatched_at else None)
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    return outcomes


@app.periodic(cron="* * * * *", periodic_id="dispatch_enrichment")
@app.task(queue="enrichment", queueing_lock="dispatch_enrichment", priority=ENRICH_PRIORITY)
def dispatch_enrichment(timestamp: int) -> None:
    enricher = _enricher()
    if enricher.budget.paused_until() is not None:
        return
    for kind in KINDS:
        if enricher.pending(kind):
            # queueing_lock: at most one waiting per kind; lock: one running at a time, app-wide.
            enrich_batch.configure(queueing_lock=f"enrich_{kind}", lock="enrichment").defer(kind=kind)


@app.task(queue="enrichment", priority=ENRICH_PRIORITY)
def enrich_batch(kind: str) -> dict:
    return _enricher().run(kind).to_json()


def _defer_batches(session: Session, batches: list[list[int]], dispatched_at: datetime) -> None:
    """Defer in the dispatcher's own transaction: jobs exist exactly when users are marked."""
    defer_in_transaction(poll_batch, session.connection().connection.driver_connection,
                         *({"user_ids": batch, "dispatched_at": dispatched_at.isoformat()} for batch in batches))


_cache: dict[str, object] = {}


def _archivist() -> Archivist:
    if "archivist" not in _cache:
        _cache["archivist"] = Archivist.from_app(flask_app())
    return _cache["archivist"]


def _enricher() -> Enricher:
    if "enricher" not in _cache:
        _cache["enricher"] = Enricher.from_app(flask_app())
    return _cache["enricher"]
