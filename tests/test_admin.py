"""The admin area: 404 for everyone but admins on every admin URL (enumerated from the URL
map, so a route added later is covered), each action doing what it says and recorded in
the audit log; ADMIN_SPOTIFY_IDS and the operators' commands."""

from __future__ import annotations

import re

import pytest
from conftest import REFERENCE_MS, add_users, app_environ, cli, csrf_token, freeze, sign_in

from app import queue
from app.auth.signin import sign_in as sign_in_profile
from app.config import load_settings


def admin_rules(app) -> list[tuple[str, str]]:
    """(method, path) of every admin route, ids filled in."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path))
    return found


@pytest.fixture
def people(app, simulator, db_conn):
    freeze(simulator)
    users = add_users(app, simulator, ["sim-acct-riley", "sim-acct-sam"])
    db_conn.execute("UPDATE users SET role = 'admin' WHERE id = %s", (users["sim-acct-riley"],))
    return users


def test_nobody_but_an_admin_finds_the_admin_area(app, people, client):
    rules = admin_rules(app)
    assert len(rules) >= 15 and ("GET", "/admin/users") in rules and ("POST", "/admin/users/1/delete") in rules
    anonymous = app.test_client()
    member = app.test_client()
    sign_in(member, "sim-acct-sam")
    token = csrf_token(member, "/settings")
    for method, path in rules:
        for who, browser, data in (("anonymous", anonymous, {}), ("member", member, {"csrf_token": token})):
            response = browser.open(path, method=method, data=data, headers={"X-CSRFToken": token})
            assert response.status_code == 404, (who, method, path, response.status_code)
    assert "Admin" not in member.get("/dashboard").get_data(as_text=True).split("<main")[0]
    sign_in(client, "sim-acct-riley")
    for method, path in rules:
        if method == "GET":
            assert client.get(path, follow_redirects=True).status_code == 200, path


def test_each_admin_action_does_what_it_says_and_is_in_the_audit_log(app, people, client, db_conn, simulator):
    riley, sam = people["sim-acct-riley"], people["sim-acct-sam"]
    sign_in(client, "sim-acct-riley")
    token = csrf_token(client, "/admin/users")

    def post(path: str, **form) -> str:
        response = client.post(path, data={"csrf_token": token, **form}, follow_redirects=True)
        assert response.status_code == 200, (path, response.status_code)
        return response.get_data(as_text=True)

    def user(column: str):
        return db_conn.execute(f"SELECT {column} FROM users WHERE id = %s", (sam,)).fetchone()[0]

    assert "is on the pro plan" in post(f"/admin/users/{sam}/plan", plan="pro") and user("plan") == "pro"
    assert "Collection paused" in post(f"/admin/users/{sam}/collection", action="pause") and user("status") == "paused"
    post(f"/admin/users/{sam}/collection", action="resume")
    assert user("status") == "active"
    db_conn.execute("UPDATE users SET status = 'deactivated' WHERE id = %s", (sam,))
    assert "back in line" in post(f"/admin/users/{sam}/reactivate") and user("status") == "active"
    post(f"/admin/users/{sam}/role", role="admin")
    assert user("role") == "admin"
    post(f"/admin/users/{sam}/role", role="member")
    assert user("role") == "member"
    assert "cannot take away your own" in post(f"/admin/users/{riley}/role", role="member")
    assert client.post("/admin/seats", data={"cap": "9"}).status_code == 400  # CSRF holds for admins too
    assert "There are now 7 seats" in post("/admin/seats", cap="7")
    assert "must be a whole number" in post("/admin/seats", cap="-3")
    assert "Invited new@example.org" in post("/admin/waitlist/invite", email="new@example.org")
    entry = db_conn.execute("SELECT id, invited_at IS NOT NULL FROM waitlist").fetchone()
    assert entry[1] and db_conn.execute("SELECT count(*) FROM outbox WHERE to_address = 'new@example.org'"
                                        ).fetchone()[0] == 1
    freeze(simulator, REFERENCE_MS + 60_000)  # a minute later: a new invitation, the first one void
    post(f"/admin/waitlist/{entry[0]}/invite")
    assert db_conn.execute("SELECT count(*) FROM outbox WHERE to_address = 'new@example.org'").fetchone()[0] == 2
    post(f"/admin/waitlist/{entry[0]}/remove")
    assert db_conn.execute("SELECT count(*) FROM waitlist").fetchone()[0] == 0
    with app.extensions["database"].session() as session:
        queue.defer(queue.EXPORT, session, {"export_id": 999})
    job = db_conn.execute("UPDATE procrastinate_jobs SET status = 'failed' RETURNING id").fetchone()[0]
    assert "Failed and stalled" in client.get("/admin/jobs").get_data(as_text=True)
    assert f"Job {job} will run again" in post(f"/admin/jobs/{job}/retry")
    assert db_conn.execute("SELECT status FROM procrastinate_jobs WHERE id = %s", (job,)).fetchone()[0] == "todo"
    assert "Tick the confirmation" in post(f"/admin/users/{sam}/delete")
    assert "its seat is free" in post(f"/admin/users/{sam}/delete", confirm=str(sam))
    assert db_conn.execute("SELECT count(*) FROM users WHERE id = %s", (sam,)).fetchone()[0] == 0

    actions = [a for (a,) in db_conn.execute("SELECT action FROM admin_audit ORDER BY id")]
    assert actions == ["set plan", "pause collection", "resume collection", "reactivate", "set role", "set role",
                       "set seats", "invite", "invite", "remove from waitlist", "retry job", "delete account"]
    log = client.get("/admin/audit").get_data(as_text=True)
    assert "delete account" in log and "Riley Demo" in log and "plan: pro" in log
    for page in ("/admin/email", "/admin/health", "/admin/seats"):
        assert client.get(page).status_code == 200


def test_admin_ids_from_the_environment_make_admins_at_sign_in(app, simulator, database_url):
    settings = load_settings(app_environ(database_url, simulator.url, ADMIN_SPOTIFY_IDS=" sim-acct-jo , other "))
    assert settings.admin_spotify_ids == frozenset({"sim-acct-jo", "other"})
    account = simulator.world.account("sim-acct-jo")
    grant = simulator.world.grant_for(account)
    with app.extensions["database"].session() as session:
        user = sign_in_profile(session, {"id": account.id, "account_id": account.account_id, "display_name": "Jo"},
                               access_token=grant["access_token"], refresh_token=grant["refresh_token"],
                               expires_in=3600, scope=grant["scope"], cipher=app.extensions["token_cipher"],
                               now=app.extensions["clock"](), admin_ids=settings.admin_spotify_ids)
        assert user.role == "admin"


def test_operators_promote_and_change_users_from_the_command_line(app, people, worker_env, db_conn):
    sam = people["sim-acct-sam"]
    for args, column, value in ((("promote", str(sam)), "role", "admin"), (("promote", str(sam), "--demote"), "role",
                                                                           "member"),
                                (("plan", str(sam), "pro"), "plan", "pro"), (("pause", str(sam)), "status", "paused"),
                                (("resume", str(sam)), "status", "active")):
        done = cli("users", *args, env=worker_env)
        assert done.returncode == 0, done.stderr
        assert db_conn.execute(f"SELECT {column} FROM users WHERE id = %s", (sam,)).fetchone()[0] == value, args
    refused = cli("users", "plan", str(sam), "platinum", env=worker_env)
    assert refused.returncode == 2 and "platinum" in refused.stderr
