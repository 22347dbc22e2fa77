"""The dispatcher: due users, claimed once, deferred in batches in one transaction."""

from __future__ import annotations


import pytest

from app.archival.budget import Budget
from app.archival.dispatch import dispatch_due
from app.config import ArchivalSettings
from app.time import utcnow
from conftest import add_users, listeners


@pytest.fixture
def users(app, simulator):
    return add_users(app, simulator, listeners(12))


def run(app, settings=None, defer=None):
    settings = settings or ArchivalSettings(users_per_job=5)
    batches = []

    def capture(session, groups, dispatched_at):
        batches.extend(groups)

    database = app.extensions["database"]
    count = dispatch_due(database, Budget(database, settings), settings, utcnow(), defer or capture)
    return count, batches


def test_due_users_are_dispatched_in_batches_and_claimed(app, users, db_conn):
    db_conn.execute("UPDATE archive_state SET next_poll_at = now() - interval '1 minute'")
    count, batches = run(app)
    assert count == 12 and [len(b) for b in batches] == [5, 5, 2]
    assert sorted(sum(batches, [])) == sorted(users.values())
    assert db_conn.execute("SELECT count(*) FROM archive_state WHERE dispatched_at IS NOT NULL").fetchone()[0] == 12
    assert run(app) == (0, [])  # claimed: not handed out twice while its job is pending


def test_who_is_not_due(app, users, db_conn):
    ids = list(users.values())
    db_conn.execute("UPDATE archive_state SET next_poll_at = now() - interval '1 minute'")
    db_conn.execute("UPDATE archive_state SET next_poll_at = now() + interval '5 minutes' WHERE user_id = %s", (ids[0],))
    for status, user_id in zip(("reauth_required", "paused", "deactivated"), ids[1:4]):
        db_conn.execute("UPDATE users SET status = %s WHERE id = %s", (status, user_id))
    db_conn.execute("UPDATE archive_state SET dispatched_at = now() - interval '11 minutes' WHERE user_id = %s",
                    (ids[4],))  # a lease that expired: its job never ran
    count, batches = run(app)
    assert sorted(sum(batches, [])) == sorted(ids[4:])


def test_priority_pro_first_then_fewer_failures_then_oldest_success(app, users, db_conn):
    ids = list(users.values())
    db_conn.execute("UPDATE archive_state SET next_poll_at = now() - interval '1 minute', "
                    "last_success_at = now() - interval '1 hour'")
    db_conn.execute("UPDATE users SET plan = 'pro' WHERE id = %s", (ids[7],))
    db_conn.execute("UPDATE archive_state SET consecutive_failures = 3 WHERE user_id = %s", (ids[0],))
    db_conn.execute("UPDATE archive_state SET last_success_at = now() - interval '1 day' WHERE user_id = %s", (ids[5],))
    _, batches = run(app, ArchivalSettings(users_per_job=100))
    order = batches[0]
    assert order[0] == ids[7] and order[1] == ids[5] and order[-1] == ids[0]


def test_nothing_is_dispatched_during_a_pause(app, users, db_conn):
    db_conn.execute("UPDATE archive_state SET next_poll_at = now() - interval '1 minute'")
    db_conn.execute("UPDATE api_budget SET paused_until = now() + interval '1 hour'")
    assert run(app) == (0, [])
    assert db_conn.execute("SELECT count(*) FROM archive_state WHERE dispatched_at IS NOT NULL").fetchone()[0] == 0
    db_conn.execute("UPDATE api_budget SET paused_until = NULL")
    count, batches = run(app)  # the same users, due all along, go once the pause is over
    assert count == 12 and sorted(sum(batches, [])) == sorted(users.values())


def test_jobs_and_claims_commit_together(app, users, db_conn):
    from app.archival.dispatch import defer_poll_batches as _defer_batches

    db_conn.execute("UPDATE archive_state SET next_poll_at = now() - interval '1 minute'")
    count, _ = run(app, defer=_defer_batches)
    jobs = db_conn.execute("SELECT task_name, args, priority FROM procrastinate_jobs ORDER BY id").fetchall()
    assert count == 12 and len(jobs) == 3
    assert {j[0] for j in jobs} == {"jobs.archival.poll_batch"} and {j[2] for j in jobs} == {10}
    assert sorted(sum((j[1]["user_ids"] for j in jobs), [])) == sorted(users.values())

    db_conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    db_conn.execute("UPDATE archive_state SET dispatched_at = NULL")

    def defer_then_fail(session, batches, dispatched_at):
        _defer_batches(session, batches, dispatched_at)
        raise RuntimeError("crash after deferring")

    with pytest.raises(RuntimeError):
        run(app, defer=defer_then_fail)
    assert db_conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM archive_state WHERE dispatched_at IS NOT NULL").fetchone()[0] == 0
