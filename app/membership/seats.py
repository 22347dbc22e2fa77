"""Seats: how many people may have an account (FOUNDING_MEMBER_CAP, or what an admin set
since), who holds one (users.member_number, which is also their founding-member number),
and the one place a new account is let in (`admit`).

Admission is atomic: it takes a transaction-level advisory lock, counts the members and
decides, and the caller creates the account in the same transaction, so however many
sign-ups race for the last seats, the members never outnumber the seats. Existing members
never wait on it. An invitation from the waitlist lets its holder in once beyond the cap.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ..models import AppFlag, User, WaitlistEntry

LOCK = zlib.crc32(b"audiospective.seats") & 0x7FFFFFFF
CAP_FLAG = "seat_cap"


class Full(Exception):
    """No seat for a new account, and no invitation that opens one."""


def cap(session: Session, default: int) -> int:
    """The seats there are: an admin's figure if one was set, else FOUNDING_MEMBER_CAP."""
    flag = session.get(AppFlag, CAP_FLAG)
    value = (flag.value or {}).get("cap") if flag else None
    return value if isinstance(value, int) else default


def set_cap(session: Session, seats: int) -> None:
    session.execute(insert(AppFlag).values(key=CAP_FLAG, value={"cap": seats}).on_conflict_do_update(
        index_elements=[AppFlag.key], set_={"value": {"cap": seats}, "updated_at": sa.func.now()}))


def members(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(User).where(User.member_number.is_not(None)))


def held_open(session: Session, now: datetime) -> int:
    """Seats kept for people invited from the waitlist whose invitation still runs."""
    return session.scalar(sa.select(sa.func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.invited_at.is_not(None), WaitlistEntry.admitted_at.is_(None),
        WaitlistEntry.invite_expires_at > now))


def seats_left(session: Session, default_cap: int, now: datetime) -> int:
    """Seats anyone may take now (not those held open for an invitation)."""
    return max(0, cap(session, default_cap) - members(session) - held_open(session, now))


def is_member(session: Session, profile: dict[str, Any]) -> bool:
    """Whether this Spotify profile already has an account (then nothing is checked)."""
    ids = {profile.get("id"), profile.get("account_id")} - {None, ""}
    return session.scalar(sa.select(sa.func.count()).select_from(User).where(
        sa.or_(User.spotify_id.in_(ids), User.spotify_user_id.in_(ids)))) > 0


def admit(session: Session, profile: dict[str, Any], *, default_cap: int, invite_id: int | None,
          now: datetime) -> str:
    """Before a sign-in creates an account, in its transaction: "member" (has one),
    "seat" (a free seat), "invited" (an invitation, now used). Full otherwise. The lock is
    held until the caller commits, so the account it creates is counted by the next one."""
    if is_member(session, profile):
        return "member"
    session.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": LOCK})
    if invite_id is not None:  # the seat held open for this invitation
        used = session.execute(sa.update(WaitlistEntry).where(
            WaitlistEntry.id == invite_id, WaitlistEntry.invited_at.is_not(None), WaitlistEntry.admitted_at.is_(None),
            WaitlistEntry.invite_expires_at > now).values(admitted_at=now)).rowcount
        if used:
            return "invited"
    if seats_left(session, default_cap, now) > 0:
        return "seat"
    raise Full()


def give_seat(session: Session, user: User) -> None:
    """Number a new member (their founding-member number). Called for every account
    created, by sign-in after `admit`, or by an operator."""
    if user.member_number is None:
        user.member_number = session.scalar(sa.text("SELECT nextval('member_numbers')"))
        user.founding_member = True
