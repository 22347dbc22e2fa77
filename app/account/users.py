"""Users: looked up the way operators refer to them, created from Spotify's profile at
sign-in or ahead of it, and listed for operators."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ..membership.seats import give_seat
from ..models import ArchiveState, Gap, Plan, Role, TrackTotal, User


class UserExists(ValueError):
    """An operator tried to add a user that is already there."""


def find_user(session: Session, ref: str) -> User | None:
    """By Spotify account id (or legacy id), else by Audiospective's numeric id."""
    user = session.scalar(sa.select(User).where(sa.or_(User.spotify_id == ref, User.spotify_user_id == ref)))
    if user is None and ref.isascii() and ref.isdigit() and len(ref) < 10:  # ids are int4
        user = session.get(User, int(ref))
    return user


def identity_of(profile: dict[str, Any]) -> str:
    """Spotify asks apps to link accounts by `account_id` (2026); older profiles lack it."""
    account_id = profile.get("account_id")
    return account_id if isinstance(account_id, str) and account_id else profile["id"]


def user_from_profile(session: Session, profile: dict[str, Any], *, now: datetime) -> User:
    """Create or update the user for a Spotify profile (`/v1/me`) that has just signed in.

    A user an operator created ahead of time (keyed by either id) becomes this user."""
    key = identity_of(profile)
    user = session.scalar(sa.select(User).where(User.spotify_id == key))
    if user is None and key != profile["id"]:
        user = session.scalar(sa.select(User).where(User.spotify_id == profile["id"]))
    display_name = profile.get("display_name") or profile["id"]
    if user is None:
        # ON CONFLICT: two tabs finishing sign-in at once must not fail on the unique key.
        session.execute(
            insert(User).values(spotify_id=key, display_name=display_name).on_conflict_do_nothing(
                index_elements=[User.spotify_id]
            )
        )
        user = session.scalar(sa.select(User).where(User.spotify_id == key))
    user.spotify_id = key
    user.spotify_user_id = profile["id"]
    user.display_name = display_name
    user.avatar_url = _widest_image(profile.get("images"))
    user.authorized_at = now
    user.last_login_at = now
    session.flush()
    return user


def add_user(session: Session, spotify_id: str, display_name: str) -> User:
    """A user ahead of their first sign-in (to import their history first, say)."""
    if find_user(session, spotify_id) is not None:
        raise UserExists(f"a user with Spotify id {spotify_id!r} already exists")
    user = User(spotify_id=spotify_id, display_name=display_name)
    session.add(user)
    session.flush()
    give_seat(session, user)  # an operator's choice: it takes a seat, beyond the cap if need be
    return user


@dataclass(frozen=True)
class UserSummary:
    id: int
    spotify_id: str
    display_name: str
    status: str  # the archival status, or "not signed in"
    plays: int
    last_success_at: datetime | None
    plan: str = Plan.free.value
    role: str = Role.member.value
    member_number: int | None = None
    next_poll_at: datetime | None = None
    failures: int = 0
    last_failure_message: str | None = None
    open_gaps: int = 0


def list_users(session: Session) -> list[UserSummary]:
    """Every user, with archive status and size, for operators and admins. Plays are read
    from the rollups (exact, and cheap even for millions of plays)."""
    plays = sa.select(sa.func.coalesce(sa.func.sum(TrackTotal.plays), 0)).where(
        TrackTotal.user_id == User.id).scalar_subquery()
    gaps = sa.select(sa.func.count()).select_from(Gap).where(Gap.user_id == User.id,
                                                            Gap.filled_at.is_(None)).scalar_subquery()
    rows = session.execute(
        sa.select(User.id, User.spotify_id, User.display_name, User.status, User.authorized_at, plays,
                  ArchiveState.last_success_at, User.plan, User.role, User.member_number, ArchiveState.next_poll_at,
                  ArchiveState.consecutive_failures, ArchiveState.last_failure_message, gaps)
        .outerjoin(ArchiveState, ArchiveState.user_id == User.id).order_by(User.id)
    ).all()
    return [UserSummary(r[0], r[1], r[2], r[3] if r[4] else "not signed in", int(r[5]), r[6], r[7], r[8], r[9],
                        r[10], r[11] or 0, r[12], r[13]) for r in rows]


def set_plan(user: User, plan: str) -> None:
    if plan not in {p.value for p in Plan}:
        raise ValueError(f"unknown plan {plan!r}: free or pro")
    user.plan = plan


def set_role(user: User, role: str) -> None:
    if role not in {r.value for r in Role}:
        raise ValueError(f"unknown role {role!r}: member or admin")
    user.role = role


def _widest_image(images: Any) -> str | None:
    if not isinstance(images, list):
        return None
    candidates = [i for i in images if isinstance(i, dict) and isinstance(i.get("url"), str)]
    if not candidates:
        return None
    return max(candidates, key=lambda i: i.get("width") or 0)["url"]
