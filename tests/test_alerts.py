"""Alerts in virtual time (the app's clock is the simulator's): a revoked grant gives mails
at 0 h, 48 h and 120 h and no fourth; recovery stops the series and a new incident starts
another; consent reminders at 14 and 2 days; delivery over a real SMTP server on loopback
favours alerts under the hourly quota, retries 451 and stops on 550."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from conftest import REFERENCE_MS, add_users, csrf_token, free_port, freeze, sign_in
from test_email import Inbox, link_in, smtp  # noqa: F401 - the fixture is shared

from app.alerts.service import check
from app.archival.poll import Archivist, poll_user
from app.config import SmtpSettings
from app.email.delivery import deliver_due
from app.email.outbox import mail_context, queue_email

HOUR_MS = 3_600_000


@pytest.fixture
def jo(app, simulator, db_conn):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    db_conn.execute("UPDATE users SET email = 'jo@example.org', email_verified_at = now() WHERE id = %s", (user,))
    return user


def run_alerts(app) -> dict:
    with mail_context(app), app.extensions["database"].session() as session:
        return check(session, secret=app.config["SETTINGS"].secret_key, now=app.extensions["clock"]())


def at_risk_mails(db_conn) -> list[str]:
    return [k for (k,) in db_conn.execute("SELECT key FROM outbox WHERE key LIKE 'at-risk:%' ORDER BY id")]


def test_a_revoked_grant_gives_three_mails_then_silence_and_a_new_incident_a_new_series(app, jo, simulator,
                                                                                          db_conn):
    archivist = Archivist.from_app(app)
    simulator.call("POST", "/_sim/accounts/sim-acct-jo/revoke")
    db_conn.execute("UPDATE spotify_tokens SET expires_at = %s WHERE user_id = %s", (app.extensions["clock"](), jo))
    assert poll_user(archivist, jo).outcome == "reauth_required"
    sent_at = {}
    for hour in range(0, 200, 4):  # every 4 virtual hours, as the job would run
        freeze(simulator, REFERENCE_MS + hour * HOUR_MS)
        if run_alerts(app)["mailed"]:
            sent_at[len(sent_at)] = hour
    assert sent_at == {0: 0, 1: 48, 2: 120}, sent_at  # and no fourth, however long it stays broken
    first = db_conn.execute("SELECT subject, body_text, priority FROM outbox WHERE key LIKE 'at-risk:%' ORDER BY id"
                            ).fetchone()
    assert "stopped accepting" in first[0] and "no longer accepts" in first[1] and "/auth/login?reauthorise=1" in first[1] and first[2] == 0
    assert "50 most recent plays" in first[1] and "Turn these alerts off" in first[1]

    # Recovery (a new sign-in: active again, failures forgotten) resolves it; a later
    # failure starts a new series.
    db_conn.execute("UPDATE users SET status = 'active' WHERE id = %s", (jo,))
    db_conn.execute("UPDATE archive_state SET consecutive_failures = 0 WHERE user_id = %s", (jo,))
    assert run_alerts(app)["resolved"] == 1
    freeze(simulator, REFERENCE_MS + 300 * HOUR_MS)
    db_conn.execute("UPDATE users SET status = 'deactivated' WHERE id = %s", (jo,))
    assert run_alerts(app)["mailed"] == 1
    assert len(at_risk_mails(db_conn)) == 4 and at_risk_mails(db_conn)[-1].endswith(":0")


def test_recovery_at_60_hours_stops_the_series(app, jo, simulator, db_conn):
    db_conn.execute("UPDATE users SET status = 'reauth_required' WHERE id = %s", (jo,))
    for hour in (0, 24, 48, 60):
        freeze(simulator, REFERENCE_MS + hour * HOUR_MS)
        if hour == 60:
            db_conn.execute("UPDATE users SET status = 'active' WHERE id = %s", (jo,))
        run_alerts(app)
    for hour in range(64, 200, 8):
        freeze(simulator, REFERENCE_MS + hour * HOUR_MS)
        run_alerts(app)
    assert len(at_risk_mails(db_conn)) == 2  # 0 h and 48 h; none after it recovered


def test_polls_failing_for_twelve_hours_are_a_risk_too_and_unconfirmed_or_opted_out_people_get_nothing(
        app, jo, simulator, db_conn):
    db_conn.execute("UPDATE archive_state SET consecutive_failures = 9, last_success_at = %s, "
                    "last_failure_message = 'Spotify answered 503' WHERE user_id = %s",
                    (app.extensions["clock"]() - timedelta(hours=11), jo))
    assert run_alerts(app)["opened"] == 0
    freeze(simulator, REFERENCE_MS + 2 * HOUR_MS)
    assert run_alerts(app)["mailed"] == 1
    assert "Spotify answered 503" in db_conn.execute("SELECT body_text FROM outbox").fetchone()[0]
    db_conn.execute("UPDATE users SET preferences = '{\"alerts\": false}' WHERE id = %s", (jo,))
    freeze(simulator, REFERENCE_MS + 60 * HOUR_MS)
    assert run_alerts(app)["mailed"] == 0


def test_consent_reminders_at_14_and_2_days_and_none_after_signing_in_again(app, jo, simulator, db_conn, client):
    authorized = db_conn.execute("SELECT authorized_at FROM users WHERE id = %s", (jo,)).fetchone()[0]
    expiry_ms = int((authorized + timedelta(days=182)).timestamp() * 1000)
    for days_before, expected in ((20, 0), (14, 1), (13, 1), (2, 2), (1, 2)):
        freeze(simulator, expiry_ms - days_before * 24 * HOUR_MS)
        run_alerts(app)
        keys = [k for (k,) in db_conn.execute("SELECT key FROM outbox WHERE key LIKE 'token-expiry:%'")]
        assert len(keys) == expected, (days_before, keys)
    body = db_conn.execute("SELECT body_text FROM outbox ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert "in 2 days" in body and "/auth/login?reauthorise=1" in body
    # Signing in again (consent renewed) resets the clock: nothing more.
    db_conn.execute("UPDATE users SET authorized_at = %s WHERE id = %s", (app.extensions["clock"](), jo))
    run_alerts(app)
    assert db_conn.execute("SELECT count(*) FROM outbox WHERE key LIKE 'token-expiry:%'").fetchone()[0] == 2


def test_alerts_can_be_turned_off_from_the_mail_and_on_in_settings(app, jo, simulator, db_conn, client):
    db_conn.execute("UPDATE users SET status = 'reauth_required' WHERE id = %s", (jo,))
    run_alerts(app)
    body = db_conn.execute("SELECT body_text FROM outbox").fetchone()[0]
    link = link_in(body.split("Turn these alerts off:")[1], "")
    page = client.get(link)
    assert page.status_code == 200 and "Turn alerts off?" in page.get_data(as_text=True)
    token = link.split("t=")[1]
    done = client.post("/alerts/off", data={"t": token, "csrf_token": csrf_token(client, link)})
    assert done.status_code == 200 and "Alerts are off" in done.get_data(as_text=True)
    assert db_conn.execute("SELECT preferences->>'alerts' FROM users WHERE id = %s", (jo,)).fetchone()[0] == "false"
    assert client.get("/alerts/off?t=forged").status_code == 400
    sign_in(client, "sim-acct-jo")
    assert client.post("/settings/alerts", data={"alerts": "on", "csrf_token": csrf_token(client, "/settings")}
                       ).status_code == 303
    assert db_conn.execute("SELECT preferences->>'alerts' FROM users WHERE id = %s", (jo,)).fetchone()[0] == "true"


class Answering(Inbox):
    """An SMTP server that answers with the codes it is given, in turn, then 250."""

    def __init__(self, codes: list[str]):
        super().__init__()
        self.codes = codes

    async def handle_DATA(self, server, session, envelope):
        if self.codes:
            return self.codes.pop(0)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def answering():
    inbox = Answering([])
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.settings = SmtpSettings(host="127.0.0.1", port=port, tls="opportunistic")
    yield inbox
    controller.stop()


def queue(app, key: str, to: str, priority: int = 5) -> None:
    with mail_context(app), app.extensions["database"].session() as session:
        queue_email(session, key=key, user_id=None, to=to, subject=key, template="confirm_email",
                    now=app.extensions["clock"](), priority=priority, name="x", link="http://x/y", valid_hours=1)


def test_451_is_retried_550_is_not(app, answering, simulator, db_conn):
    freeze(simulator)
    settings = dataclasses.replace(app.config["SETTINGS"], smtp=answering.settings)
    database, clock = app.extensions["database"], app.extensions["clock"]
    answering.codes = ["451 4.3.0 try later"]
    queue(app, "transient", "a@example.org")
    first = deliver_due(database, settings, clock)
    assert first["failed"] == 1, first
    later = lambda: clock() + timedelta(minutes=2)  # noqa: E731
    assert deliver_due(database, settings, later)["sent"] == 1
    assert len(answering.messages) == 1  # delivered once
    answering.codes = ["550 5.1.1 no such user"]
    queue(app, "permanent", "nobody@example.org")
    assert deliver_due(database, settings, later)["refused"] == 1
    much_later = lambda: clock() + timedelta(days=2)  # noqa: E731
    assert deliver_due(database, settings, much_later) == {"sent": 0, "failed": 0, "refused": 0, "over_quota": 0,
                                                             "uncertain": 0}
    failed_at, error = db_conn.execute("SELECT failed_at, last_error FROM outbox WHERE key = 'permanent'").fetchone()
    assert failed_at is not None and "550" in error


def test_the_hourly_quota_holds_mail_back_alerts_first(app, smtp, simulator, db_conn):  # noqa: F811
    freeze(simulator)
    settings = dataclasses.replace(app.config["SETTINGS"], smtp=smtp.settings, email_max_per_hour=5)
    database = app.extensions["database"]
    for n in range(17):
        queue(app, f"ordinary-{n:02d}", f"p{n}@example.org")
    for n in range(3):
        queue(app, f"alert-{n}", f"a{n}@example.org", priority=0)
    hours = []
    for hour in range(5):
        freeze(simulator, REFERENCE_MS + hour * HOUR_MS + 60_000)
        outcome = deliver_due(database, settings, app.extensions["clock"])
        hours.append(outcome["sent"])
    assert hours == [5, 5, 5, 5, 0]
    subjects = [m["Subject"] for m in smtp.messages]
    assert subjects[:3] == ["alert-0", "alert-1", "alert-2"] and len(set(subjects)) == 20


class Stalling(Inbox):
    """An SMTP server that keeps a message as soon as its DATA arrives, then waits to be
    released before it answers: a worker killed meanwhile never learns that it was taken."""

    def __init__(self):
        super().__init__()
        self.arrived, self.release = threading.Event(), threading.Event()

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)
        self.arrived.set()
        while not self.release.is_set():
            await asyncio.sleep(0.05)
        return answer


def test_a_worker_killed_while_handing_a_message_over_never_sends_it_twice(app, simulator, workers, db_conn):
    from conftest import wait_for, wall_clock_ms

    from app import queue as jobs

    freeze(simulator, wall_clock_ms())  # the workers run on the wall clock
    server = Stalling()
    port = free_port()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        queue(app, "handed-over", "a@example.org")

        def deliver() -> int:
            with app.extensions["database"].session() as session:
                jobs.defer(jobs.DELIVER_MAIL, session, {})
            return db_conn.execute("SELECT max(id) FROM procrastinate_jobs").fetchone()[0]

        first = workers(SMTP_URL=f"smtp://127.0.0.1:{port}?starttls=off")
        deliver()
        assert server.arrived.wait(60), first.output()
        first.kill()  # the server has the message; the worker dies before hearing so
        server.release.set()
        assert len(server.messages) == 1
        handed, sent = db_conn.execute("SELECT handed_at, sent_at FROM outbox").fetchone()
        assert handed is not None and sent is None

        workers(SMTP_URL=f"smtp://127.0.0.1:{port}?starttls=off")
        job = deliver()
        wait_for(lambda: db_conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job,)).fetchone()[0]
                 == "succeeded", timeout=60, message="the second worker's delivery run")
        assert len(server.messages) == 1, "sent twice"
        # Later the message is marked as what it is: possibly delivered, not sent again.
        settings = dataclasses.replace(app.config["SETTINGS"], smtp=SmtpSettings("127.0.0.1", port, "off"))
        later = lambda: app.extensions["clock"]() + timedelta(minutes=11)  # noqa: E731
        assert deliver_due(app.extensions["database"], settings, later)["uncertain"] == 1
        failed_at, error = db_conn.execute("SELECT failed_at, last_error FROM outbox").fetchone()
        assert failed_at is not None and "may have arrived" in error
        assert len(server.messages) == 1
    finally:
        server.release.set()
        controller.stop()
