"""Delivering the outbox over SMTP (a job): each due message is locked, sent and marked
sent in its own transaction, so concurrent workers never send one twice. A transient
failure (no connection, a 4xx answer) waits (1, 2, 4 … up to 360 minutes) and is tried
again, never lost; a permanent one (5xx) is marked failed and not tried again. At most
EMAIL_MAX_PER_HOUR messages leave per hour: the rest waits, lowest `priority` first
(alerts that collection is at risk go before everything else). Without SMTP configured
nothing is sent: mail stays readable on the Outbox page.

Never twice: `handed_at` is committed just before DATA; a message whose hand-over began
and did not finish (its worker died) may have arrived, so it is not sent again but, after
INTERRUPTED_AFTER, marked failed with that explanation."""

from __future__ import annotations

import logging
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid, parseaddr
from typing import Callable

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
    outcome = {"sent": 0, "failed": 0, "refused": 0, "over_quota": 0, "uncertain": 0}
    if settings.smtp is None:
        return outcome
    with database.session() as session:
        outcome["uncertain"] = give_up_interrupted(session, clock())
    for _ in range(BATCH):
        # Not database.session(): the hand-over commits in the middle of the unit of work.
        with database.sessionmaker() as session:
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

            def hand_over() -> None:
                # Committed before DATA: a worker killed from here on leaves a message that
                # may have arrived, which is therefore never sent again (give_up_interrupted).
                message.handed_at = clock()
                session.commit()

            try:
                send(settings.smtp, settings.mail_from, message, hand_over)
            except smtplib.SMTPRecipientsRefused as exc:
                _refused(message, exc, clock, outcome)
            except smtplib.SMTPResponseException as exc:
                if 500 <= exc.smtp_code < 600:
                    _refused(message, exc, clock, outcome)
                else:
                    _retry(message, exc, clock, outcome)
            except (OSError, smtplib.SMTPException) as exc:
                if message.handed_at is not None:  # the connection broke during DATA: it may have arrived
                    _refused(message, UncertainDelivery(str(exc)), clock, outcome)
                else:
                    _retry(message, exc, clock, outcome)
            else:
                message.sent_at = clock()
                outcome["sent"] += 1
            session.commit()
    return outcome


class UncertainDelivery(Exception):
    """The SMTP server may or may not have the message: not sent again, so it cannot arrive twice."""


UNCERTAIN = ("the sending process stopped while the mail server was receiving this message, so it may have arrived; "
             "it is not sent again, so it cannot arrive twice")
INTERRUPTED_AFTER = timedelta(minutes=10)  # far longer than any hand-over (TIMEOUT_S)


def give_up_interrupted(session, now) -> int:
    """Messages whose hand-over began long ago and never finished (the worker died
    during DATA): marked failed, with why, instead of being sent a second time."""
    return session.execute(sa.update(OutboxMessage).where(
        OutboxMessage.handed_at < now - INTERRUPTED_AFTER, OutboxMessage.sent_at.is_(None),
        OutboxMessage.failed_at.is_(None)).values(failed_at=now, last_error=UNCERTAIN)).rowcount


def sent_last_hour(session, now) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(
        OutboxMessage.sent_at > now - timedelta(hours=1)))


def _due(now) -> tuple:
    return (OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None), OutboxMessage.handed_at.is_(None),
            OutboxMessage.next_attempt_at <= now)


def _retry(message: OutboxMessage, exc: Exception, clock: Clock, outcome: dict) -> None:
    """A transient failure (no connection, 4xx): try again later, less and less often."""
    message.handed_at = None  # a 4xx answer to DATA: the server said it did not take it
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


def send(smtp: SmtpSettings, sender: str, message: OutboxMessage, hand_over: Callable[[], None] = lambda: None) -> None:
    """One message, over one connection. `hand_over` runs after the server accepted the
    sender and recipient, just before DATA: until then, a failure means not delivered."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to_address
    mail["Subject"] = message.subject
    mail["Message-ID"] = make_msgid(idstring=f"outbox-{message.id}", domain=sender.rsplit("@", 1)[-1].rstrip(">"))
    for name, value in (message.headers or {}).items():  # written by the app only (List-Unsubscribe)
        mail[name] = value
    mail.set_content(message.body_text)
    mail.add_alternative(message.body_html, subtype="html")
    envelope_from, envelope_to = parseaddr(sender)[1], message.to_address
    context = ssl.create_default_context()
    connection = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=TIMEOUT_S, context=context) if smtp.tls == "ssl" \
        else smtplib.SMTP(smtp.host, smtp.port, timeout=TIMEOUT_S)
    with connection:
        connection.ehlo()
        if smtp.tls in ("starttls", "opportunistic"):
            if connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
            elif smtp.tls == "starttls":
                raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS (SMTP_URL requires it)")
        if smtp.username:
            connection.login(smtp.username, smtp.password or "")
        options = []
        if not (envelope_from + envelope_to).isascii():
            if not connection.has_extn("smtputf8"):
                raise smtplib.SMTPRecipientsRefused({envelope_to: (553, b"the server cannot take non-ASCII addresses")})
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        code, answer = connection.mail(envelope_from, options)
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, answer, envelope_from)
        code, answer = connection.rcpt(envelope_to)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({envelope_to: (code, answer)})
        hand_over()
        code, answer = connection.data(mail.as_bytes(policy=SMTP_POLICY.clone(utf8=bool(options))))
        if code != 250:
            raise smtplib.SMTPDataError(code, answer)
