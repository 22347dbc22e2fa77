"""Initial schema: users, tokens, archive state, catalogue, plays, gaps, and the job queue.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

procrastinate's tables come from the SQL its 3.10.0 release ships, vendored under
migrations/sql so that this revision creates the same schema whatever version is
installed later; upgrading procrastinate means a new revision applying its migration files.
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

PROCRASTINATE_SCHEMA = Path(__file__).resolve().parent.parent / "sql" / "procrastinate-3.10.0.sql"

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Raw psycopg: the file holds many statements and $$-quoted function bodies, which
    # SQLAlchemy's text() would try to parse for bind parameters.
    op.get_bind().connection.driver_connection.execute(PROCRASTINATE_SCHEMA.read_text())

    op.create_table('albums',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('spotify_id', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('album_type', sa.Text(), nullable=True),
    sa.Column('release_date', sa.Text(), nullable=True),
    sa.Column('release_date_precision', sa.Text(), nullable=True),
    sa.Column('total_tracks', sa.Integer(), nullable=True),
    sa.Column('image_url', sa.Text(), nullable=True),
    sa.Column('enriched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_albums')),
    sa.UniqueConstraint('spotify_id', name=op.f('uq_albums_spotify_id'))
    )
    op.create_table('artists',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('spotify_id', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('image_url', sa.Text(), nullable=True),
    sa.Column('genres', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('enriched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artists')),
    sa.UniqueConstraint('spotify_id', name=op.f('uq_artists_spotify_id'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('spotify_id', sa.Text(), nullable=False),
    sa.Column('spotify_user_id', sa.Text(), nullable=True),
    sa.Column('display_name', sa.Text(), nullable=False),
    sa.Column('avatar_url', sa.Text(), nullable=True),
    sa.Column('timezone', sa.Text(), server_default='UTC', nullable=False),
    sa.Column('plan', sa.Text(), server_default='free', nullable=False),
    sa.Column('role', sa.Text(), server_default='member', nullable=False),
    sa.Column('founding_member', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('status', sa.Text(), server_default='active', nullable=False),
    sa.Column('authorized_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_login_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('preferences', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("plan IN ('free', 'pro')", name=op.f('ck_users_plan')),
    sa.CheckConstraint("role IN ('member', 'admin')", name=op.f('ck_users_role')),
    sa.CheckConstraint("status IN ('active', 'reauth_required', 'paused', 'deactivated')", name=op.f('ck_users_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('spotify_id', name=op.f('uq_users_spotify_id'))
    )
    op.create_table('archive_state',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('cursor_played_at', postgresql.TIMESTAMP(timezone=True, precision=3), nullable=True),
    sa.Column('next_poll_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('poll_interval_s', sa.Integer(), nullable=True),
    sa.Column('last_poll_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_failure_kind', sa.Text(), nullable=True),
    sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_failure_message', sa.Text(), nullable=True),
    sa.Column('circuit_open_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('notifications_sent', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_archive_state_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_archive_state'))
    )
    op.create_index('ix_archive_state_next_poll_at', 'archive_state', ['next_poll_at'], unique=False)
    op.create_table('gaps',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('starts_at', postgresql.TIMESTAMP(timezone=True, precision=3), nullable=False),
    sa.Column('ends_at', postgresql.TIMESTAMP(timezone=True, precision=3), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('filled_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_gaps_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gaps'))
    )
    op.create_index('ix_gaps_user_id_starts_at', 'gaps', ['user_id', 'starts_at'], unique=False)
    op.create_table('spotify_tokens',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('access_token_enc', sa.LargeBinary(), nullable=False),
    sa.Column('refresh_token_enc', sa.LargeBinary(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('scope', sa.Text(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_spotify_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_spotify_tokens'))
    )
    op.create_table('tracks',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('spotify_id', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('album_id', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('explicit', sa.Boolean(), nullable=True),
    sa.Column('isrc', sa.Text(), nullable=True),
    sa.Column('enriched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['album_id'], ['albums.id'], name=op.f('fk_tracks_album_id_albums')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tracks')),
    sa.UniqueConstraint('spotify_id', name=op.f('uq_tracks_spotify_id'))
    )
    op.create_index(op.f('ix_tracks_album_id'), 'tracks', ['album_id'], unique=False)
    op.create_table('plays',
    sa.Column('played_at', postgresql.TIMESTAMP(timezone=True, precision=3), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('ms_played', sa.Integer(), nullable=True),
    sa.Column('source', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['track_id'], ['tracks.id'], name=op.f('fk_plays_track_id_tracks')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_plays_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'played_at', 'track_id', name='pk_plays')
    )
    op.create_table('track_artists',
    sa.Column('track_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('artist_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['artist_id'], ['artists.id'], name=op.f('fk_track_artists_artist_id_artists')),
    sa.ForeignKeyConstraint(['track_id'], ['tracks.id'], name=op.f('fk_track_artists_track_id_tracks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('track_id', 'position', name=op.f('pk_track_artists'))
    )
    op.create_index(op.f('ix_track_artists_artist_id'), 'track_artists', ['artist_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_track_artists_artist_id'), table_name='track_artists')
    op.drop_table('track_artists')
    op.drop_table('plays')
    op.drop_index(op.f('ix_tracks_album_id'), table_name='tracks')
    op.drop_table('tracks')
    op.drop_table('spotify_tokens')
    op.drop_index('ix_gaps_user_id_starts_at', table_name='gaps')
    op.drop_table('gaps')
    op.drop_index('ix_archive_state_next_poll_at', table_name='archive_state')
    op.drop_table('archive_state')
    op.drop_table('users')
    op.drop_table('artists')
    op.drop_table('albums')
    op.execute("""
        DO $$
        DECLARE obj record;
        BEGIN
          FOR obj IN SELECT oid::regprocedure AS sig FROM pg_proc WHERE proname LIKE 'procrastinate%' LOOP
            EXECUTE 'DROP FUNCTION IF EXISTS ' || obj.sig || ' CASCADE';
          END LOOP;
          FOR obj IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate%' LOOP
            EXECUTE 'DROP TABLE IF EXISTS ' || quote_ident(obj.tablename) || ' CASCADE';
          END LOOP;
          FOR obj IN SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                     WHERE n.nspname = current_schema() AND typname LIKE 'procrastinate%' AND typtype IN ('e', 'c') LOOP
            EXECUTE 'DROP TYPE IF EXISTS ' || quote_ident(obj.typname) || ' CASCADE';
          END LOOP;
        END $$;
    """)
