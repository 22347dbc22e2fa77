"""Listening sessions rebuilt without a join to tracks for plays whose length is known.

rollup_sessions (0004) joined every play in the span to its track for the track's length,
though imported plays carry what was played: right after an import of 200k plays the
statistics of plays are stale, Postgres picks a nested loop, and the join cost 0.35 s of
a 9 s import. The track is now looked up only for plays without `ms_played` (polls), and
the start is computed with interval arithmetic instead of numeric division. Same sessions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SESSION_GAP = "interval '10 minutes'"


def _function(ms: str, started: str, joined: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION rollup_sessions(uid integer, lo timestamptz, hi timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    first_start timestamptz;
    last_end timestamptz;
BEGIN
    SELECT least(lo, min(started_at)), greatest(hi, max(ended_at)) INTO first_start, last_end
      FROM listening_sessions
     WHERE user_id = uid AND ended_at >= lo - {SESSION_GAP} AND started_at <= hi + {SESSION_GAP};
    first_start := coalesce(first_start, lo);
    last_end := coalesce(last_end, hi);
    DELETE FROM listening_sessions WHERE user_id = uid AND ended_at >= first_start AND started_at <= last_end;
    INSERT INTO listening_sessions (user_id, started_at, ended_at, plays, ms)
    SELECT uid, min(started), max(played_at), count(*), sum(ms)
      FROM (
        SELECT played_at, started, ms, sum(opens) OVER (ORDER BY played_at, started) AS session
          FROM (
            SELECT played_at, started, ms,
                   CASE WHEN started - lag(played_at) OVER (ORDER BY played_at, started) > {SESSION_GAP}
                        THEN 1 ELSE 0 END AS opens
              FROM (SELECT c.played_at, {ms} AS ms, {started} AS started
                      FROM plays c {joined}
                     WHERE c.user_id = uid
                       AND c.played_at BETWEEN first_start - {SESSION_GAP} AND last_end + {SESSION_GAP}) s
          ) flagged
      ) numbered
     GROUP BY session
    HAVING max(played_at) >= first_start AND min(started) <= last_end
    ON CONFLICT (user_id, started_at) DO NOTHING;
END $$;
"""


# COALESCE evaluates the subquery only for plays without ms_played.
NEW_MS = "coalesce(c.ms_played, (SELECT t.duration_ms FROM tracks t WHERE t.id = c.track_id), 0)::bigint"
OLD_MS = "coalesce(c.ms_played, t.duration_ms, 0)::bigint"


def upgrade() -> None:
    op.execute(_function(NEW_MS, f"c.played_at - {NEW_MS} * interval '1 millisecond'", ""))


def downgrade() -> None:
    op.execute(_function(OLD_MS, f"c.played_at - make_interval(secs => {OLD_MS} / 1000.0)",
                         "JOIN tracks t ON t.id = c.track_id"))
