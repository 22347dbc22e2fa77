"""Track and hour rollups: added to the rows that exist, plainly inserted where none does.

INSERT … ON CONFLICT DO UPDATE inserts each row speculatively (a probe of the key, the
row, its index entries, then a confirmation): about a third more per row than a plain
INSERT, and an import's rollup rows are nearly all new. The plays triggers now update
the keys a table has and insert the others, in one statement whose parts read the same
snapshot, so no key is both updated and inserted.

That is only safe where nobody else can add the same key meanwhile. The track rollups
(track_months, track_years, track_totals) are written by the plays triggers alone, and a
user's plays by one writer at a time (app/archive_lock.py); listening_hours is also
rebuilt by a time-zone change, which must wait for the user row the plays triggers lock
first (and vice versa). The artist and album rollups are also moved by the catalogue's
resolution of a track (0015), which holds no user's lock: they stay upserts.

Measured (auto_explain, this machine): the track and hour rollups of a 250,000-row
Last.fm import took 1.58 s, now 1.02 s; of a 242,572-row account-data import, 1.26 s, now
1.09 s (its rows spread over fewer months).

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


def _add_or_insert(name: str, table: str, key: str, select: str, added: list[str],
                   extremes: dict[str, str | None] | None = None) -> str:
    """CTEs adding the rows of `select` (the key's columns, then `added` and `extremes`'
    columns, by name) to `table`: the `added` columns summed into existing rows and each
    of `extremes` kept by its function (least, greatest; None: left as it is); rows for
    new keys inserted, in key order."""
    keys = [k.strip() for k in key.split(",")]
    match = " AND ".join(f"r.{k} = d.{k}" for k in keys)
    sets = [f"{c} = r.{c} + d.{c}" for c in added] + \
        [f"{c} = {f}(r.{c}, d.{c})" for c, f in (extremes or {}).items() if f is not None]
    columns = ", ".join(keys + added + list(extremes or {}))
    return f"""{name}_rows AS MATERIALIZED ({select}
    ), {name} AS (
        UPDATE {table} r SET {", ".join(sets)} FROM {name}_rows d WHERE {match}
    ), {name}_new AS (
        INSERT INTO {table} ({columns})
        SELECT {columns} FROM {name}_rows d WHERE NOT EXISTS (SELECT 1 FROM {table} r WHERE {match}) ORDER BY {key}
    )"""


def _rollup_sql(m0015, source: str, sign: int) -> str:
    """0015's rollup_sql with the track and hour rollups written as _add_or_insert does."""
    s = "" if sign > 0 else "-"
    before = m0015.rollup_sql(source, sign)
    aggregates = before[:before.index("), hours AS (")] + ")"  # p: the plays; tm: per user, UTC month and track
    # Removed plays cannot move a first or last play: plays_after_delete recomputes them.
    extremes = {"first_played_at": "least", "last_played_at": "greatest"} if sign > 0 else \
        {"first_played_at": None, "last_played_at": None}
    return f"""{aggregates}, {_add_or_insert(
        "hours", "listening_hours", "user_id, day, hour",
        f"SELECT user_id, local::date AS day, extract(hour FROM local) AS hour, {s}count(*) AS plays, "
        f"{s}sum(ms) AS ms, {s}sum(est) AS estimated FROM p GROUP BY 1, 2, 3", ["plays", "ms", "estimated"])}, {
    _add_or_insert("months", "track_months", "user_id, month, track_id",
                   f"SELECT user_id, month, track_id, {s}plays AS plays, {s}ms AS ms FROM tm", ["plays", "ms"])}, {
    _add_or_insert("years", "track_years", "user_id, year, track_id",
                   f"SELECT user_id, date_trunc('year', month, 'UTC') AS year, track_id, {s}sum(plays) AS plays, "
                   f"{s}sum(ms) AS ms FROM tm GROUP BY 1, 2, 3", ["plays", "ms"])}, {
    _add_or_insert("totals", "track_totals", "user_id, track_id",
                   f"SELECT user_id, track_id, {s}sum(plays) AS plays, {s}sum(ms) AS ms, "
                   "min(first_at) AS first_played_at, max(last_at) AS last_played_at FROM tm GROUP BY 1, 2",
                   ["plays", "ms"], extremes)},
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
