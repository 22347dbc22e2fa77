"""The waitlist: people who want a seat when there is none.

    join      an address is added (once: joining again changes nothing) and sent a
              confirmation link; the page says the same whatever the address's state,
              so it reveals nothing about who is listed
    confirm   the link: the person is in line, by the time they confirmed
    invite    a seat is free (the periodic job), or an admin chose them: an invitation
              link valid INVITE_DAYS, that lets its holder through the cap once
    leave     every waitlist mail links to a page that removes the address

Links are signed (app/signed.py) and name the entry; an invitation's link also names the
moment it was sent, so a later invitation makes an earlier one void.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ..email.address import normalise
from ..email.outbox import external_url, queue_email
from ..models import WaitlistEntry
from ..signed import LinkError, sign, verify
from ..time import datetime_to_ms
from . import seats

CONFIRM, INVITE, LEAVE = "waitlist-confirm", "waitlist-invite", "waitlist-leave"
CONFIRM_VALID = timedelta(days=2)
LEAVE_VALID = timedelta(days=3650)  # a leave link works as long as the entry exists


class InviteUnusable(Exception):
    """An invitation link that was used already or has expired; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def join(session: Session, raw_email: str | None, *, secret: str, now: datetime) -> tuple[WaitlistEntry, int | None]:
    """Add the address (AddressError if it is not one) unless it is there; mail a
    confirmation unless it is confirmed. Returns the entry and the mail's id, if one."""
    entry = _listed(session, raw_email, now=now)
    mail = None
    if entry.confirmed_at is None:
        token = sign(secret, CONFIRM, {"w": entry.id}, now + CONFIRM_VALID)
        mail = queue_email(session, key=f"{CONFIRM}:{entry.id}:{datetime_to_ms(now)}", user_id=None, to=entry.email,
                    subject="Confirm your place on the Audiospective waitlist", template="waitlist_confirm", now=now,
                    link=external_url("membership.confirm", t=token), valid_hours=int(CONFIRM_VALID.total_seconds()
                                                                                      // 3600),
                    unsubscribe=leave_link(entry, secret=secret, now=now))
    return entry, mail


def add_confirmed(session: Session, raw_email: str | None, *, now: datetime) -> WaitlistEntry:
    """An address an admin vouches for: listed and confirmed without a confirmation mail."""
    entry = _listed(session, raw_email, now=now)
    entry.confirmed_at = entry.confirmed_at or now
    return entry


def _listed(session: Session, raw_email: str | None, *, now: datetime) -> WaitlistEntry:
    """The entry for this address, added if it is not there (AddressError if it is not
    an address). ON CONFLICT: two sign-ups of one address at once make one entry."""
    address = normalise(raw_email)
    session.execute(insert(WaitlistEntry).values(email=address, created_at=now).on_conflict_do_nothing(
        index_elements=[sa.text("lower(email)")]))
    return session.scalar(sa.select(WaitlistEntry).where(sa.func.lower(WaitlistEntry.email) == address.lower()))


def leave_link(entry: WaitlistEntry, *, secret: str, now: datetime) -> str:
    return external_url("membership.leave", t=sign(secret, LEAVE, {"w": entry.id}, now + LEAVE_VALID))


def confirm(session: Session, token: str, *, secret: str, now: datetime) -> WaitlistEntry:
    """The entry the link confirms (LinkError if the link is damaged, expired, or its
    entry is gone)."""
    entry = _entry(session, verify(secret, CONFIRM, token, now))
    if entry.confirmed_at is None:
        entry.confirmed_at = now
    return entry


def position(session: Session, entry: WaitlistEntry) -> int | None:
    """Place in line (1 = next to be invited), None if not waiting (unconfirmed, invited)."""
    if entry.confirmed_at is None or entry.invited_at is not None:
        return None
    return session.scalar(sa.select(sa.func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.confirmed_at.is_not(None), WaitlistEntry.invited_at.is_(None),
        sa.tuple_(WaitlistEntry.confirmed_at, WaitlistEntry.id) <= (entry.confirmed_at, entry.id)))


def waiting(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.confirmed_at.is_not(None), WaitlistEntry.invited_at.is_(None)))


def entry_for_leave(session: Session, token: str, *, secret: str, now: datetime) -> WaitlistEntry:
    return _entry(session, verify(secret, LEAVE, token, now))


def remove(session: Session, entry_id: int) -> bool:
    return bool(session.execute(sa.delete(WaitlistEntry).where(WaitlistEntry.id == entry_id)).rowcount)


def invite(session: Session, entry: WaitlistEntry, *, secret: str, now: datetime, days: float) -> None:
    """Send `entry` an invitation (again, if it had one: the earlier link stops working)."""
    entry.invited_at, entry.invite_expires_at = now, now + timedelta(days=days)
    token = sign(secret, INVITE, {"w": entry.id, "i": datetime_to_ms(now)}, entry.invite_expires_at)
    queue_email(session, key=f"{INVITE}:{entry.id}:{datetime_to_ms(now)}", user_id=None, to=entry.email,
                subject="Your seat at Audiospective is ready", template="waitlist_invite", now=now,
                link=external_url("membership.accept_invite", t=token), expires=entry.invite_expires_at,
                unsubscribe=leave_link(entry, secret=secret, now=now))


def invite_next(session: Session, *, default_cap: int, secret: str, now: datetime, days: float) -> int:
    """Invite the next confirmed people, one per seat that is free and not already held
    open by an unexpired invitation. Returns how many were invited."""
    session.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": seats.LOCK})
    free = seats.seats_left(session, default_cap, now)
    if free <= 0:
        return 0
    nexts = session.scalars(sa.select(WaitlistEntry).where(
        WaitlistEntry.confirmed_at.is_not(None), WaitlistEntry.invited_at.is_(None))
        .order_by(WaitlistEntry.confirmed_at, WaitlistEntry.id).limit(free).with_for_update(skip_locked=True)).all()
    for entry in nexts:
        invite(session, entry, secret=secret, now=now, days=days)
    return len(nexts)


def check_invite(session: Session, token: str, *, secret: str, now: datetime) -> WaitlistEntry:
    """The entry an invitation link is for, if it can still be used. LinkError for a
    damaged link, InviteUnusable if used, expired or replaced."""
    try:
        payload = verify(secret, INVITE, token, now)
    except LinkError as exc:
        if exc.expired:
            raise InviteUnusable("expired") from None
        raise
    entry = _entry(session, payload)
    if entry.admitted_at is not None:
        raise InviteUnusable("used")
    if entry.invited_at is None or datetime_to_ms(entry.invited_at) != payload.get("i"):
        raise InviteUnusable("replaced")
    if entry.invite_expires_at is None or entry.invite_expires_at <= now:
        raise InviteUnusable("expired")
    return entry


def entries(session: Session, limit: int = 500) -> list[WaitlistEntry]:
    """For operators: everyone listed, in line order (waiting first, then invited, then
    unconfirmed)."""
    return list(session.scalars(sa.select(WaitlistEntry).order_by(
        WaitlistEntry.admitted_at.is_not(None), WaitlistEntry.confirmed_at.is_(None),
        WaitlistEntry.invited_at.is_not(None), WaitlistEntry.confirmed_at, WaitlistEntry.id).limit(limit)))


def _entry(session: Session, payload: dict) -> WaitlistEntry:
    entry_id = payload.get("w")
    entry = session.get(WaitlistEntry, entry_id) if isinstance(entry_id, int) else None
    if entry is None:
        raise LinkError(expired=True)  # removed since: as good as expired
    return entry

