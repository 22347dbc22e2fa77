"""The ListenBrainz-compatible API's tokens: made in Settings (shown once, stored as a
digest) or by `audiospective users token`, checked by ListenBrainz's own Python client
(liblistenbrainz) over real HTTP, refused once revoked exactly as ListenBrainz refuses."""

from __future__ import annotations

import re

import liblistenbrainz
import pytest
import requests
from liblistenbrainz.errors import InvalidAuthTokenException

from conftest import add_users, app_environ, cli, csrf_token, sign_in

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def lb_client(server) -> liblistenbrainz.ListenBrainz:
    client = liblistenbrainz.ListenBrainz()
    client.api_base_url = server.url  # this server's root, as a scrobbler's setting would be
    return client


def test_a_token_made_in_settings_is_shown_once_works_and_stops_when_revoked(app, client, db_conn, server):
    sign_in(client, "sim-acct-sam")
    assert "No tokens yet" in client.get("/settings/api").get_data(as_text=True)
    made = client.post("/settings/api", data={"label": "  Navidrome   at home ", "csrf_token": csrf_token(client,
                                                                                                  "/settings/api")})
    page = made.get_data(as_text=True)
    token = re.search(f"<code class=\"token\">({UUID})</code>", page).group(1)
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    digest, hint, label = db_conn.execute("SELECT digest, hint, label FROM api_tokens").fetchone()
    assert token not in digest and hint == token[-4:] and label == "Navidrome at home"
    again = client.get("/settings/api").get_data(as_text=True)
    assert token not in again and f"…{hint}" in again and "never" in again

    lb = lb_client(server)
    lb.set_auth_token(token)  # liblistenbrainz checks it with GET /1/validate-token
    answer = requests.get(f"{server.url}/1/validate-token", headers={"Authorization": f"Token {token}"}, timeout=10)
    assert answer.json() == {"code": 200, "message": "Token valid.", "valid": True, "user_name": "sim-acct-sam"}
    assert "never" not in client.get("/settings/api").get_data(as_text=True)  # last used: now

    token_id = db_conn.execute("SELECT id FROM api_tokens").fetchone()[0]
    revoked = client.post(f"/settings/api/{token_id}/revoke", data={"csrf_token": csrf_token(client, "/settings/api")})
    assert revoked.status_code == 303
    with pytest.raises(InvalidAuthTokenException):
        lb_client(server).set_auth_token(token)
    answer = requests.get(f"{server.url}/1/validate-token", params={"token": token}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"code": 200, "message": "Token invalid.", "valid": False}
    assert "revoked" in client.get("/settings/api").get_data(as_text=True)


def test_nobody_revokes_another_persons_token_and_no_token_is_a_listenbrainz_error(app, client, db_conn, server):
    sign_in(client, "sim-acct-sam")
    client.post("/settings/api", data={"label": "mine", "csrf_token": csrf_token(client, "/settings/api")})
    token_id = db_conn.execute("SELECT id FROM api_tokens").fetchone()[0]
    riley = app.test_client()
    sign_in(riley, "sim-acct-riley")
    refused = riley.post(f"/settings/api/{token_id}/revoke", data={"csrf_token": csrf_token(riley, "/settings")})
    assert refused.status_code == 404 and db_conn.execute("SELECT revoked_at FROM api_tokens").fetchone()[0] is None
    assert "mine" not in riley.get("/settings/api").get_data(as_text=True)
    missing = requests.get(f"{server.url}/1/validate-token", timeout=10)
    assert missing.status_code == 400 and missing.json() == {
        "code": 400, "error": "You need to provide an Authorization token."}
    for junk in ("Token ", "Bearer abc", "Token " + "x" * 5000, "Token \udcff"):
        answer = requests.get(f"{server.url}/1/validate-token",
                              headers={"Authorization": junk.encode("utf-8", "surrogateescape")}, timeout=10)
        assert answer.status_code in (200, 400) and answer.json().get("valid") is not True


def test_the_command_prints_a_token_for_operators(app, simulator, database_url, db_conn, server):
    sign_in(app.test_client(), "sim-acct-sam")
    env = app_environ(database_url, simulator.url)
    env["TOKEN_ENCRYPTION_KEY"] = app.config["SETTINGS"].token_encryption_keys[0]
    made = cli("users", "token", "--spotify-id", "sim-acct-sam", "--label", "backfill script", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert re.fullmatch(UUID, token)
    lb_client(server).set_auth_token(token)
    assert db_conn.execute("SELECT label FROM api_tokens").fetchone()[0] == "backfill script"
    unknown = cli("users", "token", "--spotify-id", "nobody-here", env=env)
    assert unknown.returncode == 1 and "no user with Spotify id 'nobody-here'" in unknown.stderr


def test_listens_read_back_as_listenbrainz_gives_them(app, client, db_conn, server, importer, simulator):
    """Ten imported plays read back through liblistenbrainz: newest first, listened_at the
    START of each play (Spotify's stamp less what was played), names, album, Spotify link
    and length; max_ts and min_ts windows; the count; private to their owner."""
    from liblistenbrainz.errors import ListenBrainzAPIException
    from test_import_shapes import extended, zipped

    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    rows = [extended(f"2025-03-0{1 + n // 5}T1{n % 5}:00:00Z", f"Song {n}", "Band", f"spotify:track:{n:022d}",
                     ms=120_000 + n * 1_000) for n in range(10)]
    assert importer(uid, {"my_spotify_data.zip": zipped({"Streaming_History_Audio_2025.json": rows})}).status == "done"
    token, _ = _token_for(app, "sim-acct-sam")
    lb = lb_client(server)
    lb.set_auth_token(token)

    newest = lb.get_listens("sim-acct-sam", count=3)
    ends = sorted((_epoch(r["ts"]), r) for r in rows)[::-1]
    assert [listen.listened_at for listen in newest] == [end - r["ms_played"] // 1000 for end, r in ends[:3]]
    first = newest[0]
    assert (first.track_name, first.artist_name, first.release_name) == ("Song 9", "Band", "Album")
    assert first.spotify_id == f"https://open.spotify.com/track/{9:022d}"
    assert first.additional_info["duration_ms"] == 129_000
    every = lb.get_listens("sim-acct-sam", count=100)
    assert len(every) == 10 and lb.get_user_listen_count("sim-acct-sam") == 10
    middle = every[4].listened_at
    before = lb.get_listens("sim-acct-sam", max_ts=middle)
    after = lb.get_listens("sim-acct-sam", min_ts=middle)
    assert [x.listened_at for x in before] == [x.listened_at for x in every[5:]]
    assert [x.listened_at for x in after] == [x.listened_at for x in every[:4]]
    with pytest.raises(ListenBrainzAPIException) as both:
        lb.get_listens("sim-acct-sam", max_ts=middle, min_ts=middle)
    assert both.value.status_code == 400 and both.value.message == "You may only specify max_ts or min_ts, not both."
    assert requests.get(f"{server.url}/1/user/sim-acct-sam/playing-now", headers={"Authorization": f"Token {token}"},
                        timeout=10).json()["payload"] == {"count": 0, "listens": [], "playing_now": True,
                                                          "user_id": "sim-acct-sam"}

    # Private: not without a token, not with another person's, not with an unknown one.
    add_users(app, simulator, ["sim-acct-riley"])
    other, _ = _token_for(app, "sim-acct-riley")
    for headers in ({}, {"Authorization": f"Token {other}"}, {"Authorization": "Token " + "0" * 36}):
        for path in ("listens", "listen-count", "playing-now"):
            answer = requests.get(f"{server.url}/1/user/sim-acct-sam/{path}", headers=headers, timeout=10)
            assert answer.status_code == 404
            assert answer.json() == {"code": 404, "error": "Cannot find user: sim-acct-sam"}
    for bad in ("count=-1", "max_ts=abc", "min_ts=99999999999", "count=1e9"):
        answer = requests.get(f"{server.url}/1/user/sim-acct-sam/listens?{bad}",
                              headers={"Authorization": f"Token {token}"}, timeout=10)
        assert answer.status_code == 400 and answer.json()["code"] == 400, bad


def _token_for(app, spotify_id: str):
    from app.api.tokens import create
    from app.models import User

    with app.extensions["database"].session() as session:
        user = session.query(User).filter_by(spotify_id=spotify_id).one()
        token, row = create(session, user, "test", now=app.extensions["clock"]())
        return token, row.id


def _epoch(ts: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def test_hostile_user_names_and_tokens_get_listenbrainz_errors_never_a_500(client):
    """Under /1/ every error is ListenBrainz's JSON shape, a path no route matches included."""
    sign_in(client, "sim-acct-sam")
    for name in ("%00", "a%00b", "x" * 5000, "%ED%A0%80", "%F0%9F%8E%A7", "..%2F..", "' OR 1=1 --", "%25", "\u202e"):
        for path in ("listens", "listen-count", "playing-now"):
            for headers in ({}, {"Authorization": "Token abc"}):
                answer = client.get(f"/1/user/{name}/{path}?count=10&max_ts=5", headers=headers)
                assert answer.status_code in (400, 404) and "error" in answer.get_json(), (name, path)
    for query in ("token=%00", "token=" + "%ED%A0%80" * 50, "token=" + "a" * 100_000):
        answer = client.get(f"/1/validate-token?{query}")
        assert answer.status_code in (200, 400) and answer.get_json().get("valid") is not True, query


def test_listens_made_public_are_read_by_anyone_and_private_again_by_no_one(app, client, db_conn, server, importer):
    from test_import_shapes import extended, zipped

    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    rows = [extended("2025-03-01T10:00:00Z", "Song", "Band", "spotify:track:" + "a" * 22)]
    assert importer(uid, {"my_spotify_data.zip": zipped({"Streaming_History_Audio_2025.json": rows})}).status == "done"
    url = f"{server.url}/1/user/sim-acct-sam/listens"
    assert requests.get(url, timeout=10).status_code == 404  # private by default
    page = client.get("/settings/api").get_data(as_text=True)
    assert 'value="private" checked' in page
    made = client.post("/settings/api/privacy", data={"listens": "public",
                                                      "csrf_token": csrf_token(client, "/settings/api")})
    assert made.status_code == 303 and 'value="public" checked' in client.get("/settings/api").get_data(as_text=True)
    public = requests.get(url, timeout=10)
    assert public.status_code == 200 and public.json()["payload"]["listens"][0]["track_metadata"]["track_name"] == "Song"
    assert requests.get(f"{server.url}/1/user/sim-acct-sam/listen-count", timeout=10).json()["payload"]["count"] == 1
    client.post("/settings/api/privacy", data={"listens": "private", "csrf_token": csrf_token(client, "/settings/api")})
    assert requests.get(url, timeout=10).status_code == 404
    bad = client.post("/settings/api/privacy", data={"listens": "everyone",
                                                     "csrf_token": csrf_token(client, "/settings/api")})
    assert bad.status_code == 400


def test_the_api_never_reads_or_sets_the_browser_session(app, client):
    """A signed-in browser that calls /1/ (web-scrobbler does, from its extension) is not
    signed in there: only the token counts, and no Set-Cookie comes back."""
    sign_in(client, "sim-acct-sam")
    assert client.get("/dashboard").status_code == 200
    answer = client.get("/1/user/sim-acct-sam/listen-count")
    assert answer.status_code == 404 and "error" in answer.get_json()  # private: the cookie is no reader
    for path in ("/1/validate-token", "/1/user/sim-acct-sam/listens", "/1/user/nobody/playing-now"):
        answer = client.get(path)
        assert "Set-Cookie" not in answer.headers and "Cookie" not in answer.headers.get("Vary", ""), path
    assert client.get("/dashboard").status_code == 200  # the browser's session is untouched
