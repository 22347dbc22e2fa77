"""Listens from other players: POST /1/submit-listens as ListenBrainz's own client sends
it, merged by the real worker; the matching rule between start-stamped listens and
Spotify's end-stamped plays; and every malformed request refused in ListenBrainz's shape
with nothing written."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections import Counter
from collections.abc import Iterator

import liblistenbrainz
import pytest
import requests
from liblistenbrainz.errors import ListenBrainzAPIException

from app.api.ingest import merge_inbox
from app.archival.poll import Archivist, poll_user
from conftest import add_users, csrf_token, freeze, sign_in, wait_for, window
from test_api import _token_for, lb_client
from test_exports import export_bytes

DAY_S = 86_400


def counts(db_conn) -> dict:
    return {table: db_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("plays", "listen_inbox", "playing_now", "tracks", "play_clients")}


def lb_listen(listened_at: int | None, track: str, artist: str, **info) -> liblistenbrainz.Listen:
    return liblistenbrainz.Listen(track_name=track, artist_name=artist, listened_at=listened_at,
                                  release_name=info.pop("release", None), additional_info=info)


def test_liblistenbrainz_submits_single_import_and_playing_now_and_reads_them_back(app, db_conn, server, workers,
                                                                                   simulator):
    """Through ListenBrainz's Python client against the served app, with a real worker
    merging: one single listen, an import of 1,000, playing-now; read back newest first
    with min_ts/max_ts; the count; a revoked token refused as ListenBrainz refuses it."""
    sign_in(app.test_client(), "sim-acct-sam")
    # Collection paused: this test counts listens only, and what the simulator's Sam has
    # recently played depends on the date the suite runs on (a poll would add it).
    db_conn.execute("UPDATE users SET status = 'paused' WHERE spotify_id = 'sim-acct-sam'")
    token, token_id = _token_for(app, "sim-acct-sam")
    lb = lb_client(server)
    lb.set_auth_token(token)
    workers()
    now_s = int(app.extensions["clock"]().timestamp())

    single = lb_listen(now_s - 600, "Night Drive", "The Midnight", release="Endless Summer",
                       submission_client="Pano Scrobbler", duration_ms=245_000)
    assert lb.submit_single_listen(single) == {"status": "ok"}
    batch = [lb_listen(now_s - 2 * DAY_S - n * 300, f"Track {n}", f"Artist {n % 37}", release=f"Album {n % 11}",
                       submission_client="multi-scrobbler", duration_ms=180_000 + n) for n in range(1000)]
    assert lb.submit_multiple_listens(batch) == {"status": "ok"}
    assert lb.submit_playing_now(lb_listen(None, "Now Song", "Now Band", submission_client="Web Scrobbler",
                                           duration_ms=200_000)) == {"status": "ok"}

    wait_for(lambda: counts(db_conn)["plays"] == 1001, timeout=60, message="1,001 plays merged")
    assert counts(db_conn)["listen_inbox"] == 0
    assert lb.get_user_listen_count("sim-acct-sam") == 1001
    newest = lb.get_listens("sim-acct-sam", count=2)
    assert [(x.track_name, x.listened_at) for x in newest] == [("Night Drive", now_s - 600),
                                                               ("Track 0", now_s - 2 * DAY_S)]
    assert newest[0].release_name == "Endless Summer" and newest[0].additional_info["duration_ms"] == 245_000
    assert newest[0].additional_info["submission_client"] == "Pano Scrobbler"
    older = lb.get_listens("sim-acct-sam", max_ts=now_s - 2 * DAY_S - 300 * 500, count=1000)
    assert [x.track_name for x in older] == [f"Track {n}" for n in range(501, 1000)]
    newer = lb.get_listens("sim-acct-sam", min_ts=now_s - 2 * DAY_S - 300 * 3, count=10)
    assert [x.track_name for x in newer] == ["Night Drive", "Track 0", "Track 1", "Track 2"]
    playing = lb.get_playing_now("sim-acct-sam")
    assert playing.track_name == "Now Song" and playing.additional_info["submission_client"] == "Web Scrobbler"
    clients = {r[0] for r in db_conn.execute(
        "SELECT c.name FROM plays p JOIN play_clients c ON c.id = p.client_id")}
    assert clients == {"Pano Scrobbler", "multi-scrobbler"}
    assert db_conn.execute("SELECT DISTINCT source FROM plays").fetchall() == [(4,)]

    # Submitting the same 1,000 again (a client retrying) adds nothing.
    lb.submit_multiple_listens(batch)
    wait_for(lambda: counts(db_conn)["listen_inbox"] == 0, timeout=60, message="the retry merged")
    assert counts(db_conn)["plays"] == 1001

    # On the dashboard while it plays (never as a play), gone when its length has passed.
    client = app.test_client()
    sign_in(client, "sim-acct-sam")
    shown = client.get("/dashboard").get_data(as_text=True)
    assert "Playing now: <strong>Now Song</strong> by Now Band" in shown and "via Web Scrobbler" in shown
    assert "Now Song" in client.get("/dashboard/playing-now").get_data(as_text=True)
    listed = client.get("/history?source=scrobblers").get_data(as_text=True)
    assert ">Pano Scrobbler</span>" in listed and ">multi-scrobbler</span>" in listed
    # Spotify's own export shape has no source field: the player goes in `platform`.
    sam = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    with zipfile.ZipFile(io.BytesIO(export_bytes(app, sam, "spotify"))) as spotify_shape:
        rows = [row for name in spotify_shape.namelist() for row in json.loads(spotify_shape.read(name))]
    assert Counter(row["platform"] for row in rows) == {"multi-scrobbler": 1000, "Pano Scrobbler": 1}
    freeze(simulator, int(app.extensions["clock"]().timestamp() * 1000) + 201_000)
    assert "Now Song" not in client.get("/dashboard/playing-now").get_data(as_text=True)
    assert lb.get_playing_now("sim-acct-sam") is None

    client.post(f"/settings/api/{token_id}/revoke", data={"csrf_token": csrf_token(client, "/settings/api")})
    with pytest.raises(ListenBrainzAPIException) as refused:
        lb.submit_single_listen(single)
    assert refused.value.status_code == 401 and refused.value.message == "Invalid authorization token."
    raw = requests.post(f"{server.url}/1/submit-listens", headers={"Authorization": f"Token {token}"},
                        json={"listen_type": "single", "payload": [{"listened_at": now_s, "track_metadata": {
                            "track_name": "x", "artist_name": "y"}}]}, timeout=10)
    assert raw.status_code == 401 and raw.json() == {"code": 401, "error": "Invalid authorization token."}
    # Checked, counted and written in one statement: written only for a live token.
    assert db_conn.execute("SELECT (SELECT count(*) FROM listen_inbox WHERE track_name = 'x') "
                           "+ (SELECT count(*) FROM tracks WHERE name = 'x')").fetchone()[0] == 0


def _post(server, token, body, **kwargs):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body  # bytes, or chunks
    return requests.post(f"{server.url}/1/submit-listens", data=data, timeout=30,
                         headers={"Authorization": f"Token {token}", "Content-Type": "application/json",
                                  **kwargs.pop("headers", {})}, **kwargs)


def _one(listened_at=1_700_000_000, **metadata):
    return {"listened_at": listened_at, "track_metadata": {"track_name": "Song", "artist_name": "Band", **metadata}}


def test_malformed_requests_get_listenbrainz_errors_and_write_nothing(app, db_conn, server):
    sign_in(app.test_client(), "sim-acct-sam")
    token, _ = _token_for(app, "sim-acct-sam")
    good = [_one(1_700_000_000 + n) for n in range(999)]
    nested = b'{"listen_type": "import", "payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases = {
        "not json": (b"listen_type=single", "Cannot parse JSON document"),
        "not utf-8": (b'{"listen_type": "single", "payload": ["\xff"]}', "Cannot parse JSON document"),
        "deeply nested": (nested, "Cannot parse JSON document"),
        "a list": ([], "Invalid JSON document submitted."),
        "no payload": ({"listen_type": "single"}, "Invalid JSON document submitted."),
        "empty payload": ({"listen_type": "single", "payload": []}, "JSON document does not contain any listens"),
        "bad listen_type": ({"listen_type": "many", "payload": [_one()]},
                            "JSON document requires a valid listen_type key."),
        "two singles": ({"listen_type": "single", "payload": [_one(), _one()]},
                        "JSON document contains more than listen for a single/playing_now. It should contain only one."),
        "1,001 listens": ({"listen_type": "import", "payload": [_one(1_700_000_000 + n) for n in range(1001)]},
                          "Too many listens. You may not submit more than 1000 listens at once."),
        "too large": ({"listen_type": "single", "payload": [_one(track_name="x" * 20_000)]},
                      "JSON document is too large. In aggregate, listens may not be larger than 10240 characters."),
        "no listened_at": ({"listen_type": "single", "payload": [{"track_metadata": {"track_name": "a",
                                                                                    "artist_name": "b"}}]},
                           "JSON document must contain the key listened_at at the top level."),
        "text listened_at": ({"listen_type": "single", "payload": [_one("yesterday")]},
                             "JSON document must contain an int value for listened_at."),
        "huge listened_at": (b'{"listen_type": "single", "payload": [{"listened_at": 1' + b"0" * 5000 +
                             b', "track_metadata": {"track_name": "a", "artist_name": "b"}}]}', "listened_at"),
        "infinite listened_at": (b'{"listen_type": "single", "payload": [{"listened_at": 1e999, '
                                 b'"track_metadata": {"track_name": "a", "artist_name": "b"}}]}', "listened_at"),
        "too old": ({"listen_type": "single", "payload": [_one(1_000_000_000)]},
                    "Value for key listened_at is too low. listened_at timestamp should be greater than 1033430400 "
                    "(2002-10-01 00:00:00 UTC)."),
        "from the future": ({"listen_type": "single", "payload": [_one(int(time.time()) + 3 * DAY_S + 10**8)]},
                            "Value for key listened_at is too high."),
        "extra key": ({"listen_type": "single", "payload": [{**_one(), "user": "me"}]},
                      "JSON document may only contain listened_at and track_metadata top level keys"),
        "no track": ({"listen_type": "single", "payload": [_one(track_name="  ")]},
                     "JSON document does not contain required track_metadata.track_name."),
        "artist list": ({"listen_type": "single", "payload": [_one(artist_name=["A", "B"])]},
                        "artist_name must be a single string."),
        "NUL": ({"listen_type": "single", "payload": [_one(track_name="a\x00b")]}, "NUL"),
        "lone surrogate": (b'{"listen_type": "single", "payload": [{"listened_at": 1700000000, "track_metadata": '
                           b'{"track_name": "\\ud800", "artist_name": "b"}}]}', "lone surrogate"),
        "playing_now with a time": ({"listen_type": "playing_now", "payload": [_one()]},
                                    "JSON document must not contain listened_at while submitting playing_now."),
        "51 tags": ({"listen_type": "single", "payload": [_one(additional_info={"tags": ["t"] * 51})]},
                    "JSON document may not contain more than 50 items in track_metadata.additional_info.tags."),
        "bad mbid": ({"listen_type": "single", "payload": [_one(additional_info={"recording_mbid": "nope"})]},
                     "recording_mbid MBID format invalid."),
        "negative duration": ({"listen_type": "single", "payload": [_one(additional_info={"duration_ms": -5})]},
                              "Value for duration_ms is invalid, should be a positive integer."),
        "one bad among 1,000": ({"listen_type": "import", "payload": good + [_one(track_name=None)]},
                                "JSON document does not contain required track_metadata.track_name."),
    }
    for name, (body, message) in cases.items():
        answer = _post(server, token, body)
        assert answer.status_code == 400, (name, answer.status_code, answer.text[:300])
        assert answer.json()["code"] == 400 and message in answer.json()["error"], (name, answer.json())
    too_big = _post(server, token, b"[" + b" " * 11_000_000 + b"]")
    assert too_big.status_code == 413 and too_big.json()["code"] == 413
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer x"}):
        answer = requests.post(f"{server.url}/1/submit-listens", json={"listen_type": "single", "payload": [_one()]},
                               headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.json() == {
            "code": 401, "error": "You need to provide an Authorization header."}
    assert counts(db_conn) | {"tracks": 0} == {"plays": 0, "listen_inbox": 0, "playing_now": 0, "tracks": 0,
                                                "play_clients": 0}
    assert db_conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 0

    # From another site's page (a web player, a browser extension): allowed, as ListenBrainz allows it.
    answer = _post(server, token, {"listen_type": "single", "payload": [_one()]},
                   headers={"Origin": "chrome-extension://abcdef", "Sec-Fetch-Site": "cross-site"})
    assert answer.status_code == 200 and counts(db_conn)["listen_inbox"] == 1


def test_a_polled_play_and_the_same_play_scrobbled_are_one(app, db_conn, simulator, server):
    """The simulator's 50 recently played, polled; the same plays scrobbled as a player
    would (stamped at their start, a track length before Spotify's stamp, only those heard
    long enough to be scrobbled), by Spotify link, by ISRC or by names alone: nothing new.
    Then the other way round for another listener: scrobbled first, polled after."""
    freeze(simulator)
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])
    archivist = Archivist.from_app(app)
    world = simulator.world
    sam_plays = window(simulator, "sim-acct-sam", world.clock.now_ms())
    assert poll_user(archivist, users["sim-acct-sam"]).new_plays == 50

    sam_token, _ = _token_for(app, "sim-acct-sam")
    scrobbled = _scrobbles(world, "sim-acct-sam")
    assert len(scrobbled) >= 20  # more than half of the 50 were heard long enough to scrobble
    assert _post(server, sam_token, {"listen_type": "import", "payload": scrobbled}).status_code == 200
    merged = merge_inbox(app.extensions["database"], users["sim-acct-sam"])
    assert sum(m.imported for m in merged) == 0 and sum(m.already_in_archive for m in merged) == len(scrobbled)
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s",
                           (users["sim-acct-sam"],)).fetchone()[0] == len(sam_plays) == 50

    riley_token, _ = _token_for(app, "sim-acct-riley")
    scrobbled = _scrobbles(world, "sim-acct-riley")
    assert _post(server, riley_token, {"listen_type": "import", "payload": scrobbled}).status_code == 200
    assert sum(m.imported for m in merge_inbox(app.extensions["database"], users["sim-acct-riley"])) == len(scrobbled)
    polled = poll_user(archivist, users["sim-acct-riley"])
    assert polled.new_plays == 50 - len(scrobbled)  # only the plays no scrobbler sent
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s",
                           (users["sim-acct-riley"],)).fetchone()[0] == 50


def _scrobbles(world, key: str) -> list[dict]:
    """What a scrobbler would have sent for an account's 50 recently played: each play
    heard for half its track or 4 minutes, stamped at its start, identified three ways."""
    account = world.account(key)
    out = []
    for n, play in enumerate(world.recently_played(account, world.clock.now_ms(), limit=50)):
        track = world.catalogue.tracks[play.track_index]
        if play.ms_played < min(track.duration_ms // 2, 240_000):
            continue
        artists = ", ".join(world.catalogue.artists[i].name for i in track.artist_indexes)
        info = {"duration_ms": track.duration_ms, "submission_client": "test scrobbler"}
        if n % 3 == 0:
            info["spotify_id"] = f"https://open.spotify.com/track/{track.id}"
        elif n % 3 == 1:
            info["isrc"] = track.isrc
        out.append({"listened_at": (play.played_at_ms - play.ms_played) // 1000,
                    "track_metadata": {"track_name": track.name, "artist_name": artists,
                                       "release_name": world.catalogue.albums[track.album_index].name,
                                       "additional_info": info}})
    return out


def test_two_real_repeats_of_a_short_track_are_two_plays(app, db_conn, server):
    """A 40-second track played twice in a row: polled (ends 40 s apart) and scrobbled
    (starts 40 s apart) it is two plays, whichever arrives first; scrobbled alone, two."""
    sign_in(app.test_client(), "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    token, _ = _token_for(app, "sim-acct-sam")
    start = 1_750_000_000
    track_id = db_conn.execute("INSERT INTO tracks (spotify_id, name, duration_ms, isrc) "
                               "VALUES ('shortshortshortshort01', 'Intro', 40000, 'GBAYE0000001') RETURNING id"
                               ).fetchone()[0]
    artist_id = db_conn.execute("INSERT INTO artists (spotify_id, name) VALUES ('artistartistartist0001', "
                                "'Quick Band') RETURNING id").fetchone()[0]
    db_conn.execute("INSERT INTO track_artists VALUES (%s, 0, %s)", (track_id, artist_id))
    db_conn.commit()

    def scrobble(at):
        return {"listened_at": at, "track_metadata": {"track_name": "Intro", "artist_name": "Quick Band",
                                                      "additional_info": {"isrc": "GBAYE0000001"}}}

    # Only the scrobbles: two plays.
    assert _post(server, token, {"listen_type": "import", "payload": [scrobble(start), scrobble(start + 40)]}
                 ).status_code == 200
    assert sum(m.imported for m in merge_inbox(app.extensions["database"], uid)) == 2
    # Polled too (ends at start+40 and start+80): still two.
    db_conn.execute("INSERT INTO plays (played_at, user_id, track_id, source) VALUES "
                    "(to_timestamp(%s), %s, %s, 1)", (start + 40.2, uid, track_id))
    db_conn.execute("INSERT INTO plays (played_at, user_id, track_id, source) VALUES "
                    "(to_timestamp(%s), %s, %s, 1)", (start + 80.7, uid, track_id))
    db_conn.execute("DELETE FROM plays WHERE source = 4")
    db_conn.commit()
    assert _post(server, token, {"listen_type": "import", "payload": [scrobble(start), scrobble(start + 40)]}
                 ).status_code == 200
    merged = merge_inbox(app.extensions["database"], uid)
    assert sum(m.imported for m in merged) == 0 and sum(m.already_in_archive for m in merged) == 2
    # Only the first repeat polled: the second scrobble is a play of its own.
    db_conn.execute("DELETE FROM plays WHERE played_at > to_timestamp(%s)", (start + 60,))
    db_conn.commit()
    assert _post(server, token, {"listen_type": "import", "payload": [scrobble(start), scrobble(start + 40)]}
                 ).status_code == 200
    assert sum(m.imported for m in merge_inbox(app.extensions["database"], uid)) == 1
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 2


def test_rate_limits_are_told_in_listenbrainz_headers_and_enforced_per_token(app, db_conn, server, simulator):
    import dataclasses

    freeze(simulator)  # the app's clock: one 10-second window however slowly the machine answers
    app.config["SETTINGS"] = dataclasses.replace(app.config["SETTINGS"], api_requests_per_10s=5)
    sign_in(app.test_client(), "sim-acct-sam")
    token, _ = _token_for(app, "sim-acct-sam")
    other, _ = _token_for(app, "sim-acct-sam")
    body = {"listen_type": "single", "payload": [_one(1_700_000_000)]}
    remaining = []
    for _ in range(5):
        answer = _post(server, token, body)
        assert answer.status_code == 200
        assert answer.headers["X-RateLimit-Limit"] == "5" and 0 < int(answer.headers["X-RateLimit-Reset-In"]) <= 10
        remaining.append(int(answer.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = _post(server, token, body)
    assert refused.status_code == 429 and refused.json()["code"] == 429 and "Too many requests" in refused.json()["error"]
    assert refused.headers["X-RateLimit-Remaining"] == "0" and int(refused.headers["Retry-After"]) >= 1
    assert _post(server, other, body).status_code == 200  # another token has its own allowance
    assert counts(db_conn)["listen_inbox"] == 6  # the refused request wrote nothing


def test_web_players_may_call_the_api_from_their_own_pages(server):
    """A browser's CORS preflight for submit-listens is answered as ListenBrainz answers it."""
    preflight = requests.options(f"{server.url}/1/submit-listens", timeout=10, headers={
        "Origin": "https://player.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    listens = requests.get(f"{server.url}/1/user/nobody/listens", headers={"Origin": "https://player.example"},
                           timeout=10)
    assert listens.status_code == 404 and listens.headers["Access-Control-Allow-Origin"] == "*"


def test_scrobbles_known_only_by_names_then_spotify_export_of_the_same_plays_add_once(app, db_conn, server, importer):
    """A scrobbler sent five plays by names alone (name-only tracks); Spotify's export of
    the same plays, by track id, later: only the export's sixth play is new."""
    from test_import_shapes import extended, zipped

    sign_in(app.test_client(), "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    token, _ = _token_for(app, "sim-acct-sam")
    ends = [1_750_000_000 + n * 900 for n in range(6)]
    listens = [{"listened_at": end - 200, "track_metadata": {"track_name": f"Song {n}", "artist_name": "Band",
                                                             "release_name": "Album"}}
               for n, end in enumerate(ends[:5])]
    assert _post(server, token, {"listen_type": "import", "payload": listens}).status_code == 200
    assert sum(m.imported for m in merge_inbox(app.extensions["database"], uid)) == 5
    assert db_conn.execute("SELECT count(*) FROM tracks WHERE spotify_id IS NULL").fetchone()[0] == 5

    from datetime import datetime, timezone
    rows = [extended(datetime.fromtimestamp(end, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), f"Song {n}", "Band",
                     f"spotify:track:{n:022d}") for n, end in enumerate(ends)]
    record = importer(uid, {"my_spotify_data.zip": zipped({"Streaming_History_Audio_2025.json": rows})})
    assert record.status == "done", record.error
    assert (record.report["imported"], record.report["already_in_archive"]) == (1, 5)
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 6


def test_names_arrive_as_sent_whatever_characters_they_hold(app, db_conn, server):
    """Listens travel to Postgres as one JSON document: quotes, backslashes, escapes that look
    like JSON's, control characters, emoji, right-to-left marks and line separators must
    come out of it as the player sent them, singly and in a batch (less the white space
    around a name, which is trimmed)."""
    sign_in(app.test_client(), "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    token, _ = _token_for(app, "sim-acct-sam")
    names = ['Say "Hi"', "back\\slash \\u0041 \\n", "tab\there\x01\x1fend", "🎧 Ärzte ‮RTL‬", "line\u2028sep\u2029end",
             "' OR 1=1; --", "{\"track\": [1]}", "null"]
    single = _one(1_700_000_000, track_name=names[0], artist_name=names[1], release_name=names[2],
                  additional_info={"submission_client": names[3]})
    assert _post(server, token, {"listen_type": "single", "payload": [single]}).status_code == 200
    batch = [_one(1_700_000_000 + 600 * (n + 1), track_name=name, artist_name=name, release_name=name,
                  additional_info={"submission_client": "Player " + name}) for n, name in enumerate(names)]
    assert _post(server, token, {"listen_type": "import", "payload": batch}).status_code == 200
    inbox = db_conn.execute("SELECT track_name, artist_name, release_name, client_name FROM listen_inbox "
                            "ORDER BY listened_at").fetchall()
    label = " ".join  # a player's name is a label: its white space runs become single spaces
    assert inbox == [(*names[:3], label(names[3].split()))] + [
        (name, name, name, label(("Player " + name).split())) for name in names]
    assert sum(m.imported for m in merge_inbox(app.extensions["database"], uid)) == 1 + len(names)
    archived = {row[0] for row in db_conn.execute("SELECT t.name FROM plays p JOIN tracks t ON t.id = p.track_id")}
    assert archived == set(names)


def test_requests_written_together_are_each_checked_and_counted_as_if_one_by_one(app, db_conn, simulator):
    """One statement for several requests (the web process's group commit): each request's
    token is checked and counted in the order given, and only the listens of a live token
    within its limit are written; one merge is queued per user."""
    from datetime import timedelta

    from app.api import ingest, submit, tokens
    from app.limits import Limit

    freeze(simulator)
    sign_in(app.test_client(), "sim-acct-sam")
    sign_in(app.test_client(), "sim-acct-riley")
    sam, _ = _token_for(app, "sim-acct-sam")
    alex, _ = _token_for(app, "sim-acct-riley")
    revoked, revoked_id = _token_for(app, "sim-acct-sam")
    database, now = app.extensions["database"], app.extensions["clock"]()
    with database.session() as session:
        assert tokens.revoke(session, db_conn.execute("SELECT user_id FROM api_tokens WHERE id = %s",
                                                      (revoked_id,)).fetchone()[0], revoked_id, now=now)

    def single(track: str) -> submit.Submission:
        return submit.parse(json.dumps({"listen_type": "single", "payload": [_one(1_700_000_000, track_name=track)]}
                                       ).encode(), now_s=int(now.timestamp()))

    requests_ = [ingest.Request(sam, single("one")), ingest.Request(revoked, single("revoked")),
                 ingest.Request(sam, single("two")), ingest.Request(alex), ingest.Request(sam, single("three")),
                 ingest.Request("no such token", single("nobody"))]
    with database.connection(autocommit=True) as conn:
        answers = ingest.authorise(conn, requests_, Limit("api", 2, timedelta(seconds=10)), now=now)
    assert [(a.user_id is not None, a.usage.used, a.written) for a in answers] == [
        (True, 1, True), (False, 1, False), (True, 2, True), (True, 1, False), (True, 3, False), (False, 1, False)]
    assert sorted(r[0] for r in db_conn.execute("SELECT track_name FROM listen_inbox")) == ["one", "two"]
    assert db_conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE task_name LIKE '%merge_listens'"
                           ).fetchone()[0] == 1


def test_concurrent_single_listens_are_each_written_and_counted_once(app, db_conn, server, simulator):
    """Scrobblers at once, over real HTTP (the threaded server: requests meet in the group
    commit): every listen arrives once, and each request of a token is told its own
    place in the rate limit."""
    from concurrent.futures import ThreadPoolExecutor

    freeze(simulator)
    sign_in(app.test_client(), "sim-acct-sam")
    sign_in(app.test_client(), "sim-acct-riley")
    tokens_ = [_token_for(app, "sim-acct-sam")[0], _token_for(app, "sim-acct-riley")[0]]

    def send(n: int):
        answer = _post(server, tokens_[n % 2], {"listen_type": "single",
                                                "payload": [_one(1_700_000_000 + n * 300, track_name=f"Song {n}")]})
        return n % 2, answer.status_code, int(answer.headers["X-RateLimit-Remaining"])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(40)))
    assert {status for _, status, _ in answers} == {200}
    for token in (0, 1):
        assert sorted(left for t, _, left in answers if t == token) == list(range(100 - 20, 100))
    assert db_conn.execute("SELECT count(DISTINCT track_name), count(*) FROM listen_inbox").fetchone() == (40, 40)


@pytest.mark.parametrize("front", ["asgi", "wsgi"])
def test_single_listens_are_answered_before_flask_with_the_same_headers(app, db_conn, front, request, monkeypatch):
    """The fast path (app/api/fastpath.py), on the event loop as the Procfile's web
    process runs it and in plain WSGI, answers a single listen without the Flask view; its
    answers carry what the view's carry (a chunked body always goes to the view); and when
    it fails, the view answers. On the event loop it takes import batches too."""
    import functools

    import psycopg

    server = request.getfixturevalue("server" if front == "asgi" else "wsgi_server")
    sign_in(app.test_client(), "sim-acct-sam")
    token, _ = _token_for(app, "sim-acct-sam")
    view_calls = []
    view = app.view_functions["api.submit_listens"]

    @functools.wraps(view)  # the same name: still exempt from the forms' CSRF check
    def counted_view():
        view_calls.append(1)
        return view()

    monkeypatch.setitem(app.view_functions, "api.submit_listens", counted_view)
    batch = {"listen_type": "import", "payload": [_one(1_700_000_000 + n * 300) for n in range(200)]}

    def chunked(body: dict) -> Iterator[bytes]:
        data = json.dumps(body).encode()
        return iter([data[:1000], data[1000:]])  # requests sends an iterator chunked

    for single, larger in ((_post(server, token, {"listen_type": "single", "payload": [_one(1_600_000_000)]}),
                            _post(server, token, chunked(batch))),
                           (_post(server, "not a token", {"listen_type": "single", "payload": [_one()]}),
                            _post(server, "not a token", chunked(batch))),
                           (_post(server, token, {"listen_type": "single", "payload": []}),
                            _post(server, token, chunked({**batch, "listen_type": "many"})))):
        assert single.status_code == larger.status_code, larger.text
        assert single.json()["code" if single.status_code != 200
                                                                           else "status"]
        ignore = {"Content-Length", "X-Request-ID", "Date", "Server", "Connection"}
        assert set(single.headers) - ignore == set(larger.headers) - ignore, single.status_code
        assert {k: v for k, v in single.headers.items() if k.startswith(("Access-", "Content-Security", "X-Frame"))} \
            == {k: v for k, v in larger.headers.items() if k.startswith(("Access-", "Content-Security", "X-Frame"))}
    assert len(view_calls) == 3  # the chunked bodies only
    second_batch = {"listen_type": "import", "payload": [_one(1_710_000_000 + n * 300) for n in range(200)]}
    assert _post(server, token, second_batch).status_code == 200
    assert len(view_calls) == (3 if front == "asgi" else 4)  # a batch of declared length: by the view in WSGI
    assert db_conn.execute("SELECT count(*) FROM listen_inbox").fetchone()[0] == 401
    assert _post(server, token, {"listen_type": "single", "payload": [_one()]},
                 headers={"X-Request-ID": "trace-1"}).headers["X-Request-ID"] == "trace-1"

    def unavailable(request):
        raise psycopg.OperationalError("the server closed the connection")

    async def unavailable_async(request):
        unavailable(request)

    monkeypatch.setattr(app.extensions["api.receiver"].writer, "submit", unavailable)
    if front == "asgi":
        monkeypatch.setattr(server.app.writer, "submit", unavailable_async)
    answer = _post(server, token, {"listen_type": "single", "payload": [_one(1_650_000_000)]})
    assert answer.status_code == 503 and answer.json()["code"] == 503 and answer.headers["Retry-After"]
    assert len(view_calls) == (4 if front == "asgi" else 5)
    assert db_conn.execute("SELECT count(*) FROM listen_inbox WHERE listened_at = 1650000000").fetchone()[0] == 0


def test_a_merge_cannot_start_between_the_look_for_it_and_the_commit_of_the_listens_it_must_take(
        app, db_conn, database_url, simulator):
    """A statement that finds a merge waiting (and so queues none) holds that job until it
    commits: a worker taking it meanwhile (FOR UPDATE SKIP LOCKED, as procrastinate does)
    passes it by, so the merge cannot read the inbox without the statement's listens and
    leave them for the minute's sweep (seen in bench.ingest: a phase's drain took a minute)."""
    import psycopg

    from app.api import ingest, submit
    from app.api.routes import _limit

    freeze(simulator)
    sign_in(app.test_client(), "sim-acct-sam")
    token, _ = _token_for(app, "sim-acct-sam")
    database, now = app.extensions["database"], app.extensions["clock"]()

    def listen(ts: int) -> ingest.Request:
        return ingest.Request(token, submit.parse(json.dumps({"listen_type": "single", "payload": [_one(ts)]}).encode(),
                                                  now_s=int(now.timestamp())))

    def take_merge(conn) -> list:
        return conn.execute("SELECT id FROM procrastinate_jobs WHERE task_name LIKE '%%merge_listens' "
                            "AND status = 'todo' FOR UPDATE SKIP LOCKED").fetchall()

    with database.connection(autocommit=True) as conn:
        assert ingest.authorise(conn, [listen(1_700_000_000)], _limit(app), now=now)[0].written  # queues the merge
    with psycopg.connect(database_url) as statement, psycopg.connect(database_url) as worker:
        assert ingest.authorise(statement, [listen(1_700_000_600)], _limit(app), now=now)[0].written
        assert db_conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 1  # none more
        assert take_merge(worker) == []  # held: the listens are not committed yet
        worker.rollback()
        statement.commit()
        assert len(take_merge(worker)) == 1  # now the merge starts, and the inbox holds both
        assert worker.execute("SELECT count(*) FROM listen_inbox").fetchone()[0] == 2
        worker.rollback()


def test_listens_left_without_a_merge_get_one(app, db_conn, simulator):
    """The listens' statement commits before their merge is queued: listens of a web
    process that died in between are found by the periodic sweep, and merged."""
    from datetime import timedelta

    from app.api.ingest import queue_forgotten_merges

    freeze(simulator)
    sign_in(app.test_client(), "sim-acct-sam")
    sign_in(app.test_client(), "sim-acct-riley")
    now = app.extensions["clock"]()
    sam, riley = (db_conn.execute("SELECT id FROM users WHERE spotify_id = %s", (name,)).fetchone()[0]
                  for name in ("sim-acct-sam", "sim-acct-riley"))
    for user, received in ((sam, now - timedelta(minutes=5)), (riley, now - timedelta(seconds=10))):
        db_conn.execute("INSERT INTO listen_inbox (user_id, client_name, listened_at, track_name, artist_name, "
                        "received_at) VALUES (%s, 'Pano Scrobbler', 1700000000, 'Song', 'Band', %s)", (user, received))
    db_conn.commit()
    database = app.extensions["database"]
    assert queue_forgotten_merges(database, now=now) == [sam]  # Riley's may still be on their way to a merge
    assert queue_forgotten_merges(database, now=now) == []  # Sam's merge is queued now
    assert db_conn.execute("SELECT task_name, args->>'user_id' FROM procrastinate_jobs").fetchall() == [
        ("jobs.listens.merge_listens", str(sam))]
    assert sum(m.imported for m in merge_inbox(database, sam)) == 1
    assert queue_forgotten_merges(database, now=now + timedelta(minutes=2)) == [riley]
