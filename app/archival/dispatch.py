"""Finding who is due and handing them to poll jobs.

Runs every 20 seconds in whichever worker picks the periodic job (a queueing lock keeps
it to one at a time). Due users are active, past their `next_poll_at` (a failure's
cooldown is expressed there too), and not handed out in the last `LEASE`. They are
claimed with FOR UPDATE SKIP LOCKED, stamped `dispatched_at`, and deferred in batches
of POLL_USERS_PER_JOB, all in one transaction: either the jobs exist and the users are
marked, or neither. Pro users first, then those with fewer recent failures, then those
whose last success is oldest (the most plays at stake).

Nothing is dispatched while a 429 pause is in force: the polls would only wait.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import queue
from ..config import ArchivalSettings
from ..db import Database
from .budget import Budget

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)  # a claimed user whose job has not run by then is claimed again
MAX_PER_RUN = 5000

# (session, batches of user ids, dispatched_at) -> defers one job per batch in that session's transaction
Deferrer = Callable[[Session, list[list[int]], datetime], None]


def dispatch_due(database: Database, budget: Budget, settings: ArchivalSettings, now: datetime,
                 defer: Deferrer, *, limit: int = MAX_PER_RUN) -> int:
    if budget.paused_until() is not None:
        return 0
    with database.session() as session:
        due = session.execute(sa.text("""
            SELECT a.user_id
              FROM archive_state a JOIN users u ON u.id = a.user_id
             WHERE u.status = 'active'
               AND a.next_poll_at <= :now
               AND (a.dispatched_at IS NULL OR a.dispatched_at < :lease_start)
             ORDER BY (u.plan = 'pro') DESC, a.consecutive_failures, a.last_success_at NULLS FIRST, a.next_poll_at
             LIMIT :limit
               FOR UPDATE OF a SKIP LOCKED
        """), {"now": now, "lease_start": now - LEASE, "limit": limit}).scalars().all()
        if not due:
            return 0
        session.execute(sa.text("UPDATE archive_state SET dispatched_at = :now WHERE user_id = ANY(:ids)"),
                        {"now": now, "ids": list(due)})
        size = settings.users_per_job
        defer(session, [list(due[i:i + size]) for i in range(0, len(due), size)], now)
    log.info("dispatched %s due users in %s jobs", len(due), -(-len(due) // settings.users_per_job))
    return len(due)


def defer_poll_batches(session: Session, batches: list[list[int]], dispatched_at: datetime) -> None:
    """The `Deferrer` the worker's dispatcher uses: one poll job per batch, in the
    dispatcher's own transaction, so jobs exist exactly when their users are marked."""
    queue.defer(queue.POLL_BATCH, session,
                *({"user_ids": batch, "dispatched_at": dispatched_at.isoformat()} for batch in batches))
