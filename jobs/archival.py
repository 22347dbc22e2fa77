"""Archival jobs: the dispatcher, poll batches, enrichment. All logic is in app/archival."""

from __future__ import annotations

from datetime import datetime

from app.archival.dispatch import defer_poll_batches, dispatch_due
from app.archival.enrich import KINDS, Enricher
from app.archival.poll import Archivist
from app.archival.poll import poll_batch as poll_users
from app.queue import (
    ENRICH_BATCH,
    ENRICH_PRIORITY,
    POLL_BATCH,
    POLL_PRIORITY,
    app,
    flask_app,
)


@app.periodic(cron="* * * * * */20", periodic_id="dispatch_polls")
@app.task(name="jobs.archival.dispatch_polls", queue="archival", queueing_lock="dispatch_polls",
          priority=POLL_PRIORITY)
def dispatch_polls(timestamp: int) -> int:
    archivist = _archivist()
    return dispatch_due(archivist.database, archivist.budget, archivist.settings, archivist.clock(),
                        defer_poll_batches)


@app.task(**POLL_BATCH.options())
def poll_batch(user_ids: list[int], dispatched_at: str | None = None) -> dict:
    results = poll_users(_archivist(), user_ids, datetime.fromisoformat(dispatched_at) if dispatched_at else None)
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    return outcomes


@app.periodic(cron="* * * * *", periodic_id="dispatch_enrichment")
@app.task(name="jobs.archival.dispatch_enrichment", queue="enrichment", queueing_lock="dispatch_enrichment",
          priority=ENRICH_PRIORITY)
def dispatch_enrichment(timestamp: int) -> None:
    enricher = _enricher()
    if enricher.budget.paused_until() is not None:
        return
    for kind in KINDS:
        if enricher.pending(kind):
            # queueing_lock: at most one waiting per kind; lock: one running at a time, app-wide.
            enrich_batch.configure(queueing_lock=f"enrich_{kind}", lock="enrichment").defer(kind=kind)


@app.task(**ENRICH_BATCH.options())
def enrich_batch(kind: str) -> dict:
    return _enricher().run(kind).to_json()


_cache: dict[str, object] = {}


def _archivist() -> Archivist:
    if "archivist" not in _cache:
        _cache["archivist"] = Archivist.from_app(flask_app())
    return _cache["archivist"]


def _enricher() -> Enricher:
    if "enricher" not in _cache:
        _cache["enricher"] = Enricher.from_app(flask_app())
    return _cache["enricher"]
