"""Keeping a user's Spotify access token fresh, safely across processes.

The rules come from how Spotify behaves (docs/spotify.md, OAuth):

* Access tokens live an hour; refresh when fewer than 5 minutes remain.
* A refresh may return a new refresh token and revoke the old one at once. Two
  processes refreshing the same user concurrently would each burn the other's token,
  so refreshing happens under a row lock on `spotify_tokens`: the second process waits
  for the first, then finds a fresh token and reuses it without calling Spotify.
* The rotated refresh token is committed *before* the new access token is used, in its
  own transaction, so a poll that later rolls back can never lose it.
* No refresh token in the response means the old one stays valid: keep it.
* `invalid_grant` means the refresh token is dead (revoked, or 6 months old): mark the
  user `reauth_required` and stop; retrying cannot help and only the user can fix it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..crypto import TokenCipher, UndecryptableToken
from ..db import Database
from ..models import SpotifyToken, User, UserStatus
from ..time import utcnow
from .client import SpotifyClient
from .errors import InvalidGrant

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
# Spotify refresh tokens stop working six months after the user authorised.
REFRESH_TOKEN_LIFETIME = timedelta(days=182)


class ReauthRequired(Exception):
    """The user must sign in with Spotify again before anything can be fetched for them."""

    def __init__(self, user_id: int, reason: str):
        super().__init__(f"user {user_id} must re-authorise with Spotify: {reason}")
        self.user_id = user_id


@dataclass(frozen=True)
class TokenService:
    """Everything token handling needs; built once per process (see `from_app`)."""

    database: Database
    client: SpotifyClient
    cipher: TokenCipher
    clock: Callable[[], datetime] = utcnow

    def fresh_access_token(self, user_id: int) -> str:
        """An access token valid for at least REFRESH_MARGIN, refreshing if needed.

        Raises ReauthRequired, or a classified SpotifyError when Spotify cannot be
        reached; in the latter case nothing was changed and a later call may succeed.
        """
        try:
            return self._fresh_access_token(user_id)
        except UndecryptableToken as exc:
            # The key changed: no retry can help; the user signing in again stores new tokens.
            self._mark_reauth_required(user_id)
            raise ReauthRequired(user_id, str(exc)) from None

    def _fresh_access_token(self, user_id: int) -> str:
        # Fast path, no lock: most calls find a token with most of its hour left.
        with self.database.sessionmaker() as session:
            token = self._load(session, user_id, lock=False)
            if token.expires_at - self.clock() > REFRESH_MARGIN:
                return self.cipher.decrypt(token.access_token_enc)

        with self.database.sessionmaker() as session:
            token = self._load(session, user_id, lock=True)  # waits for a concurrent refresh
            if token.expires_at - self.clock() > REFRESH_MARGIN:
                return self.cipher.decrypt(token.access_token_enc)  # refreshed while we waited

            requested_at = self.clock()
            try:
                grant = self.client.refresh(self.cipher.decrypt(token.refresh_token_enc))
            except InvalidGrant as exc:
                session.rollback()
                self._mark_reauth_required(user_id)
                log.warning("user %s: refresh token rejected, re-authorisation required", user_id)
                raise ReauthRequired(user_id, str(exc)) from None

            token.access_token_enc = self.cipher.encrypt(grant.access_token)
            if grant.refresh_token is not None:
                token.refresh_token_enc = self.cipher.encrypt(grant.refresh_token)
            # Counted from before the request, so network time never makes us overestimate.
            token.expires_at = requested_at + timedelta(seconds=grant.expires_in)
            if grant.scope:
                token.scope = grant.scope
            session.commit()
            log.info("user %s: access token refreshed%s", user_id, " (refresh token rotated)" if grant.refresh_token else "")
            return grant.access_token

    def _mark_reauth_required(self, user_id: int) -> None:
        with self.database.session() as session:
            session.execute(sa.update(User).where(User.id == user_id).values(status=UserStatus.reauth_required.value))

    def _load(self, session: Session, user_id: int, *, lock: bool) -> SpotifyToken:
        query = (
            sa.select(SpotifyToken, User.status)
            .join(User, User.id == SpotifyToken.user_id)
            .where(SpotifyToken.user_id == user_id)
        )
        if lock:
            query = query.with_for_update(of=SpotifyToken)
        row = session.execute(query).one_or_none()
        if row is None:
            raise ReauthRequired(user_id, "no Spotify tokens stored")
        token, status = row
        if status == UserStatus.reauth_required.value:
            raise ReauthRequired(user_id, "marked reauth_required")
        return token


def reauthorise_by(user: User) -> datetime | None:
    """When Spotify will stop honouring this user's refresh token."""
    return user.authorized_at + REFRESH_TOKEN_LIFETIME if user.authorized_at else None


def store_tokens(
    session: Session,
    user: User,
    cipher: TokenCipher,
    *,
    access_token: str,
    refresh_token: str,
    expires_at: datetime,
    scope: str | None,
) -> None:
    """Save a fresh grant from sign-in (encrypted), replacing whatever was there."""
    row = session.get(SpotifyToken, user.id)
    if row is None:
        row = SpotifyToken(user_id=user.id)
        session.add(row)
    row.access_token_enc = cipher.encrypt(access_token)
    row.refresh_token_enc = cipher.encrypt(refresh_token)
    row.expires_at = expires_at
    row.scope = scope
