"""Archival with real worker processes: crashes, poison pills, rate limits, token rotation."""

from __future__ import annotations

import time

import psycopg

from app import queue
from conftest import add_users, archived, freeze, listeners, wait_for, wall_clock_ms, window


def defer_batch(database_url, user_ids, dispatched_at=None):
    with psycopg.connect(database_url, autocommit=True) as conn:
        queue.defer(queue.POLL_BATCH, conn, {"user_ids": list(user_ids), "dispatched_at": dispatched_at})


def keep_dispatcher_away(db_conn):
    """Only the jobs a test defers should poll: nobody is due for a day."""
    db_conn.execute("UPDATE archive_state SET next_poll_at = now() + interval '1 day'")


def batch_jobs(db_conn, status: str) -> int:
    return db_conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'jobs.archival.poll_batch' "
                           "AND status = %s", (status,)).fetchone()[0]


def polled(db_conn, ids) -> int:
    return db_conn.execute("SELECT count(*) FROM archive_state WHERE last_success_at IS NOT NULL "
                           "AND user_id = ANY(%s)", (list(ids),)).fetchone()[0]


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(app, simulator, db_conn, database_url, workers):
    now = freeze(simulator, wall_clock_ms())
    keys = listeners(50)
    users = add_users(app, simulator, keys)
    keep_dispatcher_away(db_conn)
    simulator.world.config.latency_ms = 150  # a batch of 50 takes several seconds
    defer_batch(database_url, users.values())

    first = workers()
    wait_for(lambda: polled(db_conn, users.values()) >= 10, message="ten users polled")
    first.kill()  # SIGKILL: no cleanup, its job stays `doing`
    done_at_kill = polled(db_conn, users.values())
    assert 10 <= done_at_kill < 50
    assert batch_jobs(db_conn, "doing") == 1

    workers()  # a new worker notices the silence and retries the stalled job
    wait_for(lambda: polled(db_conn, users.values()) == 50, timeout=90, message="all 50 users polled")
    for key, user_id in users.items():
        assert archived(db_conn, user_id) == window(simulator, key, now)
    total = db_conn.execute("SELECT count(*), count(DISTINCT (user_id, track_id, played_at)) FROM plays").fetchone()
    assert total == (50 * 50, 50 * 50)


def test_one_poison_pill_in_a_batch_of_50(app, simulator, db_conn, database_url, workers):
    now = freeze(simulator, wall_clock_ms())
    keys = listeners(50)
    users = add_users(app, simulator, keys)
    keep_dispatcher_away(db_conn)
    poison = keys[17]
    simulator.call("POST", "/_sim/faults", json={"account": poison, "rules": [{"kind": "malformed"}]})
    defer_batch(database_url, users.values())
    workers()
    wait_for(lambda: batch_jobs(db_conn, "succeeded") == 1, message="the batch job finished")
    for key, user_id in users.items():
        expected = set() if key == poison else window(simulator, key, now)
        assert len(expected) == (0 if key == poison else 50)
        assert archived(db_conn, user_id) == expected
    failure = db_conn.execute("SELECT consecutive_failures, last_failure_kind, last_failure_message FROM "
                              "archive_state WHERE user_id = %s", (users[poison],)).fetchone()
    assert failure[:2] == (1, "bad_data") and "JSON" in failure[2]


def test_a_429_pauses_every_worker_then_polling_resumes(app, simulator, db_conn, database_url, workers):
    freeze(simulator, wall_clock_ms())
    ids = list(add_users(app, simulator, listeners(40)).values())
    keep_dispatcher_away(db_conn)
    simulator.world.config.latency_ms = 50
    workers(), workers()
    defer_batch(database_url, ids[:10])
    wait_for(lambda: polled(db_conn, ids[:10]) == 10, message="warm-up polls")

    simulator.call("POST", "/_sim/faults", json={"rules": [
        {"kind": "rate_limit", "retry_after": 6, "remaining": 1, "endpoints": ["recently_played"]}]})
    defer_batch(database_url, ids[10:25])
    defer_batch(database_url, ids[25:])
    paused_until = float(wait_for(lambda: db_conn.execute(
        "SELECT extract(epoch FROM paused_until) FROM api_budget WHERE paused_until IS NOT NULL").fetchone(),
        message="the app-wide pause")[0])

    # Everyone is archived in the end; the user who met the 429 is rescheduled, not failed.
    wait_for(lambda: polled(db_conn, ids) == 40, timeout=90, message="all users archived after the pause")
    requests = [t for t, endpoint in simulator.call("GET", "/_sim/requests").json() if endpoint == "recently_played"]
    # A request already on its way when the 429 arrived may land just after it: allow 1 s.
    during = [t for t in requests if paused_until - 6 + 1.0 < t < paused_until - 0.1]
    assert during == [], "requests reached Spotify during the pause"
    assert any(t >= paused_until for t in requests), "polling resumed after the pause"
    assert db_conn.execute("SELECT count(*) FROM archive_state WHERE consecutive_failures > 0").fetchone()[0] == 0


def test_two_workers_refreshing_rotated_tokens_never_revoke_each_other(app, simulator, db_conn, database_url,
                                                                        workers):
    freeze(simulator, wall_clock_ms())
    simulator.world.config.rotate_refresh_tokens = True
    simulator.world.config.latency_ms = 100
    keys = listeners(10)
    users = add_users(app, simulator, keys)
    keep_dispatcher_away(db_conn)
    db_conn.execute("UPDATE spotify_tokens SET expires_at = now() + interval '1 minute'")  # all need a refresh
    workers(), workers()
    defer_batch(database_url, users.values())
    defer_batch(database_url, list(users.values())[::-1])  # the same users, from the other end
    wait_for(lambda: batch_jobs(db_conn, "succeeded") == 2, message="both batches finished")
    stats = simulator.stats()
    assert [stats.get(f"token:refresh:{key}", 0) for key in keys] == [1] * 10
    assert db_conn.execute("SELECT count(*) FROM users WHERE status = 'active'").fetchone()[0] == 10
    assert polled(db_conn, users.values()) == 10


def test_invalid_grant_stops_calls_for_that_user_for_good(app, simulator, db_conn, database_url, workers):
    freeze(simulator, wall_clock_ms())
    users = add_users(app, simulator, ["sim-acct-jo", "sim-acct-riley"])
    simulator.call("POST", "/_sim/accounts/sim-acct-jo/revoke")
    db_conn.execute("UPDATE spotify_tokens SET expires_at = now()")
    db_conn.execute("UPDATE archive_state SET next_poll_at = now()")  # due: the dispatcher hands them out
    workers()
    wait_for(lambda: db_conn.execute("SELECT status FROM users WHERE id = %s", (users["sim-acct-jo"],)
                                     ).fetchone()[0] == "reauth_required", message="reauth_required")
    wait_for(lambda: polled(db_conn, [users["sim-acct-riley"]]) == 1, message="riley polled")
    db_conn.execute("UPDATE archive_state SET next_poll_at = now()")  # due again...
    time.sleep(25)  # ...for more than one dispatcher cycle
    stats = simulator.stats()
    assert stats["token:refresh:sim-acct-jo"] == 1
    assert stats.get("api:recently_played:sim-acct-jo", 0) == 0
    assert stats.get("api:recently_played:sim-acct-riley", 0) >= 2  # the others carry on
