"""GET /healthz for load balancers and operators: is the database reachable (503 if
not), how deep is the job queue, when did a worker last check in, how fresh is polling."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, jsonify
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from .db import get_database

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

_QUERY = sa.text("""
    SELECT
      (SELECT count(*) FROM procrastinate_jobs
        WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())) AS queue_depth,
      (SELECT extract(epoch FROM now() - max(last_heartbeat)) FROM procrastinate_workers) AS worker_age,
      (SELECT count(*) FROM procrastinate_workers
        WHERE last_heartbeat > now() - interval '1 minute') AS workers_alive,
      (SELECT extract(epoch FROM now() - max(last_success_at)) FROM archive_state) AS poll_age
""")


@bp.get("/healthz")
def healthz():
    try:
        with get_database().engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            try:
                row = conn.execute(_QUERY).one()
            except ProgrammingError:
                return jsonify(status="error", database="ok",
                               schema="missing: run `audiospective db upgrade`"), 503
    except (OperationalError, SQLAlchemyError) as exc:
        log.warning("healthz: database unreachable: %s", type(exc).__name__)
        return jsonify(status="error", database="unreachable"), 503

    def seconds(value):
        return None if value is None else round(float(value), 1)

    return jsonify(
        status="ok",
        database="ok",
        queue={"depth": row.queue_depth},
        worker={"alive": row.workers_alive, "last_heartbeat_age_s": seconds(row.worker_age)},
        archive={"newest_successful_poll_age_s": seconds(row.poll_age)},
    )
