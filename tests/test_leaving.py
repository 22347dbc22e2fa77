"""Leaving: pausing collection, and deleting an account so that nothing of the person is
left in any table while everyone else's archive stays exactly as it was."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from conftest import cli, csrf_token, sign_in
from test_exports import archive, export_bytes  # noqa: F401 - the fixture is shared
from test_stats import assert_panels_match

from app.account.addresses import change_email
from app.archival.dispatch import dispatch_due
from app.archival.poll import Archivist, poll_user
from app.email.outbox import mail_context
from app.imports.merge import AccountGone, merge
from app.models import User
from app.stats.periods import between, resolve
from app.time import zone


def tables_with_user_column(db_conn) -> list[str]:
    """Every table that refers to a user, found in the schema (so tables added later count)."""
    return [name for (name,) in db_conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' AND column_name = 'user_id' "
        "ORDER BY table_name")]


def footprint(db_conn, user_id: int) -> dict[str, int]:
    counts = {table: db_conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s", (user_id,)).fetchone()[0]
              for table in tables_with_user_column(db_conn)}
    counts["users"] = db_conn.execute("SELECT count(*) FROM users WHERE id = %s", (user_id,)).fetchone()[0]
    return counts


def rollups_of(db_conn, user_id: int) -> dict[str, list]:
    return {table: db_conn.execute(f"SELECT * FROM {table} WHERE user_id = %s ORDER BY 1, 2, 3", (user_id,)).fetchall()
            for table in ("listening_hours", "track_months", "track_years", "track_totals", "listening_sessions")}


def test_deleting_an_account_leaves_nothing_of_the_person(app, archive, client, db_conn):  # noqa: F811
    sam, riley = archive["sim-acct-sam"], archive["sim-acct-riley"]
    export_bytes(app, sam, "csv")  # an export with its stored file
    with mail_context(app), app.extensions["database"].session() as session:  # a mail in the outbox
        change_email(session, session.get(User, sam), "sam@example.org", secret="s", now=app.extensions["clock"]())
    sign_in(client, "sim-acct-sam")  # a sign-in (and the one this test deletes from)
    shared = client.post("/shares", data={"period": "all", "panels": ["totals"], "rank_by": "plays", "expiry": "never",
                                          "csrf_token": csrf_token(client, "/shares")})
    assert shared.status_code == 303
    share_token = db_conn.execute("SELECT token FROM shares WHERE user_id = %s", (sam,)).fetchone()[0]
    before = footprint(db_conn, sam)
    for table in ("plays", "imports", "exports", "outbox", "user_sessions", "spotify_tokens", "archive_state", "gaps",
                  "listening_hours", "track_totals", "shares"):
        assert before[table] > 0, f"the fixture should give sam some {table}"
    export_chunks = db_conn.execute("SELECT count(*) FROM export_chunks c JOIN exports e ON e.id = c.export_id "
                                    "WHERE e.user_id = %s", (sam,)).fetchone()[0]
    assert export_chunks > 0
    riley_before = rollups_of(db_conn, riley), footprint(db_conn, riley)
    catalogue = db_conn.execute("SELECT count(*) FROM tracks").fetchone()[0]

    token = csrf_token(client, "/settings/delete")
    page = client.get("/settings/delete").get_data(as_text=True)
    assert f"{before['plays']:,} plays" in page and "1 shared page," in page
    wrong = client.post("/settings/delete", data={"confirm": "yes", "csrf_token": token})
    assert wrong.status_code == 400 and "Type “delete”" in wrong.get_data(as_text=True)
    assert footprint(db_conn, sam) == before, "a wrong confirmation deletes nothing"

    done = client.post("/settings/delete", data={"confirm": "Delete", "csrf_token": token})
    assert done.status_code == 303 and done.headers["Location"].endswith("/goodbye")
    goodbye = client.get("/goodbye").get_data(as_text=True)
    assert "spotify.com/account/apps" in goodbye

    after = footprint(db_conn, sam)
    assert set(after) == set(before) and not any(after.values()), after
    assert db_conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM import_chunks").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM outbox WHERE to_address = 'sam@example.org'").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM tracks").fetchone()[0] == catalogue, "the catalogue stays"
    assert app.test_client().get(f"/s/{share_token}").status_code == 404
    # The session that deleted the account is over, and so is its cookie.
    assert client.get("/settings").status_code == 302
    # Riley's archive is exactly as it was, and their dashboard still equals a recount.
    assert (rollups_of(db_conn, riley), footprint(db_conn, riley)) == riley_before
    with app.extensions["database"].engine.connect() as conn:
        assert_panels_match(db_conn, conn, riley, resolve("all", zone("UTC"), datetime(2025, 7, 3, tzinfo=timezone.utc)))
        assert_panels_match(db_conn, conn, riley, between(date(2025, 7, 1), date(2025, 7, 2), zone("Europe/Berlin")))


def test_a_poll_or_merge_after_the_deletion_writes_nothing(app, archive, db_conn):  # noqa: F811
    import psycopg

    from app.account.leaving import delete_account

    sam = archive["sim-acct-sam"]
    with app.extensions["database"].session() as session:
        assert delete_account(session, sam)
        assert not delete_account(session, sam)  # already gone
    assert poll_user(Archivist.from_app(app), sam).outcome == "skipped"
    with psycopg.connect(app.extensions["database"].url) as conn, pytest.raises(AccountGone):
        merge(conn, sam, 0)
    assert not any(footprint(db_conn, sam).values())


def test_pause_keeps_everything_and_stops_polling_until_resumed(app, archive, client, db_conn):  # noqa: F811
    sam = archive["sim-acct-sam"]
    plays = footprint(db_conn, sam)["plays"]
    sign_in(client, "sim-acct-sam")
    token = csrf_token(client, "/settings")
    assert "Pause collection" in client.get("/settings").get_data(as_text=True)
    response = client.post("/settings/collection", data={"action": "pause", "csrf_token": token})
    assert response.status_code == 303
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (sam,)).fetchone()[0] == "paused"
    assert "You paused collection" in client.get("/dashboard").get_data(as_text=True)
    assert "Resume collection" in client.get("/settings").get_data(as_text=True)
    # Nobody hands a paused user to a poll, and a poll already queued does nothing.
    db_conn.execute("UPDATE archive_state SET next_poll_at = now() - interval '1 hour', dispatched_at = NULL")
    archivist = Archivist.from_app(app)
    handed: list[int] = []
    dispatch_due(app.extensions["database"], archivist.budget, archivist.settings, datetime.now(timezone.utc),
                 lambda session, batches, at: handed.extend(u for b in batches for u in b))
    assert sam not in handed and archive["sim-acct-riley"] in handed
    assert poll_user(archivist, sam).outcome == "skipped"
    # Signing in again (another browser) does not quietly undo a pause.
    assert sign_in(app.test_client(), "sim-acct-sam").status_code == 302
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (sam,)).fetchone()[0] == "paused"

    token = csrf_token(client, "/settings")
    assert client.post("/settings/collection", data={"action": "resume", "csrf_token": token}).status_code == 303
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (sam,)).fetchone()[0] == "active"
    assert footprint(db_conn, sam)["plays"] == plays
    assert client.post("/settings/collection", data={"action": "nonsense", "csrf_token": token}).status_code == 400


def test_operators_delete_a_user_from_the_command_line(app, archive, worker_env, db_conn):  # noqa: F811
    sam = archive["sim-acct-sam"]
    missing = cli("users", "delete", "nobody-here", "--yes", env=worker_env)
    assert missing.returncode == 1 and "no user 'nobody-here'" in missing.stderr
    refused = cli("users", "delete", str(sam), env=worker_env, timeout=60)  # no terminal: the prompt aborts
    assert refused.returncode == 1 and footprint(db_conn, sam)["users"] == 1
    done = cli("users", "delete", str(sam), "--yes", env=worker_env)
    assert done.returncode == 0, done.stderr
    assert "Deleted user" in done.stdout and "plays" in done.stdout
    assert not any(footprint(db_conn, sam).values())
    assert footprint(db_conn, archive["sim-acct-riley"])["plays"] > 0
