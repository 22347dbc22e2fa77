"""Exports in ListenBrainz's format (its user export's listens/<year>/<month>.jsonl).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint(op.f('ck_exports_format'), 'exports', type_='check')
    op.create_check_constraint(op.f('ck_exports_format'), 'exports', "format IN ('json', 'csv', 'spotify', 'pdf', 'listenbrainz')")


def downgrade() -> None:
    op.execute("DELETE FROM exports WHERE format = 'listenbrainz'")
    op.drop_constraint(op.f('ck_exports_format'), 'exports', type_='check')
    op.create_check_constraint(op.f('ck_exports_format'), 'exports', "format IN ('json', 'csv', 'spotify', 'pdf')")
