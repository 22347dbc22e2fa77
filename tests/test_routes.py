"""Every route, from the app's URL map: classified (a new route fails this suite until it
is), then checked for leaks between users, CSRF, hostile input and security headers. It
prints what it did: routes by class, requests sent, leaks, 500s."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import csrf_token, sign_in
from test_exports import RAW_HTML, archive, export_bytes  # noqa: F401 - the fixture is shared

from app.account.addresses import change_email
from app.api.tokens import create as create_api_token
from app.email.outbox import mail_context
from app.models import User
from app.shares.service import create_share
from app.stats.periods import resolve
from app.time import zone

# public: anyone; user: the signed-in person's own things; admin: admins only (404 else);
# capability: public, but only with a secret in the URL or a header (a share, a signed link, an API token).
CLASSES = {
    "public": {"public.landing", "health.healthz", "static", "auth.login", "auth.callback", "membership.index",
               "membership.join", "membership.joined", "account.goodbye"},
    "capability": {"shares.public", "metrics.metrics", "api.validate_token", "api.user_listens", "api.submit_listens",
                   "api.listen_count", "api.playing_now", "membership.confirm", "membership.leave",
                   "membership.accept_invite",
                   "alerts.turn_off", "account.confirm_email_link"},
    "user": {"api.tokens_page", "api.revoke", "api.now_playing", "api.privacy", "account.alerts", "account.collection", "account.delete",
             "account.detect_timezone", "account.email",
             "account.settings", "account.sign_out_everywhere", "auth.logout", "exports.delete", "exports.download",
             "exports.index", "exports.request_export", "exports.retry", "exports.row", "imports.index",
             "imports.progress", "imports.show", "imports.upload", "mail.html_part", "mail.message", "mail.outbox",
             "reports.preview", "shares.create", "shares.delete", "shares.index", "shares.revoke",
             "stats.archive_health_panel", "stats.dashboard", "stats.entity", "stats.history_more",
             "stats.history_page", "stats.panel", "stats.stats_region"},
    "admin": {"admin.audit_log", "admin.email", "admin.health", "admin.index", "admin.job_retry", "admin.jobs",
              "admin.seats_page", "admin.set_seats", "admin.user_collection", "admin.user_delete", "admin.user_plan",
              "admin.user_reactivate", "admin.user_role", "admin.users", "admin.waitlist_invite",
              "admin.waitlist_invite_address", "admin.waitlist_remove"},
}
# Ending the session these checks run in: run last, or not at all in the fuzzing pass.
ENDS_SESSION = {"auth.logout", "account.sign_out_everywhere", "account.delete"}
# Every query parameter and form field the app reads, fuzzed on every route.
FIELDS = ("period", "from", "to", "rank", "rank_by", "q", "date", "cursor", "t", "reauthorise", "member", "full",
          "format", "rule", "email", "timezone", "action", "confirm", "panels", "expiry", "show_name", "alerts",
          "plan", "role", "cap", "next", "label", "token", "count", "min_ts", "max_ts", "source", "listens",
          "count_podcasts")
SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")
MARKER = "名前"  # a track name only Sam's archive holds (test_exports.HOSTILE)
SAM_EMAIL = "sam-private@example.org"


def corpus() -> list[str]:
    values = []
    for line in (Path(__file__).parent / "corpus" / "bad_input.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        repeat = re.fullmatch(r"\{(.+)\*(\d+)\}", line)
        values.append(repeat.group(1) * int(repeat.group(2)) if repeat else line)
    return values


def rules(app):
    return [r for r in app.url_map.iter_rules() if not r.endpoint.startswith("simulator")]


def test_every_route_is_classified(app):
    endpoints = {r.endpoint for r in rules(app)}
    classified = set().union(*CLASSES.values())
    assert endpoints - classified == set(), "classify these routes in CLASSES"
    assert classified - endpoints == set(), "these classified routes are gone"


@pytest.fixture
def world(app, archive, client, db_conn):  # noqa: F811
    """Sam with everything a person can have (plays, an import, an export, a share, mail,
    sign-ins); Riley beside, signed in too."""
    sam, riley = archive["sim-acct-sam"], archive["sim-acct-riley"]
    export_bytes(app, sam, "csv")
    with mail_context(app), app.extensions["database"].session() as session:
        user = session.get(User, sam)
        change_email(session, user, SAM_EMAIL, secret="s", now=app.extensions["clock"]())
        share = create_share(session, user, resolve("all", zone("UTC"), app.extensions["clock"]()), ["totals", "top-tracks"],
                             rank_by="plays", show_name=False, expiry="never", now=app.extensions["clock"]())
        share_id = share.id
        _, api_token = create_api_token(session, user, "Sam's player", now=app.extensions["clock"]())
        token_id = api_token.id
    ids = {
        "import_id": db_conn.execute("SELECT id FROM imports WHERE user_id = %s", (sam,)).fetchone()[0],
        "export_id": db_conn.execute("SELECT id FROM exports WHERE user_id = %s", (sam,)).fetchone()[0],
        "message_id": db_conn.execute("SELECT id FROM outbox WHERE user_id = %s", (sam,)).fetchone()[0],
        "share_id": share_id, "token_id": token_id,
        "entity_id": db_conn.execute("SELECT id FROM tracks WHERE name LIKE %s", (f"%{MARKER}%",)).fetchone()[0],
        "user_id": sam, "entry_id": 1, "job_id": 1, "name": "totals", "kind": "track", "filename": "app.css",
        "token": "x" * 32,
    }
    owner = client
    sign_in(owner, "sim-acct-sam")
    other = app.test_client()
    sign_in(other, "sim-acct-riley")
    return {"sam": sam, "riley": riley, "ids": ids, "owner": owner, "other": other}


def url_for_rule(rule, ids: dict) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(ids[m.group(1)]), rule.rule.replace(
        "<any(artist, album, track):kind>", "track"))


def fingerprint(db_conn, user_id: int) -> tuple:
    """What a state change to a person's things would alter."""
    return tuple(db_conn.execute(query, (user_id,)).fetchall() for query in (
        "SELECT status, email, email_verified_at, preferences, plan, role FROM users WHERE id = %s",
        "SELECT id, status FROM exports WHERE user_id = %s ORDER BY id",
        "SELECT id, status FROM imports WHERE user_id = %s ORDER BY id",
        "SELECT id, revoked_at FROM shares WHERE user_id = %s ORDER BY id",
        "SELECT id, revoked_at FROM api_tokens WHERE user_id = %s ORDER BY id",
        "SELECT count(*) FROM outbox WHERE user_id = %s",
        "SELECT count(*) FROM user_sessions WHERE user_id = %s AND ended_at IS NULL",
        "SELECT count(*) FROM plays WHERE user_id = %s",
    ))


def test_no_route_leaks_another_persons_things(app, world, db_conn):
    """Every route with Sam's ids, as Riley and as nobody: none shows Sam's data."""
    ids, other, anonymous = world["ids"], world["other"], app.test_client()
    # The markers are what Sam's own pages show: a leak would show them too.
    assert MARKER in world["owner"].get(f"/track/{ids['entity_id']}").get_data(as_text=True)
    assert SAM_EMAIL in world["owner"].get("/settings").get_data(as_text=True)
    sam_before = fingerprint(db_conn, world["sam"])
    token = csrf_token(other, "/settings")
    sent = leaks = 0
    by_class = {}
    for rule in rules(app):
        kind = next(k for k, v in CLASSES.items() if rule.endpoint in v)
        by_class[kind] = by_class.get(kind, 0) + 1
        if kind not in ("user", "admin") or rule.endpoint in ENDS_SESSION:
            continue
        url = url_for_rule(rule, ids)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            for who, browser in (("riley", other), ("anonymous", anonymous)):
                response = browser.open(url, method=method, data={"csrf_token": token}, headers={"X-CSRFToken": token})
                sent += 1
                body = response.get_data(as_text=True)
                if MARKER in body or SAM_EMAIL in body or response.status_code >= 500:
                    leaks += 1
                    print(f"LEAK {who} {method} {url} {response.status_code}")
                if who == "anonymous":
                    assert response.status_code in (302, 400, 401, 404), (method, url, response.status_code)
    assert fingerprint(db_conn, world["sam"]) == sam_before, "another person changed Sam's things"
    print(f"routes by class: {by_class}; isolation requests: {sent}; leaks: {leaks}")
    assert leaks == 0


def test_every_state_change_needs_a_valid_token_from_this_site(app, world, db_conn):
    owner, other, ids = world["owner"], world["other"], world["ids"]
    own_token, others_token = csrf_token(owner, "/settings"), csrf_token(other, "/settings")
    before = fingerprint(db_conn, world["sam"]), fingerprint(db_conn, world["riley"])
    sent = 0
    for rule in rules(app):
        if "POST" not in rule.methods:
            continue
        url = url_for_rule(rule, ids)
        attempts = (("no token", {}, {}), ("a wrong token", {"csrf_token": "forged"}, {"X-CSRFToken": "forged"}),
                    ("another person's token", {"csrf_token": others_token}, {"X-CSRFToken": others_token}),
                    ("another site", {"csrf_token": own_token}, {"X-CSRFToken": own_token,
                                                                "Origin": "https://evil.example",
                                                                "Sec-Fetch-Site": "cross-site"}))
        for what, form, headers in attempts:
            response = owner.post(url, data={**form, "confirm": "delete", "action": "pause", "email": "x@example.org",
                                             "cap": "0", "plan": "pro"}, headers=headers)
            sent += 1
            # 401: the API (/1/) takes a token, never the session cookie a forged request rides on.
            assert response.status_code in (400, 401, 403, 404), (what, url, response.status_code)
    assert (fingerprint(db_conn, world["sam"]), fingerprint(db_conn, world["riley"])) == before
    print(f"CSRF: {sent} refused state changes on {sent // 4} POST routes")


def test_hostile_input_never_gives_a_500(app, world):
    """Each value of the corpus in every query parameter and form field the app reads, on
    every route (as the signed-in owner, with a valid token): a 4xx or a normal page, the
    security headers on every answer, and the session intact."""
    owner, ids = world["owner"], world["ids"]
    token = csrf_token(owner, "/settings")
    statuses: dict[int, int] = {}
    values = corpus()
    for value in values:
        # A huge value goes in one field per request (every field at once is 26 MB a request).
        query = "&".join(f"{name}={value}" for name in (FIELDS if len(value) < 10_000 else ("q", "email")))
        for rule in rules(app):
            if rule.endpoint in ENDS_SESSION or rule.endpoint == "static":
                continue
            url = url_for_rule(rule, ids)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if method == "GET":
                    response = owner.get(f"{url}?{query}")
                else:
                    response = owner.post(url, data=f"csrf_token={quote(token)}&{query}",
                                          content_type="application/x-www-form-urlencoded")
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                assert response.status_code < 500, (method, url, value[:40], response.status_code)
                for header in SECURITY_HEADERS:
                    assert header in response.headers, (method, url, header)
        assert owner.get("/settings").status_code == 200, f"the session did not survive {value[:40]!r}"
    # Path parameters too: ids no row can have.
    for bad in ("2147483648", "9223372036854775808", "-1", "0"):
        for path in (f"/import/{bad}", f"/export/{bad}/download", f"/outbox/{bad}", f"/track/{bad}",
                     f"/shares/{bad}/revoke"):
            response = owner.get(path) if "revoke" not in path else owner.post(path, data={"csrf_token": token})
            assert response.status_code in (404, 405), path
    print(f"hostile input: {len(values)} values x every field, {sum(statuses.values())} requests, "
          f"statuses {dict(sorted(statuses.items()))}, 500s: 0")


def hostile_pages(app, world, db_conn) -> tuple[list[str], tuple[int, int]]:
    """Every page and fragment of Sam's that the hostile names can appear on; and the ids
    of the hostile track and artist."""
    names = [n for (n,) in db_conn.execute("SELECT name FROM tracks WHERE name LIKE '%<%'")]
    assert len(names) == 2, "the hostile names must be in the archive for this to mean anything"
    share = db_conn.execute("SELECT token FROM shares").fetchone()[0]
    hostile_track = db_conn.execute("SELECT id FROM tracks WHERE name LIKE '<script%'").fetchone()[0]
    hostile_artist = db_conn.execute("SELECT id FROM artists WHERE name LIKE '<script%'").fetchone()[0]
    pages = [url_for_rule(r, world["ids"]) for r in rules(app) if "GET" in r.methods and r.endpoint not in ("static",)
             and next(k for k, v in CLASSES.items() if r.endpoint in v) in ("user", "public")]
    pages += [f"/dashboard/panel/{name}?period=all" for name in ("top-tracks", "top-artists", "discoveries")]
    pages += [f"/track/{hostile_track}", f"/artist/{hostile_artist}", "/history?q=script", "/report/preview",
              f"/s/{share}", "/dashboard?period=all"]
    return pages, (hostile_track, hostile_artist)


def test_hostile_names_are_escaped_on_every_page_fragment_and_share(app, world, db_conn):
    """Sam's archive holds tracks and artists named with HTML (test_exports.HOSTILE): every
    page and fragment they can appear on, the share page and the report preview show them
    as text."""
    owner = world["owner"]
    pages, (hostile_track, hostile_artist) = hostile_pages(app, world, db_conn)
    shown = 0
    for path in pages:
        response = owner.get(path)
        if response.mimetype != "text/html":
            continue  # a CSV or JSON download holds the names as data, as it should
        body = response.get_data(as_text=True)
        for payload in RAW_HTML:
            assert payload not in body, (path, payload)
        shown += "&lt;script&gt;" in body
        if path in (f"/track/{hostile_track}", f"/artist/{hostile_artist}", "/history?q=script"):
            assert "&lt;script&gt;alert(" in body, f"{path} must show the name, escaped"
    print(f"stored XSS: {len(pages)} pages and fragments, the hostile names escaped on {shown} of them, raw on 0")


@pytest.mark.browser
def test_hostile_names_run_nothing_and_break_no_policy_in_chromium(app, world, db_conn, browser):
    """The same pages in Chromium, as Sam: every page loaded with the fragments HTMX
    fetches; no dialog opens (the payloads call alert), no CSP violation is reported."""
    from conftest import WATCH_CSP, app_server, http_sign_in

    pages = [p for p in hostile_pages(app, world, db_conn)[0] if world["owner"].get(p).mimetype == "text/html"]
    server = app_server(app)
    session = http_sign_in(server.url, "sim-acct-sam")
    context = browser.new_context()
    context.add_cookies([{"name": c.name, "value": c.value, "url": server.url} for c in session.cookies])
    context.add_init_script(WATCH_CSP)
    dialogs, violations, loaded = [], [], 0
    page = context.new_page()
    page.on("dialog", lambda dialog: (dialogs.append((page.url, dialog.message)), dialog.dismiss()))
    try:
        for path in pages:
            page.goto(f"{server.url}{path}")
            page.wait_for_load_state("networkidle")  # the fragments HTMX loads, swapped in
            loaded += 1
            violations += [(path, v) for v in page.evaluate("window.__csp || []")]
    finally:
        context.close()
        server.stop()
    print(f"stored XSS in Chromium: {loaded} pages loaded with their fragments, dialogs {len(dialogs)}, "
          f"CSP violations {len(violations)}")
    assert loaded >= 30 and not dialogs and not violations, (dialogs, violations)
