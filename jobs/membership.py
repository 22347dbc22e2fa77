"""Membership jobs. The work is app/membership's."""

from __future__ import annotations

from app.email.outbox import mail_context
from app.limits import forget_old
from app.membership.waitlist import invite_next
from app.queue import app, flask_app


@app.periodic(cron="*/5 * * * *", periodic_id="invite_from_waitlist")
@app.task(name="jobs.membership.invite_from_waitlist", queue="maintenance", queueing_lock="invite_from_waitlist")
def invite_from_waitlist(timestamp: int) -> int:
    """Seats freed (an account deleted, the cap raised, an invitation expired) go to the
    next confirmed people on the waitlist."""
    flask = flask_app()
    settings = flask.config["SETTINGS"]
    with mail_context(flask), flask.extensions["database"].session() as session:
        return invite_next(session, default_cap=settings.founding_member_cap, secret=settings.secret_key,
                           now=flask.extensions["clock"](), days=settings.invite_days)


@app.periodic(cron="17 * * * *", periodic_id="forget_rate_limits")
@app.task(name="jobs.membership.forget_rate_limits", queue="maintenance", queueing_lock="forget_rate_limits")
def forget_rate_limits(timestamp: int) -> int:
    flask = flask_app()
    with flask.extensions["database"].session() as session:
        return forget_old(session, now=flask.extensions["clock"]())
