"""Looking users up the way operators refer to them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import User


def find_user(session: Session, ref: str) -> User | None:
    """By Spotify account id (or legacy id), else by Audiospective's numeric id."""
    user = session.scalar(sa.select(User).where(sa.or_(User.spotify_id == ref, User.spotify_user_id == ref)))
    if user is None and ref.isdigit():
        user = session.get(User, int(ref))
    return user
