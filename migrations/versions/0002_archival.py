"""Archival: cadence memory and dispatch lease on archive_state, the shared request
budget, app flags, and what enrichment learns about catalogue rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("archive_state", sa.Column("peak_per_hour", sa.Float(), nullable=True))
    op.add_column("archive_state", sa.Column("peak_observed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("archive_state", sa.Column("late_seen_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("archive_state", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("artists", sa.Column("missing_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("albums", sa.Column("label", sa.Text(), nullable=True))
    op.add_column("albums", sa.Column("missing_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "api_budget",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("tokens", sa.Float(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_api_budget_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_budget")),
    )
    # Starts empty but "a day old", so the first request finds the bucket refilled.
    op.execute("INSERT INTO api_budget (id, tokens, updated_at) VALUES (1, 0, now() - interval '1 day')")
    op.create_table(
        "app_flags",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.dialects.postgresql.JSONB(astext_type=sa.Text()),
                  server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_app_flags")),
    )


def downgrade() -> None:
    op.drop_table("app_flags")
    op.drop_table("api_budget")
    op.drop_column("albums", "missing_at")
    op.drop_column("albums", "label")
    op.drop_column("artists", "missing_at")
    for column in ("dispatched_at", "late_seen_at", "peak_observed_at", "peak_per_hour"):
        op.drop_column("archive_state", column)
