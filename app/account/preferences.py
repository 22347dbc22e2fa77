"""A person's settings: the time zone every page shows times in, how top lists rank, and
whether podcasts and audiobooks count in Totals.

`users.timezone` is a column (the listening rollups are kept in it); everything else is
in `users.preferences` (JSON): `rank_by`, `count_podcasts`, and `timezone_confirmed` once
the person or their browser has chosen a zone (the browser's is taken once, on the first
visit).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..models import User
from ..time import is_zone, zone_names

RANK_BY = ("plays", "minutes")
# Episodes of podcasts and audiobooks are not music: only the Podcasts panel shows them,
# unless the person asks for them in Totals' plays and listening time too.
COUNT_PODCASTS = "count_podcasts"


def counts_podcasts(user: User) -> bool:
    return (user.preferences or {}).get(COUNT_PODCASTS) is True


def counts_podcasts_of(conn: sa.Connection, user_id: int) -> bool:
    """The same, for code that has the user's id, not the user (a share, a PDF report)."""
    return bool(conn.execute(sa.text("SELECT coalesce(preferences @> CAST(:on AS jsonb), false) FROM users WHERE id = :uid"),
                             {"on": f'{{"{COUNT_PODCASTS}": true}}', "uid": user_id}).scalar())


def rank_by(user: User, requested: str | None = None) -> str:
    """How top lists rank: what the request asks for, else the saved preference."""
    wanted = requested or (user.preferences or {}).get("rank_by")
    return wanted if wanted in RANK_BY else RANK_BY[0]


def selectable_zones() -> list[str]:
    """Zones a person would pick from a list (Region/City, not the legacy aliases)."""
    return sorted(z for z in zone_names() if "/" in z)


def save_preferences(session: Session, user_id: int, *, timezone: str, **preferences) -> bool:
    """Save a time zone and other preferences; False, with nothing changed, for a zone
    Python or Postgres does not know. A new zone rebuilds the user's listening hours in
    the same statement (a trigger, migration 0004): that rebuild has the last word."""
    if not is_zone(timezone):
        return False
    try:
        with session.begin_nested():
            user = session.get(User, user_id)
            user.timezone = timezone
            user.preferences = {**(user.preferences or {}), **preferences}
            session.flush()
    except sa.exc.DataError:  # "time zone ... not recognized", raised by the rebuild
        session.expire_all()
        return False
    return True
