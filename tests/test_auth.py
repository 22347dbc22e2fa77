"""Sign-in with Spotify (the simulator, over real HTTP) and sign-out."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import callback_path, consent, csrf_token, sign_in, start_sign_in


def users(db_conn):
    return db_conn.execute(
        "SELECT id, spotify_id, spotify_user_id, display_name, status, authorized_at FROM users ORDER BY id"
    ).fetchall()


def test_sign_in_creates_the_user_and_greets_them(client, db_conn, simulator):
    response = sign_in(client, "sim-acct-sam")
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard")
    [(user_id, spotify_id, spotify_user_id, name, status, authorized_at)] = users(db_conn)
    assert (spotify_id, spotify_user_id, name, status) == ("sim-acct-sam", "sam.binge", "Sam Binge", "active")
    assert datetime.now(timezone.utc) - authorized_at < timedelta(minutes=1)
    assert db_conn.execute("SELECT count(*) FROM archive_state WHERE user_id = %s", (user_id,)).fetchone()[0] == 1
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Hello, Sam Binge" in page
    assert "No plays archived yet" in page


def test_profiles_without_account_id_are_keyed_by_id(client, db_conn, simulator):
    sign_in(client, "legacy.lee")
    assert [(u[1], u[2]) for u in users(db_conn)] == [("legacy.lee", "legacy.lee")]


def test_signing_in_again_updates_the_same_user(client, app, db_conn, simulator):
    sign_in(client, "sim-acct-riley")
    db_conn.execute("UPDATE users SET status = 'reauth_required', authorized_at = now() - interval '100 days'")
    other_browser = app.test_client()
    sign_in(other_browser, "sim-acct-riley")
    [(_, _, _, _, status, authorized_at)] = users(db_conn)
    assert status == "active"
    assert datetime.now(timezone.utc) - authorized_at < timedelta(minutes=1)


def test_a_user_created_ahead_by_legacy_id_is_linked_on_sign_in(client, db_conn, simulator):
    db_conn.execute("INSERT INTO users (spotify_id, display_name) VALUES ('riley.demo', 'Riley (pre-made)')")
    sign_in(client, "sim-acct-riley")
    assert [(u[1], u[3]) for u in users(db_conn)] == [("sim-acct-riley", "Riley Demo")]


def test_denied_consent_ends_on_a_friendly_page(client, db_conn, simulator):
    callback = consent(start_sign_in(client), decision="cancel")
    response = client.get(callback_path(callback))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "You chose not to connect Spotify" in page and "Try again" in page
    assert "Traceback" not in page
    assert users(db_conn) == []


def test_a_state_that_does_not_match_ends_on_a_friendly_page(client, app, db_conn, simulator):
    callback = consent(start_sign_in(client))
    forged = callback_path(callback).replace("state=", "state=forged")
    response = client.get(forged)
    assert response.status_code == 400
    assert "This sign-in link has expired" in response.get_data(as_text=True)
    # A callback arriving in a browser that never started a sign-in is the same story.
    response = app.test_client().get(callback_path(consent(start_sign_in(client))))
    assert response.status_code == 400 and "This sign-in link has expired" in response.get_data(as_text=True)
    assert users(db_conn) == []


def test_a_code_spotify_will_not_exchange_ends_on_a_friendly_page(client, db_conn, simulator):
    authorize = start_sign_in(client)
    callback = callback_path(consent(authorize))
    spent = callback.replace("code=", "code=spent")
    response = client.get(spent)
    assert response.status_code == 400
    assert "Spotify did not accept the sign-in" in response.get_data(as_text=True)
    assert users(db_conn) == []


def test_accounts_missing_from_the_allow_list_are_told_to_ask_the_admin(client, db_conn, simulator):
    response = sign_in(client, "sim-acct-dana")
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "only serves allow-listed accounts; ask its admin" in page
    assert users(db_conn) == []


def test_spotify_errors_during_sign_in_end_on_a_friendly_page(client, db_conn, simulator):
    simulator.call("POST", "/_sim/faults", json={"rules": [{"kind": "server_error", "endpoints": ["me"]}]})
    response = sign_in(client, "sim-acct-riley")
    assert response.status_code == 503
    assert "Spotify is unavailable" in response.get_data(as_text=True)
    assert users(db_conn) == []


def test_dashboard_requires_sign_in(client, database_url):
    response = client.get("/dashboard")
    assert response.status_code == 302 and response.headers["Location"] == "/"  # where to go next: in the session


def test_signing_in_returns_to_the_page_that_asked_for_it(client, simulator, database_url):
    assert client.get("/history?q=abc").status_code == 302
    landed = sign_in(client)
    assert landed.status_code == 302 and landed.headers["Location"] == "/history?q=abc"


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example/"])
def test_sign_in_never_sends_people_to_another_site(client, simulator, database_url, target):
    with client.session_transaction() as session:
        session["next"] = target
    landed = sign_in(client)
    assert landed.headers["Location"] == "/dashboard"


def test_sign_out_needs_a_post_with_a_csrf_token(client, simulator, database_url):
    sign_in(client)
    assert client.get("/auth/logout").status_code == 405
    refused = client.post("/auth/logout")
    assert refused.status_code == 400 and "This page has expired" in refused.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 200  # still signed in

    token = csrf_token(client, "/dashboard")
    response = client.post("/auth/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert client.get("/dashboard").status_code == 302


def test_reauthorisation_is_offered_when_needed(client, db_conn, simulator):
    sign_in(client)
    db_conn.execute("UPDATE users SET status = 'reauth_required'")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Re-authorise with Spotify" in page
    # The link starts a new consent round trip even though the user is signed in.
    response = client.get("/auth/login?reauthorise=1")
    assert response.status_code == 302 and response.headers["Location"].startswith(simulator.url)
    client.get(callback_path(consent(response.headers["Location"])))
    assert users(db_conn)[0][4] == "active"
