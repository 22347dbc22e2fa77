"""Mail delivery. The work is app/email/delivery.py's."""

from __future__ import annotations

from app.alerts.service import check
from app.email.delivery import deliver_due
from app.email.outbox import mail_context
from app.queue import DELIVER_MAIL, app, flask_app


@app.task(**DELIVER_MAIL.options())
def deliver_mail() -> dict:
    flask = flask_app()
    return deliver_due(flask.extensions["database"], flask.config["SETTINGS"], flask.extensions["clock"])


@app.periodic(cron="* * * * *", periodic_id="deliver_mail")
@app.task(name="jobs.mail.retry_mail", queue="mail", queueing_lock="retry_mail", priority=5)
def retry_mail(timestamp: int) -> dict:
    """Messages whose delivery failed wait for their next attempt: this picks them up."""
    return deliver_mail()


@app.periodic(cron="*/10 * * * *", periodic_id="send_alerts")
@app.task(name="jobs.mail.send_alerts", queue="mail", queueing_lock="send_alerts", priority=5)
def send_alerts(timestamp: int) -> dict:
    """Collection at risk, and consent running out: app/alerts."""
    flask = flask_app()
    with mail_context(flask), flask.extensions["database"].session() as session:
        return check(session, secret=flask.config["SETTINGS"].secret_key, now=flask.extensions["clock"]())
