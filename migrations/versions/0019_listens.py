"""Listens from other players (the ListenBrainz-compatible API's submit-listens): the
inbox the API writes and a worker merges, the clients that sent plays, what is playing
now, how wide matching must look per user, and tracks found by ISRC.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('play_clients',
    sa.Column('id', sa.SmallInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_play_clients')),
    sa.UniqueConstraint('name', name=op.f('uq_play_clients_name'))
    )
    # Nullable without a default: no rewrite of the plays table.
    op.add_column('plays', sa.Column('client_id', sa.SmallInteger(), nullable=True))
    op.create_table('listen_inbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.SmallInteger(), nullable=True),
    sa.Column('listened_at', sa.BigInteger(), nullable=False),
    sa.Column('track_name', sa.Text(), nullable=False),
    sa.Column('artist_name', sa.Text(), nullable=False),
    sa.Column('release_name', sa.Text(), nullable=True),
    sa.Column('spotify_id', sa.Text(), nullable=True),
    sa.Column('isrc', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_listen_inbox_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_listen_inbox'))
    )
    op.create_index('ix_listen_inbox_user_id_id', 'listen_inbox', ['user_id', 'id'], unique=False)
    op.create_table('listen_lengths',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('longest_ms', sa.Integer(), nullable=True),
    sa.Column('unknown_length', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_listen_lengths_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_listen_lengths'))
    )
    op.create_table('playing_now',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('track_name', sa.Text(), nullable=False),
    sa.Column('artist_name', sa.Text(), nullable=False),
    sa.Column('release_name', sa.Text(), nullable=True),
    sa.Column('client', sa.Text(), nullable=True),
    sa.Column('spotify_id', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_playing_now_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_playing_now'))
    )
    op.create_index(op.f('ix_tracks_isrc'), 'tracks', ['isrc'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_tracks_isrc'), table_name='tracks')
    op.drop_table('playing_now')
    op.drop_table('listen_lengths')
    op.drop_index('ix_listen_inbox_user_id_id', table_name='listen_inbox')
    op.drop_table('listen_inbox')
    op.execute("DELETE FROM plays WHERE source = 4")  # listens: an older schema cannot say where they came from
    op.drop_column('plays', 'client_id')
    op.drop_table('play_clients')
