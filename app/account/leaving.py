"""Leaving: pausing collection (everything kept, nothing polled) and deleting an account.

Deleting is one transaction that removes the user's row; every table that refers to a
user does so with ON DELETE CASCADE (tokens, archive state, gaps, imports and their
uploads, exports and their files, outbox mail, sign-ins, shares), and the plays and
rollups, which carry no foreign key for speed, are removed by the `users_drop_rollups`
trigger (migration 0004). Catalogue rows (tracks, albums, artists) are shared by every
user and stay.

The transaction first takes the user's archive lock (app/archive_lock.py), so it waits
for a poll or an import merge in progress to commit; a poll or merge that starts after
it finds no user and writes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import archive_lock
from ..archival.dispatch import resume_collection
from ..models import Export, Import, Play, Share, User, UserStatus

# Where a person removes the app's access at Spotify (Spotify has no API to revoke a grant).
SPOTIFY_APPS_URL = "https://www.spotify.com/account/apps/"


class LeavingError(ValueError):
    """A request to pause, resume or delete that cannot be done as asked."""


def pause_archiving(session: Session, user: User) -> None:
    """Stop polling this user; their archive stays as it is. Only a running collection
    can be paused (one that needs a new sign-in is stopped already)."""
    if user.status == UserStatus.paused.value:
        return
    if user.status != UserStatus.active.value:
        raise LeavingError("Collection is not running, so there is nothing to pause: sign in with Spotify again "
                           "to restart it.")
    user.status = UserStatus.paused.value


def resume_archiving(session: Session, user: User, *, now: datetime) -> None:
    """Poll again, soon. Plays older than Spotify's last 50 at that moment are not
    recoverable by polling; the first poll records that gap as any other."""
    if user.status != UserStatus.paused.value:
        return
    user.status = UserStatus.active.value
    resume_collection(session, user, now, random.Random())


@dataclass(frozen=True)
class Holdings:
    """What deleting an account removes, said to the person before they confirm."""

    plays: int
    imports: int
    exports: int
    shares: int


def holdings(session: Session, user_id: int) -> Holdings:
    def count(model) -> int:
        return session.scalar(sa.select(sa.func.count()).select_from(model).where(model.user_id == user_id))

    return Holdings(plays=count(Play), imports=count(Import), exports=count(Export), shares=count(Share))


def delete_account(session: Session, user_id: int) -> bool:
    """Remove the user and everything of theirs, in the caller's transaction (commit it).
    False if there was no such user."""
    session.execute(sa.text(archive_lock.for_transaction_sql(":user")), {"user": user_id})
    deleted = session.execute(sa.delete(User).where(User.id == user_id)).rowcount
    return bool(deleted)
