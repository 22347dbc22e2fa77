"""What a user is told about their archive: is collection running, and is anything lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..models import ArchiveState, Gap, Play, User, UserStatus

STATUS_LABELS = {
    UserStatus.active.value: "Collecting",
    UserStatus.reauth_required.value: "Re-authorisation needed",
    UserStatus.paused.value: "Paused",
    UserStatus.deactivated.value: "Stopped",
}


@dataclass
class ArchiveHealth:
    status: str
    label: str
    plays: int
    last_success_at: datetime | None
    next_poll_at: datetime | None
    retrying_after_failures: int
    last_failure_message: str | None
    app_paused_until: datetime | None
    gaps: list[Gap]
    open_gaps: int

    @property
    def needs_reauthorisation(self) -> bool:
        return self.status in (UserStatus.reauth_required.value, UserStatus.deactivated.value)


def archive_health(session: Session, user: User, *, gap_limit: int = 5) -> ArchiveHealth:
    state = session.get(ArchiveState, user.id)
    plays = session.scalar(sa.select(sa.func.count()).select_from(Play).where(Play.user_id == user.id))
    gaps = session.scalars(sa.select(Gap).where(Gap.user_id == user.id, Gap.filled_at.is_(None))
                           .order_by(Gap.starts_at.desc()).limit(gap_limit)).all()
    open_gaps = session.scalar(sa.select(sa.func.count()).select_from(Gap)
                               .where(Gap.user_id == user.id, Gap.filled_at.is_(None)))
    paused = session.execute(sa.text(
        "SELECT paused_until FROM api_budget WHERE id = 1 AND paused_until > now()")).scalar()
    return ArchiveHealth(
        status=user.status,
        label=STATUS_LABELS.get(user.status, user.status),
        plays=plays,
        last_success_at=state.last_success_at if state else None,
        next_poll_at=state.next_poll_at if state and user.status == UserStatus.active.value else None,
        retrying_after_failures=state.consecutive_failures if state else 0,
        last_failure_message=state.last_failure_message if state else None,
        app_paused_until=paused,
        gaps=list(gaps),
        open_gaps=open_gaps,
    )
