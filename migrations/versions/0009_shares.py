"""Share snapshots: chosen panels of a period, frozen, at an unguessable URL (app/shares).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shares',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('first_day', sa.Date(), nullable=True),
    sa.Column('last_day', sa.Date(), nullable=False),
    sa.Column('timezone', sa.Text(), nullable=False),
    sa.Column('panels', postgresql.ARRAY(sa.Text()), nullable=False),
    sa.Column('rank_by', sa.Text(), nullable=False),
    sa.Column('display_name', sa.Text(), nullable=True),
    sa.Column('snapshot', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('views', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_viewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("rank_by IN ('plays', 'minutes')", name=op.f('ck_shares_rank_by')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_shares_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shares')),
    sa.UniqueConstraint('token', name=op.f('uq_shares_token'))
    )
    op.create_index('ix_shares_user_id_created_at', 'shares', ['user_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_shares_user_id_created_at', table_name='shares')
    op.drop_table('shares')
