"""Exports: what a user asked for, its progress, and its file (compressed, chunked, in
Postgres: no shared disk between web and workers).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('exports',
    sa.Column('id', sa.Integer(), sa.Identity(always=False), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('format', sa.Text(), nullable=False),
    sa.Column('period_from', sa.Date(), nullable=True),
    sa.Column('period_to', sa.Date(), nullable=True),
    sa.Column('timezone', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default='queued', nullable=False),
    sa.Column('rows_total', sa.Integer(), nullable=True),
    sa.Column('rows_written', sa.Integer(), server_default='0', nullable=False),
    sa.Column('bytes_stored', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('bytes_file', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("format IN ('json', 'csv', 'spotify')", name=op.f('ck_exports_format')),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_exports_status')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_exports_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports'))
    )
    op.create_index('ix_exports_expires_at', 'exports', ['expires_at'], unique=False)
    op.create_index('ix_exports_user_id_created_at', 'exports', ['user_id', 'created_at'], unique=False)
    op.create_table('export_chunks',
    sa.Column('export_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['export_id'], ['exports.id'], name=op.f('fk_export_chunks_export_id_exports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('export_id', 'seq', name=op.f('pk_export_chunks'))
    )


def downgrade() -> None:
    op.drop_table('export_chunks')
    op.drop_index('ix_exports_user_id_created_at', table_name='exports')
    op.drop_index('ix_exports_expires_at', table_name='exports')
    op.drop_table('exports')
