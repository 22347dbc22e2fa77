"""A person's email address: Spotify gives none with the scopes this app asks for, so
people enter one and confirm it through a signed link sent to it. Until confirmed it
receives nothing but that confirmation."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from ..email.outbox import external_url, queue_email
from ..models import User
from ..signed import LinkError, sign, verify

CONFIRM_PURPOSE = "confirm-email"
CONFIRM_VALID = timedelta(days=2)
_ADDRESS = re.compile(r"[^\s@<>()\[\]\\,;:\"]{1,64}@[^\s@<>()\[\]\\,;:\"]+\.[^\s@<>()\[\]\\,;:\".]{2,}")


class AddressError(ValueError):
    """An address that cannot be used, with a message for the person."""


def normalise(raw: str | None) -> str:
    address = (raw or "").strip()
    if not address:
        raise AddressError("Enter an email address.")
    if len(address) > 254 or not address.isprintable() or not _ADDRESS.fullmatch(address):
        raise AddressError("That does not look like an email address (name@example.com).")
    local, domain = address.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def change_email(session: Session, user: User, raw: str | None, *, secret: str, now: datetime) -> str:
    """Set the (unconfirmed) address and queue the confirmation mail; the address."""
    address = normalise(raw)
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
