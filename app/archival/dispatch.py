"""Finding who is due and handing them to poll jobs.

Runs every 20 seconds in whichever worker picks the periodic job (a queueing lock keeps
it to one at a time). Due users are active, past their `next_poll_at` (a failure's
cooldown is expressed there too), and not handed out in the last `LEASE`. They are
claimed with FOR UPDATE SKIP LOCKED, stamped `dispatched_at`, and deferred in batches
of POLL_USERS_PER_JOB, all in one transaction: either the jobs exist and the users are
marked, or neither. Pro users first, then those with fewer recent failures, then those
whose last success is oldest (the most plays at stake).

Nothing is dispatched while a 429 pause is in force: the polls would only wait.

A sign-in puts a user back in line (`resume_collection`): polled within seconds, with
the failures the new grant has cured forgotten.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from .. import queue
from ..config import ArchivalSettings
from ..db import Database
from ..models import ArchiveState, User, UserStatus
from .budget import Budget
from .cadence import first_poll_delay

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


def resume_collection(session: Session, user: User, now: datetime, rng: random.Random) -> None:
    """Start or restart collecting a user's plays (at sign-in): the first poll soon, so the
    dashboard fills at once, and the failures the sign-in has cured forgotten."""
    if user.status in (UserStatus.reauth_required.value, UserStatus.deactivated.value):
        user.status = UserStatus.active.value
    first_poll = now + first_poll_delay(rng)
    session.execute(
        insert(ArchiveState).values(user_id=user.id, next_poll_at=first_poll).on_conflict_do_update(
            index_elements=[ArchiveState.user_id],
            set_={"next_poll_at": first_poll, "consecutive_failures": 0, "circuit_open_until": None,
                  "last_failure_kind": None, "last_failure_message": None, "dispatched_at": None},
        )
    )


def defer_poll_batches(session: Session, batches: list[list[int]], dispatched_at: datetime) -> None:
    """The `Deferrer` the worker's dispatcher uses: one poll job per batch, in the
    dispatcher's own transaction, so jobs exist exactly when their users are marked."""
    queue.defer(queue.POLL_BATCH, session,
                *({"user_ids": batch, "dispatched_at": dispatched_at.isoformat()} for batch in batches))
