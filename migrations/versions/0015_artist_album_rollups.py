"""Artist and album rollups: the dashboard's artist, album, genre and totals panels read
them instead of joining every track of a period to its artists (25k index probes for a
year of a heavy listener: 150-200 ms, twice with the previous period for movement).

    artist_months, artist_years, artist_totals   plays, ms, and lead_plays (the artist
                                                  credited first: genres count those)
    album_months, album_years, album_totals      plays and ms

Invariant, for every user, bucket and artist (album): the sum of the track rollups of the
tracks linked to it *now*. Three things change that sum, and each adjusts the rollups in
the statement that changes it:

* plays inserted or deleted: the plays triggers (0004) now aggregate a statement's plays
  once per (user, UTC month, track) and derive every other rollup from that, through the
  track's current artists and album;
* a track's artists replaced (track_artists insert/delete, when a poll or enrichment
  resolves a track that an import knew only by names): the track's rollups move from
  the old artists to the new;
* a track's album changed (same occasion): likewise between albums.

A play's writer and a track's resolver must not miss each other (each would add what it
saw before the other committed). Only tracks not yet resolved (`enriched_at IS NULL`)
ever change links, so the plays triggers take FOR SHARE locks on such tracks among the
statement's plays before reading links, and the resolver locks them (app/archival/
store.py) before changing them; both in id order, so they cannot deadlock each other.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

SESSION_GAP = "interval '10 minutes'"
MS = "coalesce(c.ms_played, t.duration_ms, 0)::bigint"

TABLES = """
CREATE TABLE artist_months (
    user_id integer NOT NULL, month timestamptz NOT NULL, artist_id integer NOT NULL,
    plays integer NOT NULL, ms bigint NOT NULL, lead_plays integer NOT NULL,
    PRIMARY KEY (user_id, month, artist_id)
);
CREATE TABLE artist_years (
    user_id integer NOT NULL, year timestamptz NOT NULL, artist_id integer NOT NULL,
    plays integer NOT NULL, ms bigint NOT NULL, lead_plays integer NOT NULL,
    PRIMARY KEY (user_id, year, artist_id)
);
CREATE TABLE artist_totals (
    user_id integer NOT NULL, artist_id integer NOT NULL,
    plays integer NOT NULL, ms bigint NOT NULL, lead_plays integer NOT NULL,
    PRIMARY KEY (user_id, artist_id)
);
CREATE TABLE album_months (
    user_id integer NOT NULL, month timestamptz NOT NULL, album_id integer NOT NULL,
    plays integer NOT NULL, ms bigint NOT NULL,
    PRIMARY KEY (user_id, month, album_id)
);
CREATE TABLE album_years (
    user_id integer NOT NULL, year timestamptz NOT NULL, album_id integer NOT NULL,
    plays integer NOT NULL, ms bigint NOT NULL,
    PRIMARY KEY (user_id, year, album_id)
);
CREATE TABLE album_totals (
    user_id integer NOT NULL, album_id integer NOT NULL,
    plays integer NOT NULL, ms bigint NOT NULL,
    PRIMARY KEY (user_id, album_id)
);
-- Who has played a track, for moving its rollups when its artists or album change.
CREATE INDEX ix_track_totals_track ON track_totals (track_id);
"""

NEW_TABLES = ("artist_months", "artist_years", "artist_totals", "album_months", "album_years", "album_totals")


def _upsert(table: str, key: str, columns: list[str], select: str) -> str:
    """INSERT … ON CONFLICT adding `columns` to existing rows, in key order (no deadlocks)."""
    updates = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in columns)
    return (f"INSERT INTO {table} AS r ({key}, {', '.join(columns)}) {select} ORDER BY {key} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}")


def artists_sql(delta: str, links: str, sign: int) -> str:
    """CTEs adding `sign` × a track-month delta (user_id, month, track_id, plays, ms) to the
    artist rollups through `links` (track_id, position, artist_id)."""
    s = "" if sign > 0 else "-"
    cols = ["plays", "ms", "lead_plays"]
    return f"""
    am AS MATERIALIZED (
        SELECT d.user_id, d.month, l.artist_id, {s}sum(d.plays)::int AS plays, {s}sum(d.ms)::bigint AS ms,
               {s}coalesce(sum(d.plays) FILTER (WHERE l.position = 0), 0)::int AS lead_plays
          FROM {delta} d JOIN {links} l ON l.track_id = d.track_id GROUP BY 1, 2, 3
    ), am_ins AS (
        {_upsert("artist_months", "user_id, month, artist_id", cols,
                 "SELECT user_id, month, artist_id, plays, ms, lead_plays FROM am")}
    ), ay_ins AS (
        {_upsert("artist_years", "user_id, year, artist_id", cols,
                 "SELECT user_id, date_trunc('year', month, 'UTC') AS year, artist_id, sum(plays), sum(ms), "
                 "sum(lead_plays) FROM am GROUP BY 1, 2, 3")}
    ), at_ins AS (
        {_upsert("artist_totals", "user_id, artist_id", cols,
                 "SELECT user_id, artist_id, sum(plays), sum(ms), sum(lead_plays) FROM am GROUP BY 1, 2")}
    )"""


def albums_sql(delta: str, albums: str, sign: int) -> str:
    """CTEs adding `sign` × a track-month delta to the album rollups through `albums`
    (id, album_id): the tracks' albums."""
    s = "" if sign > 0 else "-"
    cols = ["plays", "ms"]
    return f"""
    bm AS MATERIALIZED (
        SELECT d.user_id, d.month, b.album_id, {s}sum(d.plays)::int AS plays, {s}sum(d.ms)::bigint AS ms
          FROM {delta} d JOIN {albums} b ON b.id = d.track_id
         WHERE b.album_id IS NOT NULL GROUP BY 1, 2, 3
    ), bm_ins AS (
        {_upsert("album_months", "user_id, month, album_id", cols,
                 "SELECT user_id, month, album_id, plays, ms FROM bm")}
    ), by_ins AS (
        {_upsert("album_years", "user_id, year, album_id", cols,
                 "SELECT user_id, date_trunc('year', month, 'UTC') AS year, album_id, sum(plays), sum(ms) "
                 "FROM bm GROUP BY 1, 2, 3")}
    ), bt_ins AS (
        {_upsert("album_totals", "user_id, album_id", cols,
                 "SELECT user_id, album_id, sum(plays), sum(ms) FROM bm GROUP BY 1, 2")}
    )"""


BUMP_VERSIONS = """INSERT INTO archive_versions AS r (user_id, version)
    SELECT DISTINCT user_id, 1 FROM {source} ORDER BY 1
    ON CONFLICT (user_id) DO UPDATE SET version = r.version + 1"""


def rollup_sql(source: str, sign: int) -> str:
    """Adds (sign 1) or removes (sign -1) the plays in a transition table from every
    rollup but the sessions: listening hours from the plays, everything else from one
    aggregate per (user, UTC month, track)."""
    s = "" if sign > 0 else "-"
    track_cols = ["plays", "ms"]
    extremes = ("first_played_at = least(r.first_played_at, excluded.first_played_at), "
                "last_played_at = greatest(r.last_played_at, excluded.last_played_at)") if sign > 0 else \
        "first_played_at = r.first_played_at, last_played_at = r.last_played_at"
    return f"""
    WITH p AS MATERIALIZED (
        SELECT c.user_id, c.played_at, c.track_id, c.played_at AT TIME ZONE u.timezone AS local,
               {MS} AS ms, (c.ms_played IS NULL)::int AS est
          FROM {source} c JOIN tracks t ON t.id = c.track_id JOIN users u ON u.id = c.user_id
    ), tm AS MATERIALIZED (
        SELECT user_id, date_trunc('month', played_at, 'UTC') AS month, track_id, count(*) AS plays, sum(ms) AS ms,
               min(played_at) AS first_at, max(played_at) AS last_at
          FROM p GROUP BY 1, 2, 3
    ), hours AS (
        INSERT INTO listening_hours AS r (user_id, day, hour, plays, ms, estimated)
        SELECT user_id, local::date, extract(hour FROM local), {s}count(*), {s}sum(ms), {s}sum(est)
          FROM p GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, day, hour) DO UPDATE
           SET plays = r.plays + excluded.plays, ms = r.ms + excluded.ms, estimated = r.estimated + excluded.estimated
    ), months AS (
        {_upsert("track_months", "user_id, month, track_id", track_cols,
                 f"SELECT user_id, month, track_id, {s}plays, {s}ms FROM tm")}
    ), years AS (
        {_upsert("track_years", "user_id, year, track_id", track_cols,
                 f"SELECT user_id, date_trunc('year', month, 'UTC') AS year, track_id, {s}sum(plays), {s}sum(ms) "
                 f"FROM tm GROUP BY 1, 2, 3")}
    ), totals AS (
        INSERT INTO track_totals AS r (user_id, track_id, plays, ms, first_played_at, last_played_at)
        SELECT user_id, track_id, {s}sum(plays), {s}sum(ms), min(first_at), max(last_at)
          FROM tm GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (user_id, track_id) DO UPDATE
           SET plays = r.plays + excluded.plays, ms = r.ms + excluded.ms, {extremes}
    ), {artists_sql("tm", "track_artists", sign)}, {albums_sql("tm", "tracks", sign)}
    {BUMP_VERSIONS.format(source="tm")}
    """


LOCK_USERS = "PERFORM 1 FROM users WHERE id IN (SELECT DISTINCT user_id FROM {source}) ORDER BY id FOR SHARE"
# Unresolved tracks may get new artists and album from a concurrent resolver: wait for it
# (or make it wait) before reading their links.
LOCK_UNRESOLVED = ("PERFORM 1 FROM tracks WHERE id IN (SELECT DISTINCT track_id FROM {source}) "
                   "AND enriched_at IS NULL ORDER BY id FOR SHARE")
SESSIONS = """PERFORM 1 FROM (SELECT rollup_sessions(s.user_id, s.lo, s.hi)
      FROM (SELECT c.user_id, min(c.played_at) AS lo, max(c.played_at) AS hi FROM {source} c
             WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id) GROUP BY c.user_id) s) done"""


def _drop_empty(tables: tuple[str, ...], users: str) -> str:
    return "\n".join(f"    DELETE FROM {t} WHERE plays <= 0 AND user_id IN (SELECT user_id FROM {users});"
                     for t in tables)


# The track rollups of the tracks in `changed` (track_id column), per user and UTC month.
TRACK_MONTHS_OF = """(SELECT m.user_id, m.month, m.track_id, m.plays, m.ms
    FROM (SELECT DISTINCT track_id FROM {changed}) c
    JOIN track_totals tt ON tt.track_id = c.track_id
    JOIN track_months m ON m.user_id = tt.user_id AND m.track_id = tt.track_id)"""

# Tracks whose album an UPDATE statement changed (in its transition tables).
MOVED = """(SELECT n.id AS track_id, o.album_id AS old_album, n.album_id AS new_album
    FROM old_tracks o JOIN new_tracks n ON n.id = o.id WHERE o.album_id IS DISTINCT FROM n.album_id)"""
ROLLUP_TABLES = ("listening_hours", "track_months", "track_years", "track_totals", *NEW_TABLES, "listening_sessions",
                 "archive_versions")

FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION plays_after_insert() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    {LOCK_USERS.format(source="inserted_plays")};
    {LOCK_UNRESOLVED.format(source="inserted_plays")};
    {rollup_sql("inserted_plays", 1)};
    {SESSIONS.format(source="inserted_plays")};
    RETURN NULL;
END $$;

-- A user being deleted takes their rollups with them (users_drop_rollups): the join to
-- users in rollup_sql leaves their plays out.
CREATE OR REPLACE FUNCTION plays_after_delete() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    {LOCK_USERS.format(source="deleted_plays")};
    {LOCK_UNRESOLVED.format(source="deleted_plays")};
    {rollup_sql("deleted_plays", -1)};
{_drop_empty(("listening_hours", "track_months", "track_years", "track_totals") + NEW_TABLES, "deleted_plays")}
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
    {SESSIONS.format(source="deleted_plays")};
    RETURN NULL;
END $$;

-- A track's artists replaced: its rollups, every user's, move with the links.
CREATE FUNCTION track_artists_after_insert() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    WITH d AS MATERIALIZED {TRACK_MONTHS_OF.format(changed="new_links")}, {artists_sql("d", "new_links", 1)}
    {BUMP_VERSIONS.format(source="d")};
    RETURN NULL;
END $$;

CREATE FUNCTION track_artists_after_delete() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    WITH d AS MATERIALIZED {TRACK_MONTHS_OF.format(changed="old_links")}, {artists_sql("d", "old_links", -1)}
    {BUMP_VERSIONS.format(source="d")};
{_drop_empty(NEW_TABLES[:3], TRACK_MONTHS_OF.format(changed="old_links") + " d")}
    RETURN NULL;
END $$;

-- A track's album changed: its rollups move from the old album to the new one (two
-- statements: one album may be both the old one of a track and the new one of another).
CREATE FUNCTION tracks_after_update() RETURNS trigger LANGUAGE plpgsql SET work_mem = '64MB' AS $$
BEGIN
    IF NOT EXISTS {MOVED} THEN
        RETURN NULL;
    END IF;
    WITH d AS MATERIALIZED {TRACK_MONTHS_OF.format(changed=MOVED)},
    {albums_sql("d", f"(SELECT track_id AS id, old_album AS album_id FROM {MOVED} m)", -1)}
    {BUMP_VERSIONS.format(source="d")};
    WITH d AS MATERIALIZED {TRACK_MONTHS_OF.format(changed=MOVED)},
    {albums_sql("d", f"(SELECT track_id AS id, new_album AS album_id FROM {MOVED} m)", 1)}
    {BUMP_VERSIONS.format(source="d")};
{_drop_empty(NEW_TABLES[3:], TRACK_MONTHS_OF.format(changed=MOVED) + " d")}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION users_drop_rollups() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{chr(10).join(f"    DELETE FROM {t} WHERE user_id = OLD.id;" for t in ROLLUP_TABLES)}
    DELETE FROM plays WHERE user_id = OLD.id;  -- last: its trigger finds nothing left to adjust
    RETURN OLD;
END $$;

CREATE TRIGGER track_artists_rollup_insert AFTER INSERT ON track_artists
    REFERENCING NEW TABLE AS new_links
    FOR EACH STATEMENT EXECUTE FUNCTION track_artists_after_insert();
CREATE TRIGGER track_artists_rollup_delete AFTER DELETE ON track_artists
    REFERENCING OLD TABLE AS old_links
    FOR EACH STATEMENT EXECUTE FUNCTION track_artists_after_delete();
CREATE TRIGGER tracks_rollup_album AFTER UPDATE ON tracks
    REFERENCING OLD TABLE AS old_tracks NEW TABLE AS new_tracks
    FOR EACH STATEMENT EXECUTE FUNCTION tracks_after_update();
"""


# Archives that already hold plays get their artist and album rollups from their tracks'.
BACKFILL = f"""WITH {artists_sql("track_months", "track_artists", 1)}, {albums_sql("track_months", "tracks", 1)}
    SELECT 1"""


def _previous_functions() -> str:
    """0004's definitions of the functions this migration replaces, for the downgrade."""
    path = Path(__file__).with_name("0004_rollups.py")
    spec = importlib.util.spec_from_file_location("rollups_0004", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wanted = ("plays_after_insert()", "plays_after_delete()", "users_drop_rollups()")
    parts = module.FUNCTIONS.split("CREATE FUNCTION ")
    return "".join("CREATE OR REPLACE FUNCTION " + part.split("CREATE TRIGGER")[0]
                   for part in parts if part.startswith(wanted))


def upgrade() -> None:
    connection = op.get_bind().connection.driver_connection
    connection.execute(TABLES)
    connection.execute(FUNCTIONS)
    connection.execute(BACKFILL)


def downgrade() -> None:
    op.execute("DROP TRIGGER track_artists_rollup_insert ON track_artists")
    op.execute("DROP TRIGGER track_artists_rollup_delete ON track_artists")
    op.execute("DROP TRIGGER tracks_rollup_album ON tracks")
    for function in ("track_artists_after_insert()", "track_artists_after_delete()", "tracks_after_update()"):
        op.execute(f"DROP FUNCTION {function}")
    op.get_bind().connection.driver_connection.execute(_previous_functions())
    for table in NEW_TABLES:
        op.drop_table(table)
    op.execute("DROP INDEX ix_track_totals_track")
