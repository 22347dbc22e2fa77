"""Counters of Spotify Web API requests and of the 429s that paused them, for /metrics:
kept in the budget row every process already updates for each request, so they cost no
extra statement and are the instance's, not one process's.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_budget", sa.Column("requests_total", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("api_budget", sa.Column("rate_limited_total", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("api_budget", "rate_limited_total")
    op.drop_column("api_budget", "requests_total")
