"""What the admin pages show, read in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..email.delivery import sent_last_hour
from ..models import AppFlag, OutboxMessage

DEV_MODE_FLAG = "catalogue_batch_forbidden"  # archival/enrich.py remembers Spotify's 403 on batch requests
DEV_MODE_SEATS = 5  # a development-mode Spotify app serves at most this many allow-listed accounts


@dataclass
class Health:
    budget_tokens: float
    paused_until: datetime | None
    pause_reason: str | None
    workers: list[tuple[int, datetime]]  # id, last heartbeat
    dev_mode_since: datetime | None


def health(session: Session, now: datetime) -> Health:
    tokens, paused_until, reason = session.execute(sa.text(
        "SELECT tokens, paused_until, pause_reason FROM api_budget WHERE id = 1")).one()
    workers = [(r[0], r[1]) for r in session.execute(sa.text(
        "SELECT id, last_heartbeat FROM procrastinate_workers ORDER BY last_heartbeat DESC"))]
    flag = session.get(AppFlag, DEV_MODE_FLAG)
    return Health(float(tokens), paused_until if paused_until and paused_until > now else None, reason, workers,
                  flag.updated_at if flag and flag.updated_at > now - timedelta(days=30) else None)


def jobs(session: Session) -> tuple[list[tuple[str, str, int]], list[dict]]:
    """(task, status, count) for every task, and the failed or stalled jobs (newest first)."""
    counts = [tuple(r) for r in session.execute(sa.text(
        "SELECT task_name, status::text, count(*) FROM procrastinate_jobs GROUP BY 1, 2 ORDER BY 1, 2"))]
    problems = [dict(r._mapping) for r in session.execute(sa.text("""
        SELECT j.id, j.task_name, j.status::text AS status, j.attempts, j.args::text AS args,
               (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id) AS at
          FROM procrastinate_jobs j
         WHERE j.status = 'failed'
            OR (j.status = 'doing' AND NOT EXISTS (SELECT 1 FROM procrastinate_workers w WHERE w.id = j.worker_id
                                                     AND w.last_heartbeat > now() - interval '1 minute'))
         ORDER BY j.id DESC LIMIT 100"""))]
    return counts, problems


@dataclass
class Mail:
    unsent: int
    failed: int
    sent_last_hour: int
    recent_failures: list[OutboxMessage]


def mail(session: Session, now: datetime) -> Mail:
    def count(*where) -> int:
        return session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(*where))

    return Mail(unsent=count(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None)),
                failed=count(OutboxMessage.failed_at.is_not(None)), sent_last_hour=sent_last_hour(session, now),
                recent_failures=list(session.scalars(sa.select(OutboxMessage).where(
                    sa.or_(OutboxMessage.failed_at.is_not(None), OutboxMessage.attempts > 0))
                    .order_by(OutboxMessage.id.desc()).limit(50))))
