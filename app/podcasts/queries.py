"""What the Podcasts panel shows: time spent on podcasts and audiobooks in a period, and
the shows ranked by it. Read from `episode_plays` directly: a person's episode plays are
thousands, not millions, and its primary key serves the period's range."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class ShowTime:
    name: str
    kind: str  # "podcast" or "audiobook"
    ms: int
    plays: int
    episodes: int


@dataclass(frozen=True)
class Podcasts:
    ms: int = 0
    plays: int = 0
    episodes: int = 0
    shows: list[ShowTime] = field(default_factory=list)
    ever: bool = False  # whether the user has any episode plays at all (the empty state differs)


def listening(conn: Connection, uid: int, start: datetime | None, end: datetime) -> tuple[int, int]:
    """Episode plays and milliseconds in the period (for Totals, when asked to count them)."""
    plays, ms = conn.execute(sa.text("""
        SELECT count(*), coalesce(sum(ms_played), 0) FROM episode_plays
         WHERE user_id = :uid AND played_at < :end AND (CAST(:start AS timestamptz) IS NULL OR played_at >= :start)
    """), {"uid": uid, "start": start, "end": end}).one()
    return int(plays), int(ms)


def podcasts(conn: Connection, uid: int, start: datetime | None, end: datetime, limit: int = 10) -> Podcasts:
    rows = conn.execute(sa.text("""
        SELECT s.name, s.kind, sum(p.ms_played)::bigint AS ms, count(*) AS plays, count(DISTINCT p.episode_id) AS episodes
          FROM episode_plays p JOIN episodes e ON e.id = p.episode_id JOIN shows s ON s.id = e.show_id
         WHERE p.user_id = :uid AND p.played_at < :end AND (CAST(:start AS timestamptz) IS NULL OR p.played_at >= :start)
         GROUP BY s.id, s.name, s.kind ORDER BY 3 DESC, 1
    """), {"uid": uid, "start": start, "end": end}).all()
    if not rows:
        ever = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM episode_plays WHERE user_id = :uid)"),
                            {"uid": uid}).scalar()
        return Podcasts(ever=bool(ever))
    episodes = conn.execute(sa.text("""
        SELECT count(DISTINCT episode_id) FROM episode_plays
         WHERE user_id = :uid AND played_at < :end AND (CAST(:start AS timestamptz) IS NULL OR played_at >= :start)
    """), {"uid": uid, "start": start, "end": end}).scalar()
    return Podcasts(ms=sum(r.ms for r in rows), plays=sum(r.plays for r in rows), episodes=int(episodes),
                    shows=[ShowTime(r.name, r.kind, int(r.ms), int(r.plays), int(r.episodes)) for r in rows[:limit]],
                    ever=True)
