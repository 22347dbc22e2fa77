"""Track and hour rollups: plain inserts where the user has nothing yet.

INSERT … ON CONFLICT DO UPDATE inserts each row speculatively (a probe of the key, the
row, its index entries, then a confirmation): about a third more per row than a plain
INSERT. An import into an empty archive, or of years the archive does not reach yet,
creates nearly all of its rollup rows. So the plays insert trigger first looks, per
table, whether the statement's users have any row in the span its plays cover (one
index probe per user); where they have none, no key can exist and every row is plainly
inserted. Otherwise each row's key is looked up (one index probe) and a row whose key is
missing is plainly inserted, the others upserted as before. (An anti-join to find the
missing keys was tried first: on an instance with 1.2 million track-month rows the
planner hashed the whole table for it, 1 s per import.)

That is only safe where nobody else can add the same key meanwhile. The track rollups
(track_months, track_years, track_totals) are written by the plays triggers alone, and a
user's plays by one writer at a time (app/archive_lock.py); listening_hours is also
rebuilt by a time-zone change, which must wait for the user row the plays triggers lock
first (and vice versa). The artist and album rollups are also moved by the catalogue's
resolution of a track (0015), which holds no user's lock: they stay upserts, as does
everything the delete trigger writes.

Measured (auto_explain, this machine): the track and hour rollups of a 242,572-row
account-data import into an empty archive took 1.26 s, now 0.92 s.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

import runpy
from pathlib import Path
from types import SimpleNamespace

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def _rollups_0015() -> SimpleNamespace:
    """Migration 0015, whose plays triggers this one rewrites in part."""
    return SimpleNamespace(**runpy.run_path(str(Path(__file__).with_name("0015_artist_album_rollups.py"))))


def _write(name: str, table: str, key: str, select: str, added: list[str], extremes: dict[str, str | None],
           fresh: str | None) -> str:
    """CTEs writing the rows of `select` (the key's columns, then `added` and `extremes`'
    columns, by name) to `table`: a row whose key the table lacks is plainly inserted, the
    others upserted, summing `added` into the existing row and keeping each of `extremes`
    by its function (least, greatest; None: as it is); in key order. Whether the key
    exists is one index probe per row, or none when `fresh` (SQL over `{name}_data`, the
    rows) says no key of them can (None: every key exists, as a delete's do)."""
    keys = [k.strip() for k in key.split(",")]
    columns = ", ".join(keys + added + list(extremes))
    sets = [f"{c} = r.{c} + excluded.{c}" for c in added] + \
        [f"{c} = {f}(r.{c}, excluded.{c})" for c, f in extremes.items() if f is not None]
    match = " AND ".join(f"r.{k} = d.{k}" for k in keys)
    missing = "false" if fresh is None else \
        f"CASE WHEN ({fresh}) THEN true ELSE NOT EXISTS (SELECT 1 FROM {table} r WHERE {match}) END"
    return f"""{name}_data AS MATERIALIZED ({select}
    ), {name}_rows AS MATERIALIZED (
        SELECT d.*, {missing} AS missing FROM {name}_data d
    ), {name} AS (
        INSERT INTO {table} ({columns})
        SELECT {columns} FROM {name}_rows WHERE missing ORDER BY {key}
    ), {name}_added AS (
        INSERT INTO {table} AS r ({columns})
        SELECT {columns} FROM {name}_rows WHERE NOT missing ORDER BY {key}
        ON CONFLICT ({key}) DO UPDATE SET {", ".join(sets)}
    )"""


def _none_yet(table: str, rows: str, column: str | None) -> str:
    """SQL: whether `table` has no row of `rows`' users between the least and the greatest
    `column` of their rows (None: none at all). A LATERAL probe per user, so the planner
    cannot choose to read the whole table."""
    span = f", min({column}) AS lo, max({column}) AS hi" if column else ""
    within = f" AND r.{column} BETWEEN b.lo AND b.hi" if column else ""
    return (f"NOT EXISTS (SELECT 1 FROM (SELECT user_id{span} FROM {rows} GROUP BY user_id) b "
            f"CROSS JOIN LATERAL (SELECT 1 FROM {table} r WHERE r.user_id = b.user_id{within} LIMIT 1) x)")


def _rollup_sql(m0015, source: str, sign: int) -> str:
    """0015's rollup_sql, with the track and hour rollups written as _write does."""
    s = "" if sign > 0 else "-"
    before = m0015.rollup_sql(source, sign)
    aggregates = before[:before.index("), hours AS (")] + ")"  # p: the plays; tm: per user, UTC month and track

    def fresh(table: str, rows: str, column: str | None) -> str | None:
        return _none_yet(table, rows, column) if sign > 0 else None  # a delete's keys exist

    # Removed plays cannot move a first or last play: plays_after_delete recomputes them.
    extremes = {"first_played_at": "least", "last_played_at": "greatest"} if sign > 0 else \
        {"first_played_at": None, "last_played_at": None}
    return f"""{aggregates}, {_write(
        "hours", "listening_hours", "user_id, day, hour",
        f"SELECT user_id, local::date AS day, extract(hour FROM local) AS hour, {s}count(*) AS plays, "
        f"{s}sum(ms) AS ms, {s}sum(est) AS estimated FROM p GROUP BY 1, 2, 3", ["plays", "ms", "estimated"], {},
        fresh("listening_hours", "hours_data", "day"))}, {
    _write("months", "track_months", "user_id, month, track_id",
           f"SELECT user_id, month, track_id, {s}plays AS plays, {s}ms AS ms FROM tm", ["plays", "ms"], {},
           fresh("track_months", "months_data", "month"))}, {
    _write("years", "track_years", "user_id, year, track_id",
           f"SELECT user_id, date_trunc('year', month, 'UTC') AS year, track_id, {s}sum(plays) AS plays, "
           f"{s}sum(ms) AS ms FROM tm GROUP BY 1, 2, 3", ["plays", "ms"], {},
           fresh("track_years", "years_data", "year"))}, {
    _write("totals", "track_totals", "user_id, track_id",
           f"SELECT user_id, track_id, {s}sum(plays) AS plays, {s}sum(ms) AS ms, "
           "min(first_at) AS first_played_at, max(last_at) AS last_played_at FROM tm GROUP BY 1, 2",
           ["plays", "ms"], extremes, fresh("track_totals", "totals_data", None))},
    {m0015.artists_sql("tm", "track_artists", sign)}, {m0015.albums_sql("tm", "tracks", sign)}
    {m0015.BUMP_VERSIONS.format(source="tm")}
    """


def _plays_functions(m0015, rollup) -> str:
    """0015's plays_after_insert() and plays_after_delete(), with `rollup(source, sign)`
    in place of their rollup statement."""
    parts = m0015.FUNCTIONS.split("CREATE OR REPLACE FUNCTION ")
    text = "".join("CREATE OR REPLACE FUNCTION " + part[:part.index("END $$;") + len("END $$;")] + "\n"
                   for part in parts if part.startswith(("plays_after_insert()", "plays_after_delete()")))
    for source, sign in (("inserted_plays", 1), ("deleted_plays", -1)):
        statement = m0015.rollup_sql(source, sign)
        assert text.count(statement) == 1, source
        text = text.replace(statement, rollup(source, sign))
    return text


def upgrade() -> None:
    m0015 = _rollups_0015()
    op.get_bind().connection.driver_connection.execute(
        _plays_functions(m0015, lambda source, sign: _rollup_sql(m0015, source, sign)))


def downgrade() -> None:
    m0015 = _rollups_0015()
    op.get_bind().connection.driver_connection.execute(_plays_functions(m0015, m0015.rollup_sql))
