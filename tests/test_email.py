"""Mail: addresses confirmed through a signed link, the outbox (readable in the app when no
SMTP server is configured), delivery over real SMTP on loopback (aiosmtpd) with retries,
and the export-ready mail whose link downloads the file for its owner only."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import io
import json
import re
import threading
import zipfile
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller
from conftest import (
    REFERENCE_MS,
    add_users,
    callback_path,
    consent,
    csrf_token,
    free_port,
    freeze,
    http_sign_in,
    sign_in,
    wait_for,
)

from app.config import SmtpSettings
from app.email.delivery import deliver_due
from app.email.outbox import queue_email
from app.signed import sign
from app.simulator.export import synthetic_history


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{port}"
    inbox.settings = SmtpSettings(host="127.0.0.1", port=port, tls="opportunistic")
    yield inbox
    controller.stop()


def outbox_rows(db_conn):
    return db_conn.execute("SELECT to_address, subject, body_text, sent_at FROM outbox ORDER BY id").fetchall()


def link_in(text: str, base: str) -> str:
    """The first link in a mail, moved onto the test server (mail links use PUBLIC_URL)."""
    parts = urlsplit(re.search(r"https?://[^\s\"<>]+", text).group(0).replace("&amp;", "&"))
    return f"{base}{parts.path}?{parts.query}"


def test_an_address_is_confirmed_through_the_outbox_when_no_mail_server_is_configured(app, client, db_conn):
    sign_in(client, "sim-acct-sam")
    token = csrf_token(client, "/settings")
    refused = client.post("/settings/email", data={"csrf_token": token, "email": "not an address"})
    assert refused.status_code == 400 and "does not look like an email address" in refused.get_data(as_text=True)
    assert outbox_rows(db_conn) == []
    added = client.post("/settings/email", data={"csrf_token": token, "email": "Sam@Example.COM"},
                        follow_redirects=True)
    assert "We sent a confirmation link to Sam@example.com" in added.get_data(as_text=True)
    assert "is not confirmed yet" in added.get_data(as_text=True)
    [(to, subject, text, sent_at)] = outbox_rows(db_conn)
    assert to == "Sam@example.com" and "Confirm" in subject and sent_at is None
    page = client.get("/outbox").get_data(as_text=True)
    assert "Not sent (no mail server)" in page and subject in page
    message_id = db_conn.execute("SELECT id FROM outbox").fetchone()[0]
    shown = client.get(f"/outbox/{message_id}").get_data(as_text=True)
    html = client.get(f"/outbox/{message_id}/html")
    assert "Confirm my address" in html.get_data(as_text=True)
    assert "sandbox" in html.headers["Content-Security-Policy"]
    link = re.search(r'href="(http://127\.0\.0\.1:5000/settings/email/confirm\?t=[^"]+)"', shown).group(1)
    path = link.removeprefix("http://127.0.0.1:5000").replace("&amp;", "&")
    damaged = client.get(path[:-3] + "xyz")
    assert damaged.status_code == 400 and "incomplete or was changed" in damaged.get_data(as_text=True)
    assert client.get(path).status_code == 303
    assert db_conn.execute("SELECT email_verified_at IS NOT NULL FROM users WHERE spotify_id = 'sim-acct-sam'"
                           ).fetchone()[0]
    # Somebody else's mail is not theirs to read.
    other = app.test_client()
    sign_in(other, "sim-acct-riley")
    assert other.get(f"/outbox/{message_id}").status_code == 404
    assert other.get(f"/outbox/{message_id}/html").status_code == 404
    assert "No mail yet" in other.get("/outbox").get_data(as_text=True)


def test_a_confirmation_link_expires_and_is_void_once_the_address_changes(app, client, db_conn):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    db_conn.execute("UPDATE users SET email = 'sam@example.com' WHERE id = %s", (uid,))
    secret, now = app.config["SETTINGS"].secret_key, app.extensions["clock"]()
    old = sign(secret, "confirm-email", {"u": uid, "e": "sam@example.com"}, now - timedelta(seconds=1))
    assert client.get(f"/settings/email/confirm?t={old}").status_code == 410
    stale = sign(secret, "confirm-email", {"u": uid, "e": "previous@example.com"}, now + timedelta(days=1))
    assert client.get(f"/settings/email/confirm?t={stale}").status_code == 410
    wrong_purpose = sign(secret, "export-download", {"u": uid, "e": "sam@example.com"}, now + timedelta(days=1))
    assert client.get(f"/settings/email/confirm?t={wrong_purpose}").status_code == 400
    assert db_conn.execute("SELECT email_verified_at FROM users WHERE id = %s", (uid,)).fetchone()[0] is None


def test_confirmation_mails_are_capped_per_hour(app, client, db_conn, simulator):
    freeze(simulator)
    sign_in(client, "sim-acct-sam")
    token = csrf_token(client, "/settings")
    for n in range(5):
        assert client.post("/settings/email", data={"email": f"sam{n}@example.com", "csrf_token": token}
                           ).status_code == 303
    refused = client.post("/settings/email", data={"email": "victim@example.com", "csrf_token": token})
    assert refused.status_code == 400 and "the most there can be" in refused.get_data(as_text=True)
    assert db_conn.execute("SELECT count(*) FROM outbox WHERE to_address = 'victim@example.com'").fetchone()[0] == 0
    assert db_conn.execute("SELECT email FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0] == \
        "sam4@example.com", "a refused change leaves the address as it was"
    freeze(simulator, REFERENCE_MS + 61 * 60_000)  # an hour later
    assert client.post("/settings/email", data={"email": "sam@example.com", "csrf_token": token}).status_code == 303


def test_delivery_over_smtp_retries_until_the_server_answers_and_sends_once(app, smtp, db_conn, simulator):
    freeze(simulator)
    uid = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    database, clock = app.extensions["database"], app.extensions["clock"]
    with app.test_request_context("/"), database.session() as session:
        for _ in range(2):  # the same key twice: one message
            queue_email(session, key="hello:1", user_id=uid, to="sam@example.com", subject="Hello ünïcode",
                        template="confirm_email", now=clock(), name="Sam <b>", link="http://x/y", valid_hours=48)
    down = dataclasses.replace(app.config["SETTINGS"], smtp=SmtpSettings(host="127.0.0.1", port=free_port(),
                                                                          tls="opportunistic"))
    assert deliver_due(database, down, clock) == {"sent": 0, "failed": 1, "refused": 0, "over_quota": 0,
                                                   "uncertain": 0}
    attempts, error, next_at = db_conn.execute("SELECT attempts, last_error, next_attempt_at FROM outbox").fetchone()
    assert attempts == 1 and "Connection" in error and next_at == clock() + timedelta(minutes=1)
    up = dataclasses.replace(app.config["SETTINGS"], smtp=smtp.settings)
    assert deliver_due(database, up, clock)["sent"] == 0  # not due yet
    later = lambda: clock() + timedelta(minutes=2)  # noqa: E731
    assert deliver_due(database, up, later)["sent"] == 1
    assert deliver_due(database, up, later)["sent"] == 0
    [mail] = smtp.messages
    assert mail["To"] == "sam@example.com" and mail["Subject"] == "Hello ünïcode"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Hello Sam <b>" in text and "Sam &lt;b&gt;" in html and "<b>" not in html.replace("<body", "")


def test_an_export_is_mailed_to_a_confirmed_address_and_the_link_is_the_owners(app, smtp, workers, server, db_conn,
                                                                               simulator, importer):
    """Page -> real worker -> real SMTP -> the link downloads for its owner only."""
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Streaming_History_Audio_0.json", json.dumps(synthetic_history(500, years=1, tracks=80,
                                                                                        artists=20)[0]))
    assert importer(users["sim-acct-sam"], {"h.zip": buffer.getvalue()}).status == "done"
    db_conn.execute("UPDATE users SET email = 'sam@example.com', email_verified_at = now() WHERE id = %s",
                    (users["sim-acct-sam"],))
    db_conn.execute("UPDATE users SET email = 'riley@example.com' WHERE id = %s", (users["sim-acct-riley"],))
    workers(SMTP_URL=smtp.url)
    sam = http_sign_in(server.url, "sim-acct-sam")
    token = re.search(r'name="csrf_token" value="([^"]+)"', sam.get(f"{server.url}/export").text).group(1)
    assert sam.post(f"{server.url}/export", data={"csrf_token": token, "format": "csv"}).status_code == 200
    wait_for(lambda: smtp.messages, timeout=60, message="the export mail")
    [mail] = smtp.messages
    assert mail["To"] == "sam@example.com" and "export is ready" in mail["Subject"]
    link = link_in(mail.get_body(("plain",)).get_content(), server.url)
    assert link_in(mail.get_body(("html",)).get_content(), server.url) == link
    download = sam.get(link)
    assert download.status_code == 200 and download.content.startswith(b"\xef\xbb\xbf")
    # Another user: not found. Signed out: sign in, then straight back to the file.
    riley = http_sign_in(server.url, "sim-acct-riley")
    assert riley.get(link).status_code == 404
    stranger = requests.Session()
    assert stranger.get(link, allow_redirects=False).status_code == 302
    authorize = stranger.get(f"{server.url}/auth/login", allow_redirects=False).headers["Location"]
    back = stranger.get(f"{server.url}{callback_path(consent(authorize, 'sim-acct-sam'))}")
    assert back.url == link and back.status_code == 200 and back.content == download.content
    # Damaged: a clear page, no file.
    damaged = sam.get(link[:-2] + "zz")
    assert damaged.status_code == 400 and "incomplete or was changed" in damaged.text
    # Riley's address is not confirmed: their export mails nobody.
    riley_token = re.search(r'name="csrf_token" value="([^"]+)"', riley.get(f"{server.url}/export").text).group(1)
    riley.post(f"{server.url}/export", data={"csrf_token": riley_token, "format": "json"})
    wait_for(lambda: db_conn.execute("SELECT count(*) FROM exports WHERE status = 'done'").fetchone()[0] == 2,
             timeout=60, message="riley's export")
    assert db_conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1 and len(smtp.messages) == 1
