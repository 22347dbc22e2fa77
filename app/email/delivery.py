"""Delivering the outbox over SMTP (a job): each due message is locked, sent and marked
sent in its own transaction, so concurrent workers never send one twice. A transient
failure (no connection, a 4xx answer) waits (1, 2, 4 … up to 360 minutes) and is tried
again, never lost; a permanent one (5xx) is marked failed and not tried again. At most
EMAIL_MAX_PER_HOUR messages leave per hour: the rest waits, lowest `priority` first
(alerts that collection is at risk go before everything else). Without SMTP configured
nothing is sent: mail stays readable on the Outbox page.

A worker that dies between the SMTP server's acceptance and the commit would send that
one message again when it is retried: at-least-once, as SMTP itself is."""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import sqlalchemy as sa

from ..config import Settings, SmtpSettings
from ..db import Database
from ..models import OutboxMessage
from ..time import Clock

log = logging.getLogger(__name__)

BATCH = 50
TIMEOUT_S = 20
MAX_BACKOFF_MIN = 360


def deliver_due(database: Database, settings: Settings, clock: Clock) -> dict[str, int]:
    outcome = {"sent": 0, "failed": 0, "refused": 0, "over_quota": 0}
    if settings.smtp is None:
        return outcome
    for _ in range(BATCH):
        with database.session() as session:
            if sent_last_hour(session, clock()) >= settings.email_max_per_hour:
                # Over the quota nothing is dropped: the rest waits for the next run.
                outcome["over_quota"] = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
                    *_due(clock())))
                break
            message = session.scalars(
                sa.select(OutboxMessage).where(*_due(clock()))
                .order_by(OutboxMessage.priority, OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(1).with_for_update(skip_locked=True)).first()
            if message is None:
                break
            try:
                send(settings.smtp, settings.mail_from, message)
            except smtplib.SMTPRecipientsRefused as exc:
                _refused(message, exc, clock, outcome)
            except smtplib.SMTPResponseException as exc:
                if 500 <= exc.smtp_code < 600:
                    _refused(message, exc, clock, outcome)
                else:
                    _retry(message, exc, clock, outcome)
            except (OSError, smtplib.SMTPException) as exc:
                _retry(message, exc, clock, outcome)
            else:
                message.sent_at = clock()
                outcome["sent"] += 1
    return outcome


def sent_last_hour(session, now) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.sent_at > now - timedelta(hours=1)))


def _due(now) -> tuple:
    return (OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None), OutboxMessage.next_attempt_at <= now)


def _retry(message: OutboxMessage, exc: Exception, clock: Clock, outcome: dict) -> None:
    """A transient failure (no connection, 4xx): try again later, less and less often."""
    message.attempts += 1
    message.last_error = f"{type(exc).__name__}: {exc}"[:500]
    message.next_attempt_at = clock() + backoff(message.attempts)
    outcome["failed"] += 1
    log.warning("mail %s not delivered (attempt %s): %s", message.id, message.attempts, message.last_error)


def _refused(message: OutboxMessage, exc: Exception, clock: Clock, outcome: dict) -> None:
    """A permanent refusal (5xx, every recipient refused): trying again would not help."""
    message.attempts += 1
    message.last_error = f"{type(exc).__name__}: {exc}"[:500]
    message.failed_at = clock()
    outcome["refused"] += 1
    log.error("mail %s refused for good: %s", message.id, message.last_error)


def backoff(attempts: int) -> timedelta:
    return timedelta(minutes=min(2 ** (attempts - 1), MAX_BACKOFF_MIN))


def send(smtp: SmtpSettings, sender: str, message: OutboxMessage) -> None:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to_address
    mail["Subject"] = message.subject
    mail["Message-ID"] = make_msgid(idstring=f"outbox-{message.id}", domain=sender.rsplit("@", 1)[-1].rstrip(">"))
    for name, value in (message.headers or {}).items():  # written by the app only (List-Unsubscribe)
        mail[name] = value
    mail.set_content(message.body_text)
    mail.add_alternative(message.body_html, subtype="html")
    context = ssl.create_default_context()
    connection = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=TIMEOUT_S, context=context) if smtp.tls == "ssl" \
        else smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT_S)
    with connection:
        if smtp.tls in ("starttls", "opportunistic"):
            connection.ehlo()
            if connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
            elif smtp.tls == "starttls":
                raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS (SMTP_URL requires it)")
        if smtp.username:
            connection.login(smtp.username, smtp.password or "")
        connection.send_message(mail)


