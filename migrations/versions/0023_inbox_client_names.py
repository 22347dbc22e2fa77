"""The listen inbox names a listen's player instead of numbering it.

A submitted listen's player was turned into a `play_clients` id by the request itself:
one more statement (and round trip) on the API's busiest path. The inbox now keeps the
name, and the merge job resolves the names of a whole batch at once, as imports do.
Waiting listens keep their player.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("listen_inbox", sa.Column("client_name", sa.Text(), nullable=True))
    op.execute("UPDATE listen_inbox i SET client_name = c.name FROM play_clients c WHERE c.id = i.client_id")
    op.drop_column("listen_inbox", "client_id")


def downgrade() -> None:
    op.add_column("listen_inbox", sa.Column("client_id", sa.SmallInteger(), nullable=True))
    op.execute("INSERT INTO play_clients (name) SELECT DISTINCT client_name FROM listen_inbox "
               "WHERE client_name IS NOT NULL ON CONFLICT (name) DO NOTHING")
    op.execute("UPDATE listen_inbox i SET client_id = c.id FROM play_clients c WHERE c.name = i.client_name")
    op.drop_column("listen_inbox", "client_name")
