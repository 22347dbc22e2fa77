"""rollup_sessions looks a play's length up once, not three times.

Plays without `ms_played` (polled plays, scrobbles) take their track's length; 0006 wrote
that lookup into both the play's length and its start, and Postgres evaluated it once for
each and once more for the window's sort: 750,000 index probes for a 250,000-scrobble
Last.fm import (1.4 s of its sessions' 1.4 s). A LATERAL subquery that is not flattened
(OFFSET 0) computes it once per play. Same sessions.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def _faster_sessions():
    """Migration 0006, whose function template this one fills differently."""
    path = Path(__file__).with_name("0006_faster_sessions.py")
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    m0006 = _faster_sessions()
    op.execute(m0006._function("m.ms", "c.played_at - m.ms * interval '1 millisecond'",
                               f"CROSS JOIN LATERAL (SELECT {m0006.NEW_MS} AS ms OFFSET 0) m"))


def downgrade() -> None:
    _faster_sessions().upgrade()
