"""Share snapshots: the public page shows exactly the chosen panels, frozen when made, counts
views, links to nothing private, and ends (410) when revoked or expired."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from conftest import csrf_token, freeze, sign_in
from test_exports import END, _zip, archive  # noqa: F401 - the fixture is shared

from app.models import Share
from app.simulator.export import synthetic_history
from app.stats import queries
from app.stats.periods import between
from app.time import zone

PERIOD = {"period": "custom", "from": "2024-01-01", "to": "2025-07-02"}


def make_share(client, **form) -> Share:
    token = csrf_token(client, "/shares")
    data = {**PERIOD, "panels": ["totals", "top-artists"], "rank_by": "plays", "expiry": "never",
            "csrf_token": token, **form}
    response = client.post("/shares", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return response


def only_share(app) -> Share:
    with app.extensions["database"].sessionmaker() as session:
        shares = session.query(Share).all()
        assert len(shares) == 1
        session.expunge_all()
        return shares[0]


def links(html: str) -> set[str]:
    return set(re.findall(r'(?:href|src|hx-get|hx-post|action)="([^"]*)"', html))


@pytest.fixture
def sam(app, archive, client, simulator):  # noqa: F811
    freeze(simulator, int((END + timedelta(days=2)).timestamp() * 1000))
    sign_in(client, "sim-acct-sam")
    return archive["sim-acct-sam"]


def test_the_public_page_shows_the_chosen_panels_frozen_and_counts_views(app, sam, client, importer, db_conn):
    make_share(client, show_name="on")
    share = only_share(app)
    assert len(share.token) == 32  # 24 random bytes: 192 bits
    period = between(date(2024, 1, 1), date(2025, 7, 2), zone("UTC"))
    with app.extensions["database"].engine.connect() as conn:
        totals = queries.totals(conn, sam, period)
        top_artist = queries.top(conn, sam, period, "artists")[0]
    assert totals.plays > 100

    visitor = app.test_client()
    page = visitor.get(f"/s/{share.token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert page.headers["X-Robots-Tag"] == "noindex, nofollow" and '<meta name="robots" content="noindex' in html
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<h3 id=\"heading-totals\">Totals</h3>" in html, html
    assert "Top artists" in html, html
    for absent in ("Top tracks", "Listening clock", "Discoveries", "Habits", "Plays per"):
        assert absent not in html, absent
    assert f"<dd>{totals.plays:,}</dd>" in html and top_artist.name in html
    assert share.display_name and f"{share.display_name}'s listening" in html.replace("&#39;", "'")
    # Nothing of the owner's archive is linked: only the landing page, static files and Spotify.
    for url in links(html):
        assert url in ("/",) or url.startswith(("/static/", "https://open.spotify.com/", "https://i.scdn.co/",
                                                "https://www.spotify.com")), url
    visitor.get(f"/s/{share.token}")
    assert db_conn.execute("SELECT views FROM shares").fetchone()[0] == 2

    # More plays in the shared period: the dashboard changes, the share does not.
    more = synthetic_history(300, years=0.3, tracks=30, artists=5, seed=99,
                             end_ms=int(datetime(2025, 5, 1, tzinfo=timezone.utc).timestamp() * 1000))
    assert importer(sam, {"more.zip": _zip({f"Streaming_History_Audio_{n}.json": p for n, p in enumerate(more)})}
                    ).status == "done"
    with app.extensions["database"].engine.connect() as conn:
        assert queries.totals(conn, sam, period).plays > totals.plays
    assert f"<dd>{totals.plays:,}</dd>" in visitor.get(f"/s/{share.token}").get_data(as_text=True)


def test_revoked_expired_and_deleted_shares_end(app, sam, client, simulator, db_conn):
    make_share(client, expiry="1", panels=["clock", "habits"])
    share = only_share(app)
    visitor = app.test_client()
    first = visitor.get(f"/s/{share.token}")
    assert first.status_code == 200 and share.display_name is None
    name = db_conn.execute("SELECT display_name FROM users WHERE id = %s", (sam,)).fetchone()[0]
    assert name not in first.get_data(as_text=True), "the owner's name is shown only if they chose to"
    assert "Longest streak" in first.get_data(as_text=True)
    freeze(simulator, int((END + timedelta(days=3, hours=1)).timestamp() * 1000))  # a day and an hour later
    gone = visitor.get(f"/s/{share.token}")
    assert gone.status_code == 410 and "This share has ended" in gone.get_data(as_text=True)
    assert gone.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert db_conn.execute("SELECT views FROM shares").fetchone()[0] == 1, "an ended share counts no views"

    make_share(client)
    token = db_conn.execute("SELECT token, id FROM shares WHERE expires_at IS NULL").fetchone()
    listing = client.get("/shares").get_data(as_text=True)
    assert token[0] in listing and "expired" in listing
    assert visitor.get(f"/s/{token[0]}").status_code == 200
    csrf = csrf_token(client, "/shares")
    assert client.post(f"/shares/{token[1]}/revoke", data={"csrf_token": csrf}).status_code == 303
    assert visitor.get(f"/s/{token[0]}").status_code == 410
    assert client.post(f"/shares/{token[1]}/delete", data={"csrf_token": csrf}).status_code == 303
    assert visitor.get(f"/s/{token[0]}").status_code == 404


def test_shares_are_their_owners_alone(app, sam, client, db_conn):
    make_share(client)
    share = only_share(app)
    other = app.test_client()
    sign_in(other, "sim-acct-riley")
    csrf = csrf_token(other, "/shares")
    assert other.post(f"/shares/{share.id}/revoke", data={"csrf_token": csrf}).status_code == 404
    assert other.post(f"/shares/{share.id}/delete", data={"csrf_token": csrf}).status_code == 404
    assert share.token not in other.get("/shares").get_data(as_text=True)
    assert app.test_client().post(f"/shares/{share.id}/revoke").status_code in (302, 400)
    assert db_conn.execute("SELECT revoked_at FROM shares").fetchone()[0] is None
    for token in ("x" * 32, share.token[:-1], share.token + "A", "%00" * 32, "a" * 5000, share.token.upper()):
        if token != share.token:
            assert app.test_client().get(f"/s/{token}").status_code == 404, token


@pytest.mark.parametrize("form, message", [
    ({"panels": []}, "Choose at least one panel"),
    ({"panels": ["totals", "passwords"]}, "does not exist"),
    ({"period": "custom", "from": "1999-01-01", "to": "nonsense"}, "Choose a start and an end date"),
    ({"expiry": "forever"}, "Choose when the link stops working"),
    ({"rank_by": "loudness"}, "Rank by plays or by minutes"),
])
def test_what_cannot_be_shared_is_refused_with_a_message(app, sam, client, db_conn, form, message):
    token = csrf_token(client, "/shares")
    data = {**PERIOD, "panels": ["totals"], "rank_by": "plays", "expiry": "never", "csrf_token": token, **form}
    response = client.post("/shares", data=data)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert db_conn.execute("SELECT count(*) FROM shares").fetchone()[0] == 0
