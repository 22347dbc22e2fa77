"""Making, opening and ending share snapshots.

A share is made once: the chosen panels are computed for the chosen period and stored as
JSON (stats/panels.py `freeze`), so the public page shows what the owner saw that day and
never runs a query against their archive. Its URL carries 192 random bits; that token is
the only way in, and it leads to that snapshot alone.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..models import Share, User
from ..stats import panels as stats_panels
from ..stats.periods import Period, spanning
from ..time import zone

SNAPSHOT_VERSION = 1
MAX_LIVE_SHARES = 50  # per person: each holds a snapshot; old ones can be deleted
EXPIRY_DAYS = {"never": None, "1": 1, "7": 7, "30": 30, "365": 365}
DEFAULT_PANELS = ("totals", "top-artists", "top-tracks", "clock")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


class ShareError(ValueError):
    """A share that cannot be made as asked; the message says why."""


class ShareGone(LookupError):
    """The share existed but was revoked or has expired."""


def create_share(session: Session, user: User, period: Period, panels: list[str], *, rank_by: str, show_name: bool,
                 expiry: str, now: datetime) -> Share:
    chosen = [name for name in stats_panels.PANELS if name in set(panels)]
    if not chosen:
        raise ShareError("Choose at least one panel to share.")
    if len(set(panels)) != len(chosen):
        raise ShareError("One of the chosen panels does not exist.")
    if rank_by not in ("plays", "minutes"):
        raise ShareError("Rank by plays or by minutes.")
    if expiry not in EXPIRY_DAYS:
        raise ShareError("Choose when the link stops working.")
    live = session.scalar(sa.select(sa.func.count()).select_from(Share).where(
        Share.user_id == user.id, Share.revoked_at.is_(None),
        sa.or_(Share.expires_at.is_(None), Share.expires_at > now)))
    if live >= MAX_LIVE_SHARES:
        raise ShareError(f"You have {live} working share links, the most one person can have. Revoke or delete "
                         "some first.")
    conn = session.connection()
    snapshot = {"version": SNAPSHOT_VERSION, "taken_at": now.isoformat(), "panels": {
        name: stats_panels.freeze(name, stats_panels.compute(conn, user.id, name, period, rank_by))
        for name in chosen}}
    days = EXPIRY_DAYS[expiry]
    share = Share(user_id=user.id, token=secrets.token_urlsafe(24), first_day=period.first_day,
                  last_day=period.last_day, timezone=period.tz.key, panels=chosen, rank_by=rank_by,
                  display_name=user.display_name if show_name else None, snapshot=snapshot, created_at=now,
                  expires_at=now + timedelta(days=days) if days else None)
    session.add(share)
    session.flush()
    return share


def period_of(share: Share) -> Period:
    """The shared period, as fixed dates (a share made "last 30 days" keeps those 30 days)."""
    return spanning(share.first_day, share.last_day, zone(share.timezone))


def panels_of(share: Share) -> list[tuple[str, object]]:
    """(panel name, its value) in the order the dashboard shows them."""
    frozen = share.snapshot["panels"]
    return [(name, stats_panels.thaw(name, frozen[name])) for name in share.panels if name in frozen]


def open_share(session: Session, token: str, *, now: datetime) -> Share:
    """The share behind a public URL, counting this view. LookupError if there is none;
    ShareGone if it was revoked or has expired."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise LookupError(token)
    counted = session.execute(
        sa.update(Share).where(Share.token == token, Share.revoked_at.is_(None),
                               sa.or_(Share.expires_at.is_(None), Share.expires_at > now))
        .values(views=Share.views + 1, last_viewed_at=now).returning(Share.id)).scalar()
    share = session.scalar(sa.select(Share).where(Share.token == token))
    if share is None:
        raise LookupError(token)
    if counted is None:
        raise ShareGone(token)
    return share


def list_shares(session: Session, user_id: int) -> list[Share]:
    return list(session.scalars(sa.select(Share).where(Share.user_id == user_id).order_by(Share.created_at.desc(),
                                                                                          Share.id.desc())))


def _own(session: Session, user_id: int, share_id: int) -> Share | None:
    return session.scalar(sa.select(Share).where(Share.id == share_id, Share.user_id == user_id))


def revoke_share(session: Session, user_id: int, share_id: int, *, now: datetime) -> bool:
    share = _own(session, user_id, share_id)
    if share is None:
        return False
    share.revoked_at = share.revoked_at or now
    return True


def delete_share(session: Session, user_id: int, share_id: int) -> bool:
    share = _own(session, user_id, share_id)
    if share is None:
        return False
    session.delete(share)
    return True


def is_live(share: Share, now: datetime) -> bool:
    return share.revoked_at is None and (share.expires_at is None or share.expires_at > now)
