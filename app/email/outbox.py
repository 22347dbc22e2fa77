"""Writing mail. A message is a row of `outbox`, inserted in the same transaction as the
event that causes it (an export finished, an address to confirm): it exists exactly when
the event does. Its `key` makes it once-only: a retried job queues nothing twice.

Templates: templates/email/<name>.txt and <name>.html, rendered with the context given.
Links in mail are absolute, on the instance's public address (Settings.public_url)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app, render_template, url_for
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from .. import queue
from ..models import OutboxMessage


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute link for mail. Needs a request context (jobs open one: `mail_context`)."""
    return current_app.config["SETTINGS"].public_url + url_for(endpoint, **values)


def mail_context(flask_app):
    """What a job renders mail in: a request context, so url_for works outside requests."""
    return flask_app.test_request_context("/")


def queue_email(session: Session, *, key: str, user_id: int | None, to: str, subject: str, template: str,
                now: datetime, unsubscribe: str | None = None, priority: int = 5, **context: Any) -> int | None:
    """Write the message (unless one with this key exists) and wake the delivery job, in
    the caller's transaction. Its id if it was written. `unsubscribe`: the address of the
    page that stops such mail (sent as List-Unsubscribe, and shown in the message);
    `priority`: lower leaves first when the hourly quota holds mail back."""
    context = {"subject": subject, "unsubscribe": unsubscribe, **context}
    written = session.execute(insert(OutboxMessage).values(
        key=key, user_id=user_id, to_address=to, subject=subject, created_at=now, next_attempt_at=now, priority=priority,
        headers={"List-Unsubscribe": f"<{unsubscribe}>"} if unsubscribe else None,
        body_text=render_template(f"email/{template}.txt", **context),
        body_html=render_template(f"email/{template}.html", **context),
    ).on_conflict_do_nothing(index_elements=["key"]).returning(OutboxMessage.id)).first()
    if written and current_app.config["SETTINGS"].smtp is not None:
        queue.defer(queue.DELIVER_MAIL, session, {}, queueing_lock="deliver_mail")
    return written[0] if written else None


def messages_for(session: Session, user_id: int, limit: int = 50) -> list[OutboxMessage]:
    return list(session.scalars(sa.select(OutboxMessage).where(OutboxMessage.user_id == user_id)
                                .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc()).limit(limit)))
