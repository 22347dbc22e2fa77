"""One poll, in process: real Postgres, the simulator over real HTTP, a frozen simulator clock."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from app.archival import poll as poll_module
from app.archival import store
from app.archival.poll import Archivist, poll_batch, poll_user
from app.time import utcnow
from conftest import REFERENCE_MS, add_users, archived, cli, freeze, listeners, sign_in, window

HOUR_MS = 3_600_000


@pytest.fixture
def archivist(app) -> Archivist:
    return Archivist.from_app(app)


def app_now(app):
    return app.extensions["clock"]()


def state(db_conn, user_id):
    return db_conn.execute(
        "SELECT cursor_played_at, next_poll_at, consecutive_failures, last_failure_kind, circuit_open_until, "
        "last_success_at, peak_per_hour FROM archive_state WHERE user_id = %s", (user_id,)).fetchone()


def table_counts(db_conn):
    return {t: db_conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("plays", "tracks", "albums", "artists", "track_artists", "gaps")}


def test_a_poll_archives_what_spotify_shows_with_its_catalogue(app, archivist, simulator, db_conn):
    now = freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]
    result = poll_user(archivist, user)

    expected = window(simulator, "sim-acct-riley", now)
    assert result.outcome == "archived" and result.items == 50 and result.new_plays == len(expected) == 50
    assert archived(db_conn, user) == expected
    assert db_conn.execute("SELECT DISTINCT source FROM plays").fetchall() == [(1,)]
    # The catalogue came from the embedded track objects, linked in artist order.
    orphans = db_conn.execute("SELECT count(*) FROM tracks t WHERE NOT EXISTS "
                              "(SELECT 1 FROM track_artists ta WHERE ta.track_id = t.id AND ta.position = 0)")
    assert orphans.fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM tracks WHERE album_id IS NULL").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM albums WHERE image_url IS NULL").fetchone()[0] == 0

    cursor, next_poll_at, failures, _, _, last_success, peak = state(db_conn, user)
    assert int(cursor.timestamp() * 1000) == max(ms for _, ms in expected)
    assert timedelta(minutes=2) < next_poll_at - app_now(app) <= timedelta(minutes=60)
    assert failures == 0 and last_success is not None and peak > 0


def test_polling_the_same_moment_twice_changes_nothing(app, archivist, simulator, db_conn):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    assert poll_user(archivist, user).new_plays == 50
    before = table_counts(db_conn), archived(db_conn, user)
    again = poll_user(archivist, user)
    assert again.outcome == "archived" and again.new_plays == 0
    assert (table_counts(db_conn), archived(db_conn, user)) == before


def test_new_plays_between_polls_are_added_and_nothing_is_lost(app, archivist, simulator, db_conn):
    world = simulator.world
    world.config.access_token_ttl_s = 86_400  # outlive the simulated hours
    sam = world.account("sim-acct-sam")
    start = REFERENCE_MS  # the next hour in which Sam plays at least ten tracks
    while len([p for p in world.plays_between(sam, start, start + HOUR_MS) if p.visible]) < 10:
        start += HOUR_MS
    freeze(simulator, start)
    user = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    poll_user(archivist, user)
    for step in range(1, 7):  # every 10 minutes for an hour
        freeze(simulator, start + step * 600_000)
        poll_user(archivist, user)
    truth = set()
    for step in range(7):
        truth |= window(simulator, "sim-acct-sam", start + step * 600_000)
    assert len(truth) > 50  # plays happened between the polls: this is not the first window again
    assert archived(db_conn, user) == truth


def test_more_than_50_plays_between_polls_records_a_gap(app, archivist, simulator, db_conn, client):
    world = simulator.world
    world.config.access_token_ttl_s = 86_400  # outlive the clock jumps
    sam = world.account("sim-acct-sam")
    # Find a moment after which Sam (a binge listener) plays more than 50 tracks in two hours.
    t0 = world.clock.now_ms() - 3 * 86_400_000
    while len([p for p in world.plays_between(sam, t0, t0 + 2 * HOUR_MS) if p.visible]) <= 60:
        t0 += HOUR_MS
    freeze(simulator, t0)
    user = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    poll_user(archivist, user)
    cursor = max(ms for _, ms in archived(db_conn, user))
    freeze(simulator, t0 + 2 * HOUR_MS)
    result = poll_user(archivist, user)

    oldest_seen = min(ms for _, ms in window(simulator, "sim-acct-sam", t0 + 2 * HOUR_MS))
    assert result.gap is not None and (result.gap.starts_ms, result.gap.ends_ms) == (cursor, oldest_seen)
    gap = db_conn.execute("SELECT (extract(epoch FROM starts_at) * 1000)::bigint, "
                          "(extract(epoch FROM ends_at) * 1000)::bigint, reason FROM gaps WHERE user_id = %s",
                          (user,)).fetchall()
    assert gap == [(cursor, oldest_seen, gap[0][2])] and "more than 50 plays" in gap[0][2]

    sign_in(client, "sim-acct-sam")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "1 possible gap" in page and "Importing your Spotify data export</a> fills these in" in page


def test_a_crash_mid_poll_leaves_nothing_behind(app, archivist, simulator, db_conn, monkeypatch):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]
    real_upsert = store.upsert_tracks

    def upsert_then_crash(session, tracks):
        real_upsert(session, tracks)  # catalogue written inside the poll's transaction...
        raise RuntimeError("simulated crash after the catalogue upsert")

    monkeypatch.setattr(store, "upsert_tracks", upsert_then_crash)
    result = poll_user(archivist, user)
    assert result.outcome == "failed" and result.failure_kind == "unknown"
    assert table_counts(db_conn) == {"plays": 0, "tracks": 0, "albums": 0, "artists": 0, "track_artists": 0,
                                     "gaps": 0}  # ...and rolled back with it
    cursor, _, failures, kind, *_ = state(db_conn, user)
    assert cursor is None and failures == 1 and kind == "unknown"

    monkeypatch.setattr(store, "upsert_tracks", real_upsert)
    assert poll_user(archivist, user).new_plays == 50  # the next poll recovers everything


def test_one_users_poison_never_stops_a_batch(app, archivist, simulator, db_conn, monkeypatch):
    now = freeze(simulator)
    keys = listeners(5)
    users = add_users(app, simulator, keys)
    poison = users[keys[2]]
    real_store = store.store_plays

    def store_unless_poison(session, user_id, plays):
        if user_id == poison:
            session.execute(__import__("sqlalchemy").text("SELECT 1/0"))  # a database error mid-transaction
        return real_store(session, user_id, plays)

    monkeypatch.setattr(poll_module, "store_plays", store_unless_poison)
    results = poll_batch(archivist, list(users.values()))
    assert [r.outcome for r in results] == ["archived", "archived", "failed", "archived", "archived"]
    for key, user_id in users.items():
        expected = set() if user_id == poison else window(simulator, key, now)
        assert len(expected) == (0 if user_id == poison else 50)
        assert archived(db_conn, user_id) == expected
    assert state(db_conn, poison)[3] == "unknown"


def test_failures_are_classified_and_rate_limits_pause_the_app_not_the_user(app, archivist, simulator, db_conn):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]

    def fault(kind, **extra):
        simulator.call("POST", "/_sim/faults", json={"account": "sim-acct-riley", "rules": [
            {"kind": kind, "remaining": 1, "endpoints": ["recently_played"], **extra}]})
        return poll_user(archivist, user)

    first = fault("server_error")
    assert (first.outcome, first.failure_kind) == ("failed", "spotify_5xx")
    _, next_poll_at, count, _, circuit, *_ = state(db_conn, user)
    assert count == 1 and circuit is None and next_poll_at - app_now(app) <= timedelta(minutes=1)  # quick retry
    second = fault("server_error")
    _, next_poll_at, count, _, circuit, *_ = state(db_conn, user)
    assert count == 2 and circuit is not None and timedelta(minutes=5) < next_poll_at - app_now(app) <= timedelta(minutes=10)
    assert second.failure_kind == "spotify_5xx"

    assert fault("malformed").failure_kind == "bad_data"
    assert state(db_conn, user)[2] == 1  # a different class starts a new run

    limited = fault("rate_limit", retry_after=120)
    assert limited.outcome == "paused"
    paused_until = db_conn.execute("SELECT paused_until FROM api_budget").fetchone()[0]
    # A pause is Spotify's, in real time (the database's clock), whatever the app's clock says.
    assert timedelta(seconds=115) < paused_until - utcnow() <= timedelta(seconds=120)
    assert state(db_conn, user)[2:4] == (1, "bad_data")  # the 429 counted against nobody
    assert limited.next_poll_at >= paused_until
    # While paused, nothing reaches Spotify: the poll stops at the budget.
    calls = simulator.stats().get("api:recently_played", 0)
    assert poll_user(archivist, user).outcome == "paused"
    assert simulator.stats().get("api:recently_played", 0) == calls


def test_a_rejected_access_token_is_refreshed_on_the_next_attempt(app, archivist, simulator, db_conn):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]
    simulator.call("POST", "/_sim/faults", json={"account": "sim-acct-riley", "rules": [
        {"kind": "unauthorized", "remaining": 1}]})
    assert poll_user(archivist, user).failure_kind == "auth"
    assert poll_user(archivist, user).outcome == "archived"
    assert simulator.stats()["token:refresh:sim-acct-riley"] == 1


def test_repeated_auth_failures_deactivate_and_sign_in_restarts(app, archivist, simulator, db_conn, client):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]
    simulator.call("POST", "/_sim/faults", json={"account": "sim-acct-riley", "rules": [{"kind": "unauthorized"}]})
    outcomes = [poll_user(archivist, user).outcome for _ in range(3)]
    assert outcomes == ["failed", "failed", "failed"]
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (user,)).fetchone()[0] == "deactivated"
    assert poll_user(archivist, user).outcome == "skipped"

    simulator.call("DELETE", "/_sim/faults")
    sign_in(client, "sim-acct-riley")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Collecting" in page
    assert state(db_conn, user)[2] == 0
    assert poll_user(archivist, user).outcome == "archived"


def test_invalid_grant_means_reauthorisation_and_no_more_calls(app, archivist, simulator, db_conn, client):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    simulator.call("POST", "/_sim/accounts/sim-acct-jo/revoke")
    db_conn.execute("UPDATE spotify_tokens SET expires_at = %s WHERE user_id = %s", (app_now(app), user))
    assert poll_user(archivist, user).outcome == "reauth_required"
    calls = simulator.stats()
    for _ in range(3):
        assert poll_user(archivist, user).outcome == "skipped"
    assert simulator.stats() == calls and calls["token:refresh:sim-acct-jo"] == 1
    sign_in(client, "sim-acct-jo")
    db_conn.execute("UPDATE users SET status = 'reauth_required' WHERE id = %s", (user,))
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Re-authorisation needed" in page and "Re-authorise with Spotify" in page


def test_archive_command_polls_one_user_and_says_what_it_did(app, simulator, db_conn, database_url):
    from conftest import app_environ, wall_clock_ms

    freeze(simulator, wall_clock_ms())  # the command runs on the wall clock
    user = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    env = app_environ(database_url, simulator.url)
    env["TOKEN_ENCRYPTION_KEY"] = app.config["SETTINGS"].token_encryption_keys[0]
    result = cli("archive", "--user", "sim-acct-sam", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "Polled Sam Binge (sim-acct-sam): Spotify showed 50 plays, 50 of them new."
    assert any(line.startswith("Next poll: ") for line in lines)
    summary = json.loads(lines[-1])
    assert summary["outcome"] == "archived" and summary["new_plays"] == 50 and summary["user_id"] == user

    missing = cli("archive", "--user", "nobody-here", env=env)
    assert missing.returncode == 1 and "no user 'nobody-here'" in missing.stderr
