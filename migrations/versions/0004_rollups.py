"""Listening rollups: summary tables that keep the dashboard fast at millions of plays,
maintained exactly by triggers on `plays`.

Per-track buckets are UTC months and years; a local period is covered by them in the
middle and by raw plays at its ends (app/stats/queries.py). Listening per hour is kept in
the user's own time zone, so a dashboard reads whole local days, and is rebuilt when the
user changes time zone. Tables (all per user):

    listening_hours      plays, listening ms and estimated plays per local day and hour
    track_months         plays and ms per track per UTC month
    track_years          plays and ms per track per UTC year
    track_totals         plays, ms, first and last play per track, all time
    listening_sessions   runs of plays with no more than 10 minutes between them
    archive_versions     bumped by every change to a user's plays (exact cache keys)

Listening time per play is `ms_played` when known (imports), else the track's duration
(polls), counted in `estimated`. `plays` loses its foreign keys here (see the note above
users_drop_rollups: triggers keep its references instead). Statement-level triggers with transition tables do one
aggregate per statement, so an import of 250k plays costs a few set operations; rows are
upserted in key order so concurrent writers for one user cannot deadlock. Plays are
immutable: an UPDATE is refused (delete and insert instead).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SESSION_GAP = "interval '10 minutes'"

TABLES = """
CREATE TABLE listening_hours (
    user_id integer NOT NULL,
    day date NOT NULL,  -- in the user's time zone (users.timezone)
    hour smallint NOT NULL,  -- local wall-clock hour; the repeated hour of a DST change counts once
    plays integer NOT NULL,
    ms bigint NOT NULL,
    estimated integer NOT NULL,
    PRIMARY KEY (user_id, day, hour)
);
CREATE TABLE track_months (
    user_id integer NOT NULL,
    month timestamptz NOT NULL,
    track_id integer NOT NULL,
    plays integer NOT NULL,
    ms bigint NOT NULL,
    PRIMARY KEY (user_id, month, track_id)
);
CREATE INDEX ix_track_months_user_track ON track_months (user_id, track_id, month);
CREATE TABLE track_years (
    user_id integer NOT NULL,
    year timestamptz NOT NULL,
    track_id integer NOT NULL,
    plays integer NOT NULL,
    ms bigint NOT NULL,
    PRIMARY KEY (user_id, year, track_id)
);
CREATE TABLE track_totals (
    user_id integer NOT NULL,
    track_id integer NOT NULL,
    plays integer NOT NULL,
    ms bigint NOT NULL,
    first_played_at timestamptz(3) NOT NULL,
    last_played_at timestamptz(3) NOT NULL,
    PRIMARY KEY (user_id, track_id)
);
CREATE INDEX ix_track_totals_first ON track_totals (user_id, first_played_at);
CREATE TABLE listening_sessions (
    user_id integer NOT NULL,
    started_at timestamptz(3) NOT NULL,
    ended_at timestamptz(3) NOT NULL,
    plays integer NOT NULL,
    ms bigint NOT NULL,
    PRIMARY KEY (user_id, started_at)
);
CREATE INDEX ix_listening_sessions_end ON listening_sessions (user_id, ended_at);
-- Tracks with their albums, readable without the table: counting a user's distinct
-- albums joins every track they ever played.
CREATE INDEX ix_tracks_id_album ON tracks (id) INCLUDE (album_id);
CREATE TABLE archive_versions (
    user_id integer PRIMARY KEY,
    version bigint NOT NULL
);
"""

# A play's listening time: what was played when known (imports), else the track's length
# (polls), counted as estimated.
MS = "coalesce(c.ms_played, t.duration_ms, 0)::bigint"
MS_COLUMNS = f"{MS} AS ms, (c.ms_played IS NULL)::int AS est"


def hours_sql(source: str, sign: int) -> str:
    """Add (or remove) plays with a `local` timestamp to listening_hours."""
    return f"""
        INSERT INTO listening_hours AS r (user_id, day, hour, plays, ms, estimated)
        SELECT user_id, local::date, extract(hour FROM local), {sign} * count(*), {sign} * sum(ms), {sign} * sum(est)
          FROM {source} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, day, hour) DO UPDATE
           SET plays = r.plays + excluded.plays, ms = r.ms + excluded.ms, estimated = r.estimated + excluded.estimated
    """


def rollup_sql(source: str, sign: int) -> str:
    """The statement that adds (sign 1) or removes (sign -1) the plays in `source` (a
    transition table, or `plays` itself for the backfill) from every rollup."""
    return f"""
    WITH p AS MATERIALIZED (
        SELECT c.user_id, c.played_at, c.track_id, c.played_at AT TIME ZONE u.timezone AS local, {MS_COLUMNS}
          FROM {source} c JOIN tracks t ON t.id = c.track_id JOIN users u ON u.id = c.user_id
    ), hours AS (
        {hours_sql("p", sign)}
    ), months AS (
        INSERT INTO track_months AS r (user_id, month, track_id, plays, ms)
        SELECT user_id, date_trunc('month', played_at, 'UTC'), track_id, {sign} * count(*), {sign} * sum(ms)
          FROM p GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, month, track_id) DO UPDATE SET plays = r.plays + excluded.plays, ms = r.ms + excluded.ms
    ), years AS (
        INSERT INTO track_years AS r (user_id, year, track_id, plays, ms)
        SELECT user_id, date_trunc('year', played_at, 'UTC'), track_id, {sign} * count(*), {sign} * sum(ms)
          FROM p GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, year, track_id) DO UPDATE SET plays = r.plays + excluded.plays, ms = r.ms + excluded.ms
    ), totals AS (
        INSERT INTO track_totals AS r (user_id, track_id, plays, ms, first_played_at, last_played_at)
        SELECT user_id, track_id, {sign} * count(*), {sign} * sum(ms), min(played_at), max(played_at)
          FROM p GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (user_id, track_id) DO UPDATE
           SET plays = r.plays + excluded.plays, ms = r.ms + excluded.ms,
               first_played_at = {"least(r.first_played_at, excluded.first_played_at)" if sign > 0
                                  else "r.first_played_at"},
               last_played_at = {"greatest(r.last_played_at, excluded.last_played_at)" if sign > 0
                                 else "r.last_played_at"}
    )
    INSERT INTO archive_versions AS r (user_id, version)
    SELECT DISTINCT user_id, 1 FROM p ORDER BY 1
    ON CONFLICT (user_id) DO UPDATE SET version = r.version + 1
    """


def sessions_sql(source: str) -> str:
    """Rebuild each affected user's sessions over the span their changed plays touch."""
    return f"""
    SELECT rollup_sessions(s.user_id, s.lo, s.hi)
      FROM (SELECT c.user_id, min(c.played_at) AS lo, max(c.played_at) AS hi FROM {source} c
             WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id) GROUP BY c.user_id) s
    """


# Plays' writers hold their users' rows FOR SHARE until they commit, so a time-zone change
# (which rebuilds listening_hours from the plays it can see) waits for them, and they, if
# the change came first, bucket by the new zone: hours are never in two zones at once.
LOCK_USERS = "PERFORM 1 FROM users WHERE id IN (SELECT DISTINCT user_id FROM {source}) ORDER BY id FOR SHARE"


FUNCTIONS = f"""
-- Rebuild a user's sessions overlapping [lo, hi], widened to whole sessions (a new play
-- can join two sessions; a deleted one can split one).
CREATE FUNCTION rollup_sessions(uid integer, lo timestamptz, hi timestamptz) RETURNS void LANGUAGE plpgsql AS $$
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
              FROM (SELECT c.played_at, {MS} AS ms, c.played_at - make_interval(secs => {MS} / 1000.0) AS started
                      FROM plays c JOIN tracks t ON t.id = c.track_id
                     WHERE c.user_id = uid
                       AND c.played_at BETWEEN first_start - {SESSION_GAP} AND last_end + {SESSION_GAP}) s
          ) flagged
      ) numbered
     GROUP BY session
    HAVING max(played_at) >= first_start AND min(started) <= last_end
    ON CONFLICT (user_id, started_at) DO NOTHING;
END $$;

CREATE FUNCTION plays_after_insert() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    {LOCK_USERS.format(source="inserted_plays")};
    {rollup_sql("inserted_plays", 1)};
    PERFORM 1 FROM ({sessions_sql("inserted_plays")}) done;
    RETURN NULL;
END $$;

-- A user being deleted takes their rollups with them (ON DELETE CASCADE): the EXISTS
-- in rollup_sql leaves their plays out.
CREATE FUNCTION plays_after_delete() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    {LOCK_USERS.format(source="deleted_plays")};
    {rollup_sql("deleted_plays", -1)};
    DELETE FROM listening_hours WHERE plays <= 0 AND user_id IN (SELECT user_id FROM deleted_plays);
    DELETE FROM track_months WHERE plays <= 0 AND user_id IN (SELECT user_id FROM deleted_plays);
    DELETE FROM track_years WHERE plays <= 0 AND user_id IN (SELECT user_id FROM deleted_plays);
    DELETE FROM track_totals WHERE plays <= 0 AND user_id IN (SELECT user_id FROM deleted_plays);
    -- First and last plays cannot be decremented: recompute them, looking only from the
    -- first (or last) month the track still has plays in.
    UPDATE track_totals r SET
        first_played_at = (SELECT min(p.played_at) FROM plays p
                            WHERE p.user_id = r.user_id AND p.track_id = r.track_id
                              AND p.played_at >= (SELECT min(month) FROM track_months m
                                                   WHERE m.user_id = r.user_id AND m.track_id = r.track_id)),
        last_played_at = (SELECT max(p.played_at) FROM plays p
                           WHERE p.user_id = r.user_id AND p.track_id = r.track_id
                             AND p.played_at >= (SELECT max(month) FROM track_months m
                                                  WHERE m.user_id = r.user_id AND m.track_id = r.track_id))
     WHERE (r.user_id, r.track_id) IN (SELECT DISTINCT user_id, track_id FROM deleted_plays)
       AND EXISTS (SELECT 1 FROM users u WHERE u.id = r.user_id);
    PERFORM 1 FROM ({sessions_sql("deleted_plays")}) done;
    RETURN NULL;
END $$;

-- Neither plays nor rollups carry foreign keys: checked row by row they cost more than
-- the rollups themselves (an import of 250k plays spent 2 s on them). Their references
-- hold by construction (only the poll and the import write plays, with ids they just
-- resolved) and by these triggers: a deleted user's plays and rollups go with them, and
-- catalogue tracks are never deleted.
CREATE FUNCTION users_drop_rollups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM listening_hours WHERE user_id = OLD.id;
    DELETE FROM track_months WHERE user_id = OLD.id;
    DELETE FROM track_years WHERE user_id = OLD.id;
    DELETE FROM track_totals WHERE user_id = OLD.id;
    DELETE FROM listening_sessions WHERE user_id = OLD.id;
    DELETE FROM archive_versions WHERE user_id = OLD.id;
    DELETE FROM plays WHERE user_id = OLD.id;  -- last: its trigger finds nothing left to adjust
    RETURN OLD;
END $$;

-- A new time zone moves every play to another local day or hour: rebuild the user's hours
-- from their plays (about a second for a million plays; people rarely move).
CREATE FUNCTION users_rezone_hours() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    PERFORM now() AT TIME ZONE NEW.timezone;  -- a zone Postgres does not know fails here, not in every later poll
    DELETE FROM listening_hours WHERE user_id = NEW.id;
    WITH p AS (
        SELECT c.user_id, c.played_at AT TIME ZONE NEW.timezone AS local, {MS_COLUMNS}
          FROM plays c JOIN tracks t ON t.id = c.track_id WHERE c.user_id = NEW.id
    ) {hours_sql("p", 1)};
    INSERT INTO archive_versions AS r (user_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (user_id) DO UPDATE SET version = r.version + 1;
    RETURN NULL;
END $$;

CREATE FUNCTION tracks_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'catalogue tracks are never deleted: plays refer to them';
END $$;

CREATE FUNCTION plays_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'plays are immutable: delete and insert instead (the listening rollups depend on it)';
END $$;

CREATE TRIGGER plays_rollup_insert AFTER INSERT ON plays
    REFERENCING NEW TABLE AS inserted_plays FOR EACH STATEMENT EXECUTE FUNCTION plays_after_insert();
CREATE TRIGGER plays_rollup_delete AFTER DELETE ON plays
    REFERENCING OLD TABLE AS deleted_plays FOR EACH STATEMENT EXECUTE FUNCTION plays_after_delete();
CREATE TRIGGER plays_immutable BEFORE UPDATE ON plays FOR EACH ROW EXECUTE FUNCTION plays_refuse_update();
CREATE TRIGGER users_rollups_delete AFTER DELETE ON users FOR EACH ROW EXECUTE FUNCTION users_drop_rollups();
CREATE TRIGGER users_rezone AFTER UPDATE OF timezone ON users
    FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone) EXECUTE FUNCTION users_rezone_hours();
CREATE TRIGGER tracks_never_deleted BEFORE DELETE ON tracks FOR EACH ROW EXECUTE FUNCTION tracks_refuse_delete();
"""

# Archives that already hold plays get their rollups at once.
BACKFILL = rollup_sql("plays", 1) + ";\n" + sessions_sql("plays") + ";"


def upgrade() -> None:
    connection = op.get_bind().connection.driver_connection
    op.drop_constraint("fk_plays_track_id_tracks", "plays", type_="foreignkey")
    op.drop_constraint("fk_plays_user_id_users", "plays", type_="foreignkey")
    connection.execute(TABLES)
    connection.execute(FUNCTIONS)
    connection.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER tracks_never_deleted ON tracks")
    op.execute("DROP TRIGGER plays_rollup_insert ON plays")
    op.execute("DROP TRIGGER plays_rollup_delete ON plays")
    op.execute("DROP TRIGGER plays_immutable ON plays")
    op.execute("DROP TRIGGER users_rollups_delete ON users")
    op.execute("DROP TRIGGER users_rezone ON users")
    for function in ("plays_after_insert()", "plays_after_delete()", "plays_refuse_update()", "users_drop_rollups()", "users_rezone_hours()",
                     "tracks_refuse_delete()",
                     "rollup_sessions(integer, timestamptz, timestamptz)"):
        op.execute(f"DROP FUNCTION {function}")
    op.execute("DROP INDEX ix_tracks_id_album")
    for table in ("archive_versions", "listening_sessions", "track_totals", "track_years", "track_months",
                  "listening_hours"):
        op.drop_table(table)
    op.create_foreign_key("fk_plays_user_id_users", "plays", "users", ["user_id"], ["id"], ondelete="CASCADE")
    op.create_foreign_key("fk_plays_track_id_tracks", "plays", "tracks", ["track_id"], ["id"])
