"""The audit log: an admin action and its record are written in one transaction."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..models import AdminAudit, User


def record(session: Session, admin: User, action: str, target: str, *, now: datetime, **details) -> None:
    session.add(AdminAudit(at=now, admin_id=admin.id, admin_name=admin.display_name, action=action,
                           target=target[:300], details=details or None))


def recent(session: Session, limit: int = 200) -> list[AdminAudit]:
    return list(session.scalars(sa.select(AdminAudit).order_by(AdminAudit.at.desc(), AdminAudit.id.desc())
                                .limit(limit)))
