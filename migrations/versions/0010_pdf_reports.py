"""PDF reports are written, stored and expire as exports do: one more export format.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint(op.f('ck_exports_format'), 'exports', type_='check')
    op.create_check_constraint(op.f('ck_exports_format'), 'exports', "format IN ('json', 'csv', 'spotify', 'pdf')")


def downgrade() -> None:
    op.execute("DELETE FROM exports WHERE format = 'pdf'")
    op.drop_constraint(op.f('ck_exports_format'), 'exports', type_='check')
    op.create_check_constraint(op.f('ck_exports_format'), 'exports', "format IN ('json', 'csv', 'spotify')")
