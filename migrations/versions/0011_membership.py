"""Membership: founding-member numbers, the waitlist, rate limits kept in Postgres, and
headers on outgoing mail (List-Unsubscribe).

Everyone already here was admitted: they become founding members, numbered in the order
they joined.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE member_numbers")
    op.add_column('users', sa.Column('member_number', sa.Integer(), nullable=True))
    op.create_unique_constraint(op.f('uq_users_member_number'), 'users', ['member_number'])
    op.execute("UPDATE users SET member_number = n, founding_member = true FROM "
               "(SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM users) o WHERE o.id = users.id")
    op.execute("SELECT setval('member_numbers', coalesce((SELECT max(member_number) FROM users), 0) + 1, false)")
    op.create_table('waitlist',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('invited_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('invite_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_waitlist'))
    )
    op.create_index('uq_waitlist_email', 'waitlist', [sa.text('lower(email)')], unique=True)
    op.create_index('ix_waitlist_queue', 'waitlist', ['confirmed_at', 'id'], unique=False,
                    postgresql_where=sa.text('invited_at IS NULL AND confirmed_at IS NOT NULL'))
    op.create_table('rate_limits',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limits'))
    )
    op.add_column('outbox', sa.Column('headers', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column('outbox', 'headers')
    op.drop_table('rate_limits')
    op.drop_index('ix_waitlist_queue', table_name='waitlist',
                  postgresql_where=sa.text('invited_at IS NULL AND confirmed_at IS NOT NULL'))
    op.drop_index('uq_waitlist_email', table_name='waitlist')
    op.drop_table('waitlist')
    op.drop_constraint(op.f('uq_users_member_number'), 'users', type_='unique')
    op.drop_column('users', 'member_number')
    op.execute("DROP SEQUENCE member_numbers")
