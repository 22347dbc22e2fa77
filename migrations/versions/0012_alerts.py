"""Alerts: incidents of collection at risk (each a series of at most three mails), and
delivery that favours them, respects an hourly quota and stops on permanent failures.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_incidents',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('mails_sent', sa.Integer(), server_default='0', nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_alert_incidents_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_incidents'))
    )
    op.create_index('uq_alert_incidents_open', 'alert_incidents', ['user_id'], unique=True,
                    postgresql_where=sa.text('resolved_at IS NULL'))
    op.add_column('outbox', sa.Column('priority', sa.SmallInteger(), server_default='5', nullable=False))
    op.add_column('outbox', sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_index('ix_outbox_unsent', table_name='outbox', postgresql_where=sa.text('sent_at IS NULL'))
    op.create_index('ix_outbox_unsent', 'outbox', ['priority', 'next_attempt_at'], unique=False,
                    postgresql_where=sa.text('sent_at IS NULL AND failed_at IS NULL'))
    op.create_index('ix_outbox_sent_at', 'outbox', ['sent_at'], unique=False,
                    postgresql_where=sa.text('sent_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_outbox_sent_at', table_name='outbox', postgresql_where=sa.text('sent_at IS NOT NULL'))
    op.drop_index('ix_outbox_unsent', table_name='outbox',
                  postgresql_where=sa.text('sent_at IS NULL AND failed_at IS NULL'))
    op.create_index('ix_outbox_unsent', 'outbox', ['next_attempt_at'], unique=False,
                    postgresql_where=sa.text('sent_at IS NULL'))
    op.drop_column('outbox', 'failed_at')
    op.drop_column('outbox', 'priority')
    op.drop_index('uq_alert_incidents_open', table_name='alert_incidents',
                  postgresql_where=sa.text('resolved_at IS NULL'))
    op.drop_table('alert_incidents')
