"""A person's email address: Spotify gives none with the scopes this app asks for, so
people enter one and confirm it through a signed link sent to it. Until confirmed it
receives nothing but that confirmation."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..email.address import AddressError, normalise
from ..email.outbox import external_url, queue_email
from ..models import OutboxMessage, User
from ..signed import LinkError, sign, verify

CONFIRM_PURPOSE = "confirm-email"
CONFIRM_VALID = timedelta(days=2)
# Confirmation mails go to any address a signed-in person types: capped, so an account
# cannot make this instance send mail to strangers in bulk.
CONFIRM_LIMIT, CONFIRM_WINDOW = 5, timedelta(hours=1)
def change_email(session: Session, user: User, raw: str | None, *, secret: str, now: datetime) -> str:
    """Set the (unconfirmed) address and queue the confirmation mail; the address."""
    address = normalise(raw)
    recent = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.user_id == user.id, OutboxMessage.key.startswith(f"{CONFIRM_PURPOSE}:{user.id}:"),
        OutboxMessage.created_at > now - CONFIRM_WINDOW))
    if recent >= CONFIRM_LIMIT:
        raise AddressError(f"{recent} confirmation emails were sent in the last hour, the most there can be. Open the "
                           "latest one, or try again in an hour.")
    user.email, user.email_verified_at = address, None
    token = sign(secret, CONFIRM_PURPOSE, {"u": user.id, "e": address}, now + CONFIRM_VALID)
    queue_email(session, key=f"{CONFIRM_PURPOSE}:{user.id}:{hashlib.sha256(token.encode()).hexdigest()[:24]}",
                user_id=user.id, to=address, subject="Confirm your email address for Audiospective",
                template="confirm_email", now=now, name=user.display_name,
                link=external_url("account.confirm_email_link", t=token), valid_hours=int(CONFIRM_VALID.total_seconds()
                                                                                     // 3600))
    return address


def confirm_email(session: Session, token: str, *, secret: str, now: datetime) -> User:
    """The user whose address the link confirms; LinkError if it is damaged, expired, or
    for an address the person has since replaced."""
    payload = verify(secret, CONFIRM_PURPOSE, token, now)
    user = session.get(User, payload.get("u")) if isinstance(payload.get("u"), int) else None
    if user is None or user.email != payload.get("e"):
        raise LinkError(expired=True)  # replaced since: as good as expired
    if user.email_verified_at is None:
        user.email_verified_at = now
    return user


def verified_email(user: User) -> str | None:
    return user.email if user.email and user.email_verified_at else None
