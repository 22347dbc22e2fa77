"""Imports: lifecycle rows and uploaded bytes (chunked, in Postgres), name-only catalogue
rows for plays known by names, and what enrichment learns about tracks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imports',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Text(), server_default='queued', nullable=False),
    sa.Column('stage', sa.Text(), nullable=True),
    sa.Column('rule', sa.Text(), server_default='default', nullable=False),
    sa.Column('files', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('bytes_total', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('bytes_read', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('rows_read', sa.Integer(), server_default='0', nullable=False),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('report', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_imports_status')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_imports_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imports'))
    )
    op.create_index('ix_imports_user_id_created_at', 'imports', ['user_id', 'created_at'], unique=False)
    op.create_table('import_chunks',
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('file_no', sa.SmallInteger(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['imports.id'], name=op.f('fk_import_chunks_import_id_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'file_no', 'seq', name=op.f('pk_import_chunks'))
    )
    op.add_column('albums', sa.Column('artist_name', sa.Text(), nullable=True))
    op.create_index('uq_albums_name_only', 'albums', [sa.literal_column('lower(name)'), sa.literal_column('lower(artist_name)')], unique=True, postgresql_where=sa.text('spotify_id IS NULL'))
    op.create_index('uq_artists_name_only', 'artists', [sa.literal_column('lower(name)')], unique=True, postgresql_where=sa.text('spotify_id IS NULL'))
    op.add_column('tracks', sa.Column('artist_name', sa.Text(), nullable=True))
    op.add_column('tracks', sa.Column('missing_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('uq_tracks_name_only', 'tracks', [sa.literal_column('lower(name)'), sa.literal_column('lower(artist_name)')], unique=True, postgresql_where=sa.text('spotify_id IS NULL'))
    # Tracks stored by polling came with full metadata; only imported ones await enrichment.
    op.execute("UPDATE tracks SET enriched_at = created_at WHERE spotify_id IS NOT NULL AND album_id IS NOT NULL "
               "AND enriched_at IS NULL")


def downgrade() -> None:
    op.drop_index('uq_tracks_name_only', table_name='tracks', postgresql_where=sa.text('spotify_id IS NULL'))
    op.drop_column('tracks', 'missing_at')
    op.drop_column('tracks', 'artist_name')
    op.drop_index('uq_artists_name_only', table_name='artists', postgresql_where=sa.text('spotify_id IS NULL'))
    op.drop_index('uq_albums_name_only', table_name='albums', postgresql_where=sa.text('spotify_id IS NULL'))
    op.drop_column('albums', 'artist_name')
    op.drop_table('import_chunks')
    op.drop_index('ix_imports_user_id_created_at', table_name='imports')
    op.drop_table('imports')
