"""Podcasts and audiobooks from Spotify's exports: shows, episodes (or chapters) and the
user's listening to them, apart from music plays.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shows',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.CheckConstraint("kind IN ('podcast', 'audiobook')", name=op.f('ck_shows_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shows'))
    )
    op.create_index('uq_shows_kind_name', 'shows', ['kind', sa.text('lower(name)')], unique=True)
    op.create_table('episodes',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('spotify_id', sa.Text(), nullable=True),
    sa.Column('show_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['show_id'], ['shows.id'], name=op.f('fk_episodes_show_id_shows')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_episodes')),
    sa.UniqueConstraint('spotify_id', name=op.f('uq_episodes_spotify_id'))
    )
    op.create_index(op.f('ix_episodes_show_id'), 'episodes', ['show_id'], unique=False)
    op.create_index('uq_episodes_name_only', 'episodes', ['show_id', sa.text('lower(name)')], unique=True,
                    postgresql_where=sa.text('spotify_id IS NULL'))
    op.create_table('episode_plays',
    sa.Column('played_at', postgresql.TIMESTAMP(timezone=True, precision=3), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('episode_id', sa.Integer(), nullable=False),
    sa.Column('ms_played', sa.Integer(), nullable=False),
    sa.Column('source', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['episode_id'], ['episodes.id'], name=op.f('fk_episode_plays_episode_id_episodes')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_episode_plays_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'played_at', 'episode_id', name='pk_episode_plays')
    )
    op.create_index(op.f('ix_episode_plays_episode_id'), 'episode_plays', ['episode_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_episode_plays_episode_id'), table_name='episode_plays')
    op.drop_table('episode_plays')
    op.drop_index('uq_episodes_name_only', table_name='episodes')
    op.drop_index(op.f('ix_episodes_show_id'), table_name='episodes')
    op.drop_table('episodes')
    op.drop_index('uq_shows_kind_name', table_name='shows')
    op.drop_table('shows')
