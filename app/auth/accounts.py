"""Creating and updating users from what Spotify says about them."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ..archival.cadence import first_poll_delay
from ..crypto import TokenCipher
from ..models import ArchiveState, User, UserStatus
from ..spotify.tokens import store_tokens

# Spotify refresh tokens expire six months after the user authorised (SPOTIFY.md).
REFRESH_TOKEN_LIFETIME = timedelta(days=182)


def identity_of(profile: dict[str, Any]) -> str:
    """Spotify asks apps to link accounts by `account_id` (2026); older profiles lack it."""
    account_id = profile.get("account_id")
    return account_id if isinstance(account_id, str) and account_id else profile["id"]


def sign_in(
    session: Session,
    profile: dict[str, Any],
    *,
    access_token: str,
    refresh_token: str,
    expires_in: int,
    scope: str | None,
    cipher: TokenCipher,
    now: datetime,
) -> User:
    """Create or update the user for a Spotify profile and store their new tokens.

    A user an operator created ahead of time (keyed by either id) becomes this user.
    Signing in again is how a user recovers from `reauth_required` or `deactivated`.
    """
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
    if user.status in (UserStatus.reauth_required.value, UserStatus.deactivated.value):
        user.status = UserStatus.active.value
    session.flush()

    store_tokens(
        session, user, cipher,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=now + timedelta(seconds=expires_in),
        scope=scope,
    )
    # Poll soon (the dashboard fills at once), and forget failures the sign-in has cured.
    first_poll = now + first_poll_delay(random.Random())
    session.execute(
        insert(ArchiveState).values(user_id=user.id, next_poll_at=first_poll).on_conflict_do_update(
            index_elements=[ArchiveState.user_id],
            set_={"next_poll_at": first_poll, "consecutive_failures": 0, "circuit_open_until": None,
                  "last_failure_kind": None, "last_failure_message": None, "dispatched_at": None},
        )
    )
    return user


def reauthorise_by(user: User) -> datetime | None:
    """When Spotify will stop honouring this user's refresh token."""
    return user.authorized_at + REFRESH_TOKEN_LIFETIME if user.authorized_at else None


def _widest_image(images: Any) -> str | None:
    if not isinstance(images, list):
        return None
    candidates = [i for i in images if isinstance(i, dict) and isinstance(i.get("url"), str)]
    if not candidates:
        return None
    return max(candidates, key=lambda i: i.get("width") or 0)["url"]
