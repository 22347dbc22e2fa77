"""API tokens: made for a user and shown once, kept as SHA-256 digests (a token is a
random UUID: 122 bits, so a plain digest is enough, and lookups stay one index probe),
revoked for good. ListenBrainz's clients send `Authorization: Token <uuid>`."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..models import ApiToken, User

MAX_LABEL = 80
MAX_ACTIVE = 20  # per user: enough for every device, few enough to review
TOUCH_EVERY = timedelta(minutes=5)  # last_used_at is written at most this often


class TokenError(ValueError):
    """What a person asked for cannot be done; the message says why."""


def digest(token: str) -> str:
    return hashlib.sha256(token.strip().lower().encode("utf-8", "replace")).hexdigest()


def rate_subject(token: str, *, token_digest: str | None = None) -> str:
    """Whom the API's rate limit counts for a request carrying `token` (valid or not);
    `token_digest` when the caller has it already."""
    return f"token:{(token_digest or digest(token))[:32]}"


def create(session: Session, user: User, label: str, *, now: datetime) -> tuple[str, ApiToken]:
    """A new token for `user`: (the token, shown only now; its row)."""
    label = " ".join((label or "").split())[:MAX_LABEL] or "API token"
    active = session.scalar(sa.select(sa.func.count()).select_from(ApiToken).where(
        ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)))
    if active >= MAX_ACTIVE:
        raise TokenError(f"You already have {MAX_ACTIVE} tokens; revoke one you no longer use first.")
    token = str(uuid.uuid4())
    row = ApiToken(user_id=user.id, digest=digest(token), hint=token[-4:], label=label, created_at=now)
    session.add(row)
    session.flush()
    return token, row


def listed(session: Session, user_id: int) -> list[ApiToken]:
    """The user's tokens, newest first (revoked ones too, marked)."""
    return session.scalars(sa.select(ApiToken).where(ApiToken.user_id == user_id)
                           .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).all()


def revoke(session: Session, user_id: int, token_id: int, *, now: datetime) -> bool:
    """Revoke one of the user's own tokens; False if they have no such token."""
    return bool(session.execute(sa.update(ApiToken).where(
        ApiToken.id == token_id, ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)
    ).values(revoked_at=now)).rowcount)


def user_for(session: Session, token: str | None, *, now: datetime) -> User | None:
    """The user a live token belongs to, or None (unknown or revoked; a deleted user's
    tokens went with them)."""
    if not token or len(token) > 200:
        return None
    row = session.execute(sa.select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(
        ApiToken.digest == digest(token), ApiToken.revoked_at.is_(None))).first()
    if row is None:
        return None
    api_token, user = row
    if api_token.last_used_at is None or now - api_token.last_used_at >= TOUCH_EVERY:
        api_token.last_used_at = now
    return user
