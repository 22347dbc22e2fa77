"""GET /metrics in Prometheus' text format, for a scraper holding METRICS_TOKEN (404 for
anyone else, and when no token is set). Every figure is read from Postgres when scraped:
the state all processes share, so any web process answers for the whole instance."""

from __future__ import annotations

import hmac

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, request

from .db import get_database

bp = Blueprint("metrics", __name__)

# (name, type, help, SQL yielding (labels dict or None, value) rows)
METRICS = (
    ("audiospective_plays", "gauge", "Plays archived, all users.",
     "SELECT NULL, coalesce(sum(plays), 0) FROM track_totals"),
    ("audiospective_users", "gauge", "Users by archival status.",
     "SELECT json_build_object('status', status), count(*) FROM users GROUP BY status"),
    ("audiospective_polls_last_hour", "gauge", "Users polled successfully in the last hour.",
     "SELECT NULL, count(*) FROM archive_state WHERE last_success_at > now() - interval '1 hour'"),
    ("audiospective_poll_failures", "gauge", "Users whose last polls failed, by failure kind.",
     "SELECT json_build_object('kind', last_failure_kind), count(*) FROM archive_state "
     "WHERE consecutive_failures > 0 GROUP BY last_failure_kind"),
    ("audiospective_spotify_requests_total", "counter",
     "Spotify Web API requests made (polls and enrichment), since the instance began.",
     "SELECT NULL, requests_total FROM api_budget"),
    ("audiospective_spotify_rate_limited_total", "counter",
     "Spotify 429 answers that paused every request, since the instance began.",
     "SELECT NULL, rate_limited_total FROM api_budget"),
    ("audiospective_spotify_paused", "gauge", "1 while Spotify's rate limit (429) pauses every request.",
     "SELECT NULL, count(*) FROM api_budget WHERE paused_until > now()"),
    ("audiospective_jobs", "gauge", "Jobs in the queue by task and status.",
     "SELECT json_build_object('task', task_name, 'status', status), count(*) FROM procrastinate_jobs "
     "GROUP BY task_name, status"),
    ("audiospective_job_seconds_last_hour", "gauge", "Mean run time of jobs finished in the last hour, by task.",
     "SELECT json_build_object('task', j.task_name), avg(extract(epoch FROM e.at - s.at)) "
     "FROM procrastinate_jobs j JOIN procrastinate_events s ON s.job_id = j.id AND s.type = 'started' "
     "JOIN procrastinate_events e ON e.job_id = j.id AND e.type IN ('succeeded', 'failed') "
     "WHERE e.at > now() - interval '1 hour' GROUP BY j.task_name"),
    ("audiospective_imports", "gauge", "Imports by status.",
     "SELECT json_build_object('status', status), count(*) FROM imports GROUP BY status"),
    ("audiospective_exports", "gauge", "Exports by format and status.",
     "SELECT json_build_object('format', format, 'status', status), count(*) FROM exports GROUP BY format, status"),
    ("audiospective_emails", "gauge", "Mail by state.",
     "SELECT json_build_object('state', state), count(*) FROM (SELECT CASE WHEN sent_at IS NOT NULL THEN 'sent' "
     "WHEN failed_at IS NOT NULL THEN 'failed' ELSE 'waiting' END AS state FROM outbox) o GROUP BY state"),
    ("audiospective_workers_alive", "gauge", "Workers with a heartbeat in the last minute.",
     "SELECT NULL, count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - interval '1 minute'"),
)


def _escape(value) -> str:
    """A label value as the text format wants it: backslash, newline and quote escaped."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(conn) -> str:
    lines = []
    for name, kind, help_text, query in METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for labels, value in conn.execute(sa.text(query)):
            label = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}" if labels else ""
            lines.append(f"{name}{label} {float(value or 0):g}")
    return "\n".join(lines) + "\n"


@bp.get("/metrics")
def metrics():
    token = current_app.config["SETTINGS"].metrics_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(given.encode(), token.encode()):
        abort(404)
    with get_database().engine.connect() as conn:
        body = render(conn)
    return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")
