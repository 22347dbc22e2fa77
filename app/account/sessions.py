"""Sign-ins, kept server-side so that ending one really ends it.

flask-login keeps the user's id in the session cookie and, for "remember me", in a
long-lived cookie; neither can be taken back from a browser (or from whoever copied it).
So what those cookies hold here is a random token naming one sign-in, a row of
`user_sessions`; every request checks the row. Signing out ends that row, signing out
everywhere ends all of the user's, and a row also ends SESSION_DAYS after the sign-in.
Each sign-in gets a new token, so the remember cookie changes every time. Only a hash
of the token is stored: a copy of the table opens no one's account.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..models import User, UserSession

SEEN_EVERY = timedelta(minutes=5)  # last_seen_at is refreshed at most this often


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def start(session: Session, user: User, *, now: datetime, lifetime: timedelta, user_agent: str | None) -> str:
    """A new sign-in for `user`; returns its token (and gives it to the user object)."""
    token = secrets.token_urlsafe(32)
    session.add(UserSession(token_hash=token_hash(token), user_id=user.id, created_at=now, last_seen_at=now,
                            expires_at=now + lifetime, user_agent=(user_agent or "")[:300] or None))
    user.session_token = token
    return token


def resume(session: Session, token: str, *, now: datetime) -> User | None:
    """The user of a sign-in that is still going, or None (unknown, ended or expired)."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    row = session.get(UserSession, token_hash(token))
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if now - row.last_seen_at > SEEN_EVERY:
        # In a transaction of its own: committing the request's session here would commit
        # whatever the request had changed so far.
        with Session(session.get_bind()) as own, own.begin():
            own.execute(sa.update(UserSession).where(UserSession.token_hash == row.token_hash)
                        .values(last_seen_at=now))
    user = session.get(User, row.user_id)
    if user is not None:
        user.session_token = token
    return user


def end(session: Session, token: str, *, now: datetime) -> None:
    session.execute(sa.update(UserSession)
                    .where(UserSession.token_hash == token_hash(token), UserSession.ended_at.is_(None))
                    .values(ended_at=now))


def end_all(session: Session, user_id: int, *, now: datetime) -> int:
    """End every sign-in of the user; returns how many were going."""
    return session.execute(sa.update(UserSession).where(UserSession.user_id == user_id,
                                                         UserSession.ended_at.is_(None))
                           .values(ended_at=now)).rowcount


def active(session: Session, user_id: int, *, now: datetime) -> list[UserSession]:
    """The user's sign-ins still going, newest first (for Settings)."""
    return list(session.scalars(sa.select(UserSession).where(
        UserSession.user_id == user_id, UserSession.ended_at.is_(None), UserSession.expires_at > now)
        .order_by(UserSession.created_at.desc())))
