"""Name-only tracks without an artist are told apart by their album.

Apple Music's play activity names a song and its album but no artist. Such songs became
name-only tracks keyed by (name, artist) with an empty artist, so every "Intro" (or
"Home", "Interlude") of every album was one track. Those tracks are now keyed by their
name and album; tracks with an artist keep their key.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX uq_tracks_name_only")
    op.execute("CREATE UNIQUE INDEX uq_tracks_name_only ON tracks (lower(name), lower(artist_name)) "
               "WHERE spotify_id IS NULL AND artist_name <> ''")
    op.execute("CREATE UNIQUE INDEX uq_tracks_name_only_no_artist ON tracks (lower(name), coalesce(album_id, 0)) "
               "WHERE spotify_id IS NULL AND artist_name = ''")


def downgrade() -> None:
    shared = op.get_bind().exec_driver_sql(
        "SELECT count(*) FROM (SELECT 1 FROM tracks WHERE spotify_id IS NULL AND artist_name = '' "
        "GROUP BY lower(name) HAVING count(*) > 1) s").scalar()
    if shared:
        raise RuntimeError(f"{shared} songs without an artist are on several albums as separate tracks; the "
                           "previous schema has one track for each such name. Not downgrading.")
    op.execute("DROP INDEX uq_tracks_name_only_no_artist")
    op.execute("DROP INDEX uq_tracks_name_only")
    op.execute("CREATE UNIQUE INDEX uq_tracks_name_only ON tracks (lower(name), lower(artist_name)) "
               "WHERE spotify_id IS NULL")
