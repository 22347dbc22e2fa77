"""Seats and the waitlist: the cap holds under racing sign-ups through the real OAuth flow,
the waitlist is double opt-in and idempotent, invitations admit their holder once, and
limits hold in Postgres."""

from __future__ import annotations

import dataclasses
import re
import threading
from datetime import timedelta

import requests
from conftest import REFERENCE_MS, add_users, callback_path, consent, csrf_token, freeze, listeners
from test_email import Inbox, link_in, smtp  # noqa: F401 - the fixture is shared

from app.account.leaving import delete_account
from app.email.delivery import deliver_due
from app.email.outbox import mail_context
from app.membership import seats, waitlist

RACERS = 50


def set_cap(app, value: int) -> None:
    with app.extensions["database"].session() as session:
        seats.set_cap(session, value)


def race(base: str, accounts: list[str]) -> list[str]:
    """Every account starts a sign-in and consents; then all callbacks at once. Each
    thread says where its browser landed: the dashboard or the waitlist."""
    outcomes: list[str] = [""] * len(accounts)
    ready = threading.Barrier(len(accounts))

    def one(n: int, account: str) -> None:
        browser = requests.Session()
        try:
            start = browser.get(f"{base}/auth/login", allow_redirects=False, timeout=30)
            location = start.headers["Location"]
            callback = None if "/waitlist" in location else callback_path(consent(location, account))
            ready.wait(timeout=60)
            if callback is None:
                outcomes[n] = "waitlist (before Spotify)"
                return
            landed = browser.get(f"{base}{callback}", timeout=60)
            outcomes[n] = "member" if landed.url.endswith("/dashboard") else \
                "waitlist" if "/waitlist" in landed.url and "all of them are taken" in landed.text else landed.url
        except Exception as exc:  # noqa: BLE001 - reported by the assertion
            outcomes[n] = f"error: {exc!r}"

    threads = [threading.Thread(target=one, args=(n, a)) for n, a in enumerate(accounts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_racing_sign_ups_never_take_more_seats_than_there_are(app, server, simulator, db_conn):
    freeze(simulator)
    members = add_users(app, simulator, ["sim-acct-riley", "sim-acct-sam"])
    accounts = listeners(RACERS)
    for round_ in range(10):
        set_cap(app, len(members) + 3)  # three seats left
        db_conn.execute("DELETE FROM rate_limits")  # 51 sign-ins a round from one address: not what this tests
        outcomes = race(server.url, accounts)
        admitted = [a for a, o in zip(accounts, outcomes) if o == "member"]
        assert len(admitted) == 3 and all(o.startswith("waitlist") for o in outcomes if o != "member"), outcomes
        count = db_conn.execute("SELECT count(*) FROM users WHERE member_number IS NOT NULL").fetchone()[0]
        assert count == len(members) + 3, f"round {round_}: {count} members for {len(members) + 3} seats"
        assert db_conn.execute("SELECT count(*) FROM users").fetchone()[0] == count, "no account without a seat"
        # Existing members always get in, full or not.
        browser = requests.Session()
        authorize = browser.get(f"{server.url}/auth/login?member=1", allow_redirects=False).headers["Location"]
        assert browser.get(f"{server.url}{callback_path(consent(authorize, 'sim-acct-riley'))}").url.endswith(
            "/dashboard")
        with app.extensions["database"].session() as session:  # their seats free up for the next round
            for user_id, in session.execute(seats.sa.text(
                    "SELECT id FROM users WHERE spotify_id LIKE 'sim-acct-0%'")).all():
                delete_account(session, user_id)


def test_a_full_instance_sends_newcomers_to_the_waitlist_before_spotify(app, client, simulator, db_conn):
    freeze(simulator)
    add_users(app, simulator, ["sim-acct-riley"])
    set_cap(app, 1)
    landing = client.get("/").get_data(as_text=True)
    assert "Join the waitlist" in landing and "Sign in with Spotify" in landing  # members still can
    response = client.get("/auth/login")
    assert response.status_code == 302 and "/waitlist" in response.headers["Location"]
    assert "all of them are taken" in client.get("/waitlist").get_data(as_text=True)
    set_cap(app, 3)
    assert "<strong>2</strong> founding-member seats left" in client.get("/").get_data(as_text=True)


def test_the_waitlist_journey_over_smtp(app, smtp, server, simulator, db_conn):  # noqa: F811
    """Sign up -> confirmation mail -> confirm -> position; a member leaves -> the job
    invites the first in line -> the invitation admits them once."""
    freeze(simulator)
    members = add_users(app, simulator, ["sim-acct-riley", "sim-acct-sam"])
    set_cap(app, 2)
    settings = dataclasses.replace(app.config["SETTINGS"], smtp=smtp.settings)
    database, clock = app.extensions["database"], app.extensions["clock"]
    visitor = requests.Session()
    page = visitor.get(f"{server.url}/waitlist").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    for address in ("first@example.org", "second@example.org", "FIRST@example.org"):  # the third changes nothing
        joined = visitor.post(f"{server.url}/waitlist", data={"email": address, "csrf_token": token})
        assert joined.status_code == 200 and "Check your inbox" in joined.text
    refused = visitor.post(f"{server.url}/waitlist", data={"email": "not an address", "csrf_token": token})
    assert refused.status_code == 400 and "does not look like an email address" in refused.text
    # One each: joining again at the same moment is the same message (keyed by entry and time).
    assert deliver_due(database, settings, clock)["sent"] == 2
    assert db_conn.execute("SELECT count(*) FROM waitlist").fetchone()[0] == 2
    mails = {m["To"]: m for m in smtp.messages}
    first = mails["first@example.org"]
    assert first["List-Unsubscribe"].startswith("<http") and "/waitlist/leave" in first["List-Unsubscribe"]
    for n, address in enumerate(("second@example.org", "first@example.org")):  # second confirms first
        freeze(simulator, REFERENCE_MS + n * 60_000)
        confirmed = visitor.get(link_in(mails[address].get_body(("plain",)).get_content(), server.url))
        assert confirmed.status_code == 200
    main = confirmed.text[confirmed.text.index("<main"):confirmed.text.index("</main>")]
    assert "#2" in main and "number 2 in line" in main, main

    with mail_context(app), database.session() as session:  # full: nobody is invited
        assert waitlist.invite_next(session, default_cap=2, secret=settings.secret_key, now=clock(), days=7) == 0
        delete_account(session, members["sim-acct-sam"])  # a seat frees up
    with mail_context(app), database.session() as session:
        assert waitlist.invite_next(session, default_cap=2, secret=settings.secret_key, now=clock(), days=7) == 1
    assert deliver_due(database, settings, clock)["sent"] == 1
    invitation = smtp.messages[-1]
    assert invitation["To"] == "second@example.org" and "seat" in invitation["Subject"]
    invite_link = link_in(invitation.get_body(("plain",)).get_content(), server.url)

    # The invitation lets its holder through the cap, once.
    newcomer = requests.Session()
    assert "Your seat is ready" in newcomer.get(invite_link).text
    authorize = newcomer.get(f"{server.url}/auth/login", allow_redirects=False).headers["Location"]
    landed = newcomer.get(f"{server.url}{callback_path(consent(authorize, 'sim-acct-jo'))}")
    assert landed.url.endswith("/dashboard") and "Founding member" in landed.text
    again = requests.Session().get(invite_link)
    assert again.status_code == 410 and "works once" in again.text
    assert db_conn.execute("SELECT count(*) FROM users WHERE member_number IS NOT NULL").fetchone()[0] == 2

    # An expired invitation is refused with a clear page, and its seat goes to the next in line.
    with mail_context(app), database.session() as session:
        entry = session.scalar(seats.sa.select(waitlist.WaitlistEntry).where(
            waitlist.WaitlistEntry.email == "first@example.org"))
        waitlist.invite(session, entry, secret=settings.secret_key, now=clock() - timedelta(days=8), days=7)
    deliver_due(database, settings, clock)
    stale = requests.Session().get(link_in(smtp.messages[-1].get_body(("plain",)).get_content(), server.url))
    assert stale.status_code == 410 and "expired" in stale.text

    # Leaving: the link in every mail removes the address.
    leave = link_in(first["List-Unsubscribe"].strip("<>"), server.url)
    form = visitor.get(leave).text
    left = visitor.post(f"{server.url}/waitlist/leave", data={
        "t": re.search(r'name="t" value="([^"]+)"', form).group(1),
        "csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)})
    assert left.status_code == 200 and "You left the waitlist" in left.text
    assert db_conn.execute("SELECT count(*) FROM waitlist WHERE email = 'first@example.org'").fetchone()[0] == 0


def test_waitlist_sign_ups_are_limited_per_address_and_per_client(app, client, db_conn):
    token = csrf_token(client, "/waitlist")
    for _ in range(3):
        assert client.post("/waitlist", data={"email": "again@example.org", "csrf_token": token}).status_code == 303
    limited = client.post("/waitlist", data={"email": "again@example.org", "csrf_token": token})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 3600
    assert "Too many attempts" in limited.get_data(as_text=True)
    assert db_conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 3
    for n in range(16):
        client.post("/waitlist", data={"email": f"n{n}@example.org", "csrf_token": token})
    assert client.post("/waitlist", data={"email": "new@example.org", "csrf_token": token}).status_code == 429
    assert db_conn.execute("SELECT count(*) FROM waitlist WHERE email = 'new@example.org'").fetchone()[0] == 0


def test_operators_manage_seats_and_the_waitlist_from_the_command_line(app, worker_env, db_conn):
    from conftest import cli

    db_conn.execute("INSERT INTO waitlist (email, created_at, confirmed_at) VALUES "
                    "('a@example.org', now(), now() - interval '2 minutes'), ('b@example.org', now(), now())")
    shown = cli("waitlist", "seats", "--cap", "7", env=worker_env)
    assert shown.returncode == 0 and "7 seats: 0 taken, 0 held for invitations, 7 free." in shown.stdout, shown.stderr
    listed = cli("waitlist", "list", env=worker_env)
    assert "a@example.org" in listed.stdout and "#1 in line" in listed.stdout and "#2 in line" in listed.stdout
    b = db_conn.execute("SELECT id FROM waitlist WHERE email = 'b@example.org'").fetchone()[0]
    invited = cli("waitlist", "invite", str(b), env=worker_env)
    assert invited.returncode == 0 and "Invited b@example.org" in invited.stdout, invited.stderr
    assert db_conn.execute("SELECT count(*) FROM outbox WHERE to_address = 'b@example.org'").fetchone()[0] == 1
    assert "invited, until" in cli("waitlist", "list", env=worker_env).stdout
    assert cli("waitlist", "remove", str(b), env=worker_env).returncode == 0
    missing = cli("waitlist", "remove", str(b), env=worker_env)
    assert missing.returncode == 1 and f"no entry {b}" in missing.stderr
