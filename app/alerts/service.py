"""Telling people when collection stops, because nobody looks at a passive archive.

`check` runs every few minutes (a job) and, for each person with a confirmed address who
has not turned alerts off:

* **Collection at risk**: Spotify no longer accepts the app's access (`reauth_required`),
  collection stopped after repeated failures (`deactivated`), or polls have failed for
  AT_RISK_AFTER in a row so that plays may be lost. That opens an incident; its mails go
  at 0 h, 48 h and 120 h after it began (SCHEDULE), three at most; once collection works
  again the incident is resolved and nothing more is sent; a later failure opens a new
  incident and a new series.
* **Authorisation running out**: Spotify's refresh tokens die six months after consent;
  a reminder 14 days and 2 days before, each once per consent (re-authorising resets it).

Every mail has a key naming what it is about (incident and step, consent and reminder),
so a job retried after a crash writes it once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ..email.outbox import external_url, queue_email
from ..models import AlertIncident, ArchiveState, User, UserStatus
from ..signed import sign
from ..spotify.tokens import reauthorise_by
from ..time import datetime_to_ms

log = logging.getLogger(__name__)

SCHEDULE = (timedelta(0), timedelta(hours=48), timedelta(hours=120))
AT_RISK_AFTER = timedelta(hours=12)  # failing this long, plays beyond Spotify's last 50 may be lost
REMINDERS = (timedelta(days=14), timedelta(days=2))
ALERT_PRIORITY = 0  # before any other mail when the hourly quota holds mail back
UNSUBSCRIBE = "alerts-off"


def wants_alerts(user: User) -> bool:
    return bool(user.email and user.email_verified_at) and (user.preferences or {}).get("alerts", True) is not False


def check(session: Session, *, secret: str, now: datetime) -> dict[str, int]:
    """One pass over everyone; returns what it did."""
    done = {"opened": 0, "mailed": 0, "resolved": 0, "reminded": 0}
    rows = session.execute(sa.select(User, ArchiveState).outerjoin(ArchiveState, ArchiveState.user_id == User.id)
                           .where(User.email_verified_at.is_not(None))).all()
    for user, state in rows:
        if not wants_alerts(user):
            continue
        _collection(session, user, state, secret=secret, now=now, done=done)
        _reminders(session, user, secret=secret, now=now, done=done)
    return done


def at_risk(user: User, state: ArchiveState | None, now: datetime) -> str | None:
    """Why collection is at risk for this user, or None."""
    if user.status == UserStatus.reauth_required.value:
        return "reauth_required"
    if user.status == UserStatus.deactivated.value:
        return "deactivated"
    if user.status == UserStatus.active.value and state is not None and state.consecutive_failures:
        since = state.last_success_at or user.authorized_at
        if since is not None and since <= now - AT_RISK_AFTER:
            return "failing"
    return None


def _collection(session: Session, user: User, state: ArchiveState | None, *, secret: str, now: datetime,
                done: dict) -> None:
    reason = at_risk(user, state, now)
    incident = session.scalar(sa.select(AlertIncident).where(AlertIncident.user_id == user.id,
                                                             AlertIncident.resolved_at.is_(None)))
    if reason is None:
        if incident is not None:
            incident.resolved_at = now
            done["resolved"] += 1
        return
    if incident is None:
        incident = AlertIncident(user_id=user.id, started_at=now, reason=reason, mails_sent=0)
        session.add(incident)
        session.flush()
        done["opened"] += 1
    step = incident.mails_sent
    if step >= len(SCHEDULE) or now < incident.started_at + SCHEDULE[step]:
        return
    queue_email(session, key=f"at-risk:{incident.id}:{step}", user_id=user.id, to=user.email,
                subject=_subject(reason, step), template="collection_at_risk", now=now, priority=ALERT_PRIORITY,
                unsubscribe=unsubscribe_link(user, secret=secret, now=now), name=user.display_name, reason=reason,
                message=state.last_failure_message if state else None,
                since=state.last_success_at if state else None, step=step, last=step == len(SCHEDULE) - 1,
                link=external_url("auth.login", reauthorise=1))
    incident.mails_sent = step + 1
    done["mailed"] += 1


def _subject(reason: str, step: int) -> str:
    what = {"reauth_required": "Spotify stopped accepting Audiospective's access",
            "deactivated": "Audiospective stopped collecting your plays",
            "failing": "Audiospective cannot reach your Spotify history"}[reason]
    return what if step == 0 else f"Reminder: {what[0].lower()}{what[1:]}"


def _reminders(session: Session, user: User, *, secret: str, now: datetime, done: dict) -> None:
    expires = reauthorise_by(user)
    if expires is None or user.status != UserStatus.active.value or now >= expires:
        return  # past it, the poll fails and the at-risk series takes over
    due = [before for before in REMINDERS if now >= expires - before]
    if not due:
        return
    before = due[-1]  # only the most pressing one if several came due at once
    written = queue_email(session, key=f"token-expiry:{user.id}:{datetime_to_ms(user.authorized_at)}:{before.days}",
                          user_id=user.id, to=user.email, subject=f"Sign in again within {before.days} days to keep "
                          "your Spotify history coming", template="token_expiry", now=now,
                          unsubscribe=unsubscribe_link(user, secret=secret, now=now), name=user.display_name,
                          expires=expires, days=before.days, link=external_url("auth.login", reauthorise=1))
    if written:
        done["reminded"] += 1


def unsubscribe_link(user: User, *, secret: str, now: datetime) -> str:
    return external_url("alerts.turn_off", t=sign(secret, UNSUBSCRIBE, {"u": user.id}, now + timedelta(days=3650)))


def set_alerts(session: Session, user: User, on: bool) -> None:
    user.preferences = {**(user.preferences or {}), "alerts": on}
