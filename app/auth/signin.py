"""What completing a sign-in does, in the caller's transaction: the account is created or
updated from the Spotify profile (account/), the new tokens are stored encrypted
(spotify/tokens.py), and collection starts or resumes (archival/)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ..account.users import user_from_profile
from ..membership.seats import give_seat
from ..archival.dispatch import resume_collection
from ..crypto import TokenCipher
from ..models import Role, User
from ..spotify.tokens import store_tokens


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
    admin_ids: frozenset[str] = frozenset(),
) -> User:
    """Signing in again is also how a user recovers from `reauth_required` or `deactivated`."""
    user = user_from_profile(session, profile, now=now)
    give_seat(session, user)  # the caller has let them in (membership.seats.admit)
    if {user.spotify_id, user.spotify_user_id} & admin_ids:
        user.role = Role.admin.value  # ADMIN_SPOTIFY_IDS: an operator's choice, kept until demoted
    store_tokens(
        session, user, cipher,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=now + timedelta(seconds=expires_in),
        scope=scope,
    )
    resume_collection(session, user, now, random.Random())
    return user
