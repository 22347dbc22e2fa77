"""Histories from other services, each built here from the layout docs/imports.md
describes: detected, read row by row with the same report as Spotify's, imported twice
without adding anything, and the same listens from two services counted once."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime, timezone

import pytest

from conftest import sign_in

START = 1_717_236_000  # 2024-06-01 10:00 UTC: the first scrobble's start


def utc(ts: int, fmt: str) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime(fmt)


# Ten scrobbles, 4 minutes apart; a name with an accent and a comma, to test quoting.
HISTORY = [(START + n * 240, f"Track {n}" if n != 3 else "Café, au lait", "The Band" if n % 2 else "Ärzte",
            f"Album {n % 3}") for n in range(10)]


def lastfm_csv() -> bytes:
    """lastfm.ghan.nl's CSV: a header, then uts,utc_time,artist,artist_mbid,album,album_mbid,track,track_mbid."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["uts", "utc_time", "artist", "artist_mbid", "album", "album_mbid", "track", "track_mbid"])
    for ts, track, artist, album in reversed(HISTORY):  # newest first, as the tool writes
        writer.writerow([ts, utc(ts, "%d %b %Y, %H:%M"), artist, "", album, "", track, ""])
    writer.writerow(["", "", "Broken", "", "", "", "", ""])  # no time, no track: cannot be read
    return out.getvalue().encode()


def lastfm_headerless_csv() -> bytes:
    """lastfm-to-csv: artist,album,track,date with no header, the date in UTC to the minute."""
    out = io.StringIO()
    csv.writer(out).writerows([artist, album, track, utc(ts, "%d %b %Y %H:%M")] for ts, track, artist, album in HISTORY)
    return out.getvalue().encode()


def lastfm_json() -> bytes:
    """lastfm.ghan.nl's JSON: the API's recenttracks pages; the first track of the first page
    is the one playing now (no date)."""
    tracks = [{"artist": {"mbid": "", "#text": artist}, "streamable": "0", "mbid": "", "album": {"mbid": "", "#text": album},
               "name": track, "url": "https://www.last.fm/music/x", "date": {"uts": str(ts), "#text": utc(ts, "%d %b %Y, %H:%M")}}
              for ts, track, artist, album in reversed(HISTORY)]
    playing = {"artist": {"#text": "Now"}, "name": "Playing", "album": {"#text": ""}, "@attr": {"nowplaying": "true"}}
    return json.dumps([{"track": [playing] + tracks[:6], "@attr": {"page": "1", "totalPages": "2"}},
                       {"track": tracks[6:], "@attr": {"page": "2", "totalPages": "2"}}]).encode()


def listenbrainz_listen(ts: int, track: str, artist: str, album: str, **info) -> dict:
    return {"listened_at": ts, "inserted_at": ts + 5.5, "track_metadata": {
        "artist_name": artist, "track_name": track, "release_name": album,
        "additional_info": {"submission_client": "Pano Scrobbler", **info}, "recording_msid": "0" * 36,
        "mbid_mapping": None}}


def listenbrainz_zip() -> bytes:
    """Its user export: user.json, listens/<year>/<month>.jsonl (one listen a line), feedback.jsonl."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("user.json", json.dumps({"user_id": 7, "username": "someone"}))
        lines = [json.dumps(listenbrainz_listen(ts, track, artist, album, duration_ms=200_000))
                 for ts, track, artist, album in HISTORY]
        archive.writestr("listens/2024/6.jsonl", "\n".join(lines[:6]) + "\n{not json\n")
        archive.writestr("listens/2024/7.jsonl", "\n".join(lines[6:]) + "\n")
        archive.writestr("feedback.jsonl", json.dumps({"recording_msid": "x", "score": 1}) + "\n")
    return buffer.getvalue()


def listenbrainz_json() -> bytes:
    """The older export: one JSON list of listens."""
    return json.dumps([listenbrainz_listen(ts, track, artist, album) for ts, track, artist, album in HISTORY]).encode()


def maloja_json() -> bytes:
    return json.dumps({"maloja": {"export_time": START + 10 * DAY}, "scrobbles": [
        {"time": ts, "track": {"artists": [artist], "title": track, "album": {"albumtitle": album, "artists": [artist]},
                               "length": 200}, "duration": 180, "origin": "client:navidrome"}
        for ts, track, artist, album in HISTORY]}).encode()


DAY = 86_400
APPLE_COLUMNS = ["Album Name", "Container Album Name", "Device OS Name", "End Reason Type", "Event End Timestamp",
                 "Event Start Timestamp", "Event Type", "Media Duration In Milliseconds", "Media Type",
                 "Play Duration Milliseconds", "Song Name", "UTC Offset In Seconds"]


def apple_csv() -> bytes:
    """Apple Music Play Activity.csv: one row per event; music plays are AUDIO rows with a
    song, an end and how long they played (no artist in recent files)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, APPLE_COLUMNS)
    writer.writeheader()
    for ts, track, _artist, album in HISTORY:
        writer.writerow({"Album Name": album, "Container Album Name": album, "Device OS Name": "iOS",
                         "End Reason Type": "NATURAL_END_OF_TRACK", "Event End Timestamp": utc(ts + 200, "%Y-%m-%dT%H:%M:%S.000Z"),
                         "Event Start Timestamp": utc(ts, "%Y-%m-%dT%H:%M:%S.000Z"), "Event Type": "PLAY_END",
                         "Media Duration In Milliseconds": 200_000, "Media Type": "AUDIO",
                         "Play Duration Milliseconds": 200_000, "Song Name": track, "UTC Offset In Seconds": 7200})
    writer.writerow({"Event Type": "LYRIC_DISPLAY", "Event End Timestamp": utc(START, "%Y-%m-%dT%H:%M:%S.000Z"),
                     "Media Type": "AUDIO"})
    writer.writerow({"Song Name": "A music video", "Media Type": "VIDEO", "Event Type": "PLAY_END",
                     "Event End Timestamp": utc(START, "%Y-%m-%dT%H:%M:%S.000Z"), "Play Duration Milliseconds": 90_000})
    writer.writerow({"Song Name": "Skipped", "Media Type": "AUDIO", "Event Type": "PLAY_END",
                     "End Reason Type": "TRACK_SKIPPED_FORWARDS", "Play Duration Milliseconds": 4_000,
                     "Event End Timestamp": utc(START + 5000, "%Y-%m-%dT%H:%M:%S.000Z")})
    return out.getvalue().encode()


def youtube_json() -> bytes:
    """Google Takeout's watch-history.json: YouTube Music entries among ordinary videos.
    Real Takeouts link many YouTube Music songs on www.youtube.com (only the header says
    YouTube Music): every other one here does; and a song since removed has no link."""
    music = [{"header": "YouTube Music", "title": f"Watched {track}",
              "titleUrl": f"https://{'music' if n % 2 else 'www'}.youtube.com/watch?v=abc",
              "subtitles": [{"name": f"{artist} - Topic", "url": "https://www.youtube.com/channel/x"}],
              "time": utc(ts, "%Y-%m-%dT%H:%M:%S.123Z"), "products": ["YouTube"], "activityControls": ["YouTube watch history"]}
             for n, (ts, track, artist, _album) in enumerate(HISTORY)]
    video = {"header": "YouTube", "title": "Watched a cat video", "titleUrl": "https://www.youtube.com/watch?v=cat",
             "time": utc(START, "%Y-%m-%dT%H:%M:%SZ"), "products": ["YouTube"]}
    removed = {"header": "YouTube Music", "title": "Watched a video that has been removed",
               "time": utc(START, "%Y-%m-%dT%H:%M:%SZ"), "products": ["YouTube"]}
    return json.dumps(list(reversed(music)) + [video, removed]).encode()


# name, file name, bytes, (rows, imported, skipped)
FORMATS = [
    ("Last.fm CSV", "scrobbles.csv", lastfm_csv, (11, 10, {"malformed_row": 1})),
    ("Last.fm CSV without header", "lastfm-export.csv", lastfm_headerless_csv, (10, 10, {})),
    ("Last.fm JSON", "lastfm_someone.json", lastfm_json, (11, 10, {"malformed_row": 1})),
    ("ListenBrainz zip", "listenbrainz_someone_1717236000.zip", listenbrainz_zip, (11, 10, {"malformed_row": 1})),
    ("ListenBrainz JSON", "someone_lb-2024-07-01.json", listenbrainz_json, (10, 10, {})),
    ("Maloja", "maloja_export_20240611.json", maloja_json, (10, 10, {})),
    ("Apple Music", "Apple Music Play Activity.csv", apple_csv, (13, 10, {"not_music": 2, "short_play": 1})),
    ("YouTube Music", "watch-history.json", youtube_json, (12, 10, {"not_music": 1, "malformed_row": 1})),
]


@pytest.mark.parametrize("name, filename, make, expected", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_is_read_with_its_report_and_a_second_import_adds_nothing(app, client, db_conn, importer, name,
                                                                                filename, make, expected):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    data = make()
    first = importer(uid, {filename: data})
    assert first.status == "done", first.error
    rows, imported, skipped = expected
    report = first.report
    assert (report["rows"], report["imported"], report["skipped"]) == (rows, imported, skipped), report
    played = db_conn.execute("SELECT t.name, extract(epoch FROM p.played_at)::bigint, p.ms_played FROM plays p "
                             "JOIN tracks t ON t.id = p.track_id ORDER BY p.played_at").fetchall()
    assert [r[0] for r in played] == [track for _, track, _, _ in HISTORY]
    if name == "Apple Music":  # stamped at the end, with what was played
        assert [(r[1], r[2]) for r in played] == [(ts + 200, 200_000) for ts, *_ in HISTORY]
    else:  # stamped at the start; stored at the end when the length is known
        length = {"ListenBrainz zip": 200, "Maloja": 200}.get(name, 0)
        assert [r[1] for r in played] == [ts + length for ts, *_ in HISTORY]
    sources = {r[0] for r in db_conn.execute("SELECT DISTINCT source FROM plays")}
    assert len(sources) == 1 and sources != {1}

    again = importer(uid, {filename: data})
    assert again.status == "done" and again.report["imported"] == 0
    assert again.report["already_in_archive"] == imported
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == imported


def test_the_same_listens_from_two_services_are_counted_once(app, client, db_conn, importer):
    """Last.fm and ListenBrainz both got the same scrobbles (a scrobbler sending to both):
    the second export adds nothing, whichever comes first; YouTube Music's history of the
    same plays neither."""
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    assert importer(uid, {"scrobbles.csv": lastfm_csv()}).report["imported"] == 10
    from_lb = importer(uid, {"listenbrainz_someone.zip": listenbrainz_zip()})
    assert (from_lb.report["imported"], from_lb.report["already_in_archive"]) == (0, 10)
    assert importer(uid, {"watch-history.json": youtube_json()}).report["imported"] == 0
    # Apple's file names no artist: its plays are found among these by track and album.
    assert importer(uid, {"Apple Music Play Activity.csv": apple_csv()}).report["imported"] == 0
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 10


def test_apple_music_first_then_the_same_plays_scrobbled_are_counted_once(app, client, db_conn, importer):
    """Apple's file (songs without an artist) imported before Last.fm's record of the same
    plays: the scrobbles, which name the artist, are found as Apple's plays by song and
    album, and so are ListenBrainz's; Apple's file again adds nothing either."""
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    assert importer(uid, {"Apple Music Play Activity.csv": apple_csv()}).report["imported"] == 10
    for name, data in (("scrobbles.csv", lastfm_csv()), ("listenbrainz_someone.zip", listenbrainz_zip()),
                       ("Apple Music Play Activity.csv", apple_csv())):
        report = importer(uid, {name: data}).report
        assert (report["imported"], report["already_in_archive"]) == (0, 10), (name, report)
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (uid,)).fetchone()[0] == 10


APPLE_INTROS = [("Intro", "", 1), ("Intro", "First Album", 2), ("Intro", "Second Album", 1), ("Outro", "First Album", 1)]


def apple_intros_csv() -> bytes:
    """Five plays of songs without an artist: "Intro" of two albums (once in other case),
    of no album, and another song of the first album."""
    out = io.StringIO()
    writer = csv.DictWriter(out, APPLE_COLUMNS)
    writer.writeheader()
    plays = [("Intro", "First Album"), ("Intro", "Second Album"), ("intro", "first album"), ("Intro", ""),
             ("Outro", "First Album")]
    for n, (song, album) in enumerate(plays):
        ts = START + n * 600
        writer.writerow({"Album Name": album, "Container Album Name": album, "Event Type": "PLAY_END",
                         "Event End Timestamp": utc(ts + 200, "%Y-%m-%dT%H:%M:%S.000Z"), "Media Type": "AUDIO",
                         "Media Duration In Milliseconds": 200_000, "Play Duration Milliseconds": 200_000,
                         "Song Name": song})
    return out.getvalue().encode()


def tracks_and_albums(conn, user_id: int) -> list[tuple]:
    """(track, album, plays) of the user's plays, one row per track."""
    return conn.execute("""
        SELECT t.name, coalesce(al.name, ''), count(*) FROM plays p JOIN tracks t ON t.id = p.track_id
          LEFT JOIN albums al ON al.id = t.album_id WHERE p.user_id = %s
         GROUP BY t.id, t.name, al.name ORDER BY 1, 2, 3""", (user_id,)).fetchall()


def test_songs_without_an_artist_are_one_track_per_album(app, client, db_conn, importer):
    """Apple names no artist: "Intro" of two albums is two tracks, each listed with its album
    (and the same file again adds nothing)."""
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    data = apple_intros_csv()
    first = importer(uid, {"Apple Music Play Activity.csv": data}).report
    assert (first["imported"], first["name_only_tracks"]) == (5, 4), first
    assert tracks_and_albums(db_conn, uid) == APPLE_INTROS
    again = importer(uid, {"Apple Music Play Activity.csv": data}).report
    assert (again["imported"], again["already_in_archive"], again["name_only_tracks"]) == (0, 5, 0), again


def test_a_song_without_an_artist_keeps_its_track_when_imported_again(app, client, db_conn, importer):
    """One upload: Last.fm's "Intro" by a band on "Debut", and Apple's "Intro" of "Debut" (no
    artist) two hours later, a play of its own. Imported again, the upload adds nothing:
    Apple's play is found as the song without an artist it became, not taken for the band's
    song of the same album (which made it a second, new play)."""
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    scrobbles = io.StringIO()
    csv.writer(scrobbles).writerows([["uts", "utc_time", "artist", "artist_mbid", "album", "album_mbid", "track",
                                      "track_mbid"], [START, "", "The Band", "", "Debut", "", "Intro", ""]])
    apple = io.StringIO()
    writer = csv.DictWriter(apple, APPLE_COLUMNS)
    writer.writeheader()
    writer.writerow({"Album Name": "Debut", "Event Type": "PLAY_END", "Media Type": "AUDIO", "Song Name": "Intro",
                     "Event End Timestamp": utc(START + 7400, "%Y-%m-%dT%H:%M:%S.000Z"),
                     "Media Duration In Milliseconds": 200_000, "Play Duration Milliseconds": 200_000})
    upload = {"scrobbles.csv": scrobbles.getvalue().encode(), "Apple Music Play Activity.csv": apple.getvalue().encode()}
    first = importer(uid, upload).report
    assert (first["imported"], first["name_only_tracks"]) == (2, 2), first
    again = importer(uid, upload).report
    assert (again["imported"], again["already_in_archive"]) == (0, 2), again
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (uid,)).fetchone()[0] == 2


# Wordings made up for the test (Takeout's are the account language's): the rule learns
# whatever a file uses, in front of the song's name, after it, or both.
@pytest.mark.parametrize("before, after", [("Angeschaut: ", ""), ("", " visto"), ("Du hast ", " angesehen")])
def test_a_takeout_in_another_language_gives_the_songs_names(app, client, db_conn, importer, before, after):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    # 25 songs (as many different titles as it takes to learn from), two of them sharing
    # their first word; and a short file in the same wording, read as it is.
    names = [f"{word} {n}" for n, word in enumerate(["Love", "Sunday", "Río", "Zero", "Ärger"] * 5)]
    entries = [{"header": "YouTube Music", "title": f"{before}{name}{after}",
                "titleUrl": "https://music.youtube.com/watch?v=x", "subtitles": [{"name": "Someone - Topic"}],
                "time": utc(START + n * 240, "%Y-%m-%dT%H:%M:%SZ")} for n, name in enumerate(names)]
    report = importer(uid, {"watch-history.json": json.dumps(entries[::-1]).encode()}).report
    assert report["imported"] == 25, report
    archived = [r[0] for r in db_conn.execute(
        "SELECT t.name FROM plays p JOIN tracks t ON t.id = p.track_id ORDER BY p.played_at")]
    assert archived == names
    short = importer(uid, {"watch-history.json": json.dumps([{**entries[0], "time": utc(START - 3600, "%Y-%m-%dT%H:%M:%SZ")}]
                                                             ).encode()}).report
    assert short["imported"] == 1
    assert db_conn.execute("SELECT t.name FROM plays p JOIN tracks t ON t.id = p.track_id ORDER BY p.played_at "
                           "LIMIT 1").fetchone()[0] == entries[0]["title"]


def test_an_english_takeout_keeps_the_first_word_its_songs_share(app, client, db_conn, importer):
    """English titles all start "Watched ": a run of chapters ("Chapter 1" …) keeps its word."""
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    entries = [{"header": "YouTube Music", "title": f"Watched Chapter {n}", "titleUrl": "https://music.youtube.com/x",
                "subtitles": [{"name": "A Reader - Topic"}], "time": utc(START + n * 240, "%Y-%m-%dT%H:%M:%SZ")}
               for n in range(30)]
    assert importer(uid, {"watch-history.json": json.dumps(entries).encode()}).report["imported"] == 30
    assert {r[0] for r in db_conn.execute("SELECT name FROM tracks")} == {f"Chapter {n}" for n in range(30)}


@pytest.mark.parametrize("filename, data, message", [
    ("scrobbles.csv", b"when,what\n1,2\n", "a CSV file, but not one this server can read"),
    ("scrobbles.csv", b"uts,artist,track\n" + b"1" * 2_000_000 + b"\n", "a line longer than 1 MB"),
    ("scrobbles.csv", b"uts,artist,track\n" + b"," * 3_000_000, "a line longer than 1 MB"),
    ("scrobbles.csv", b"uts,artist,track\n1717236000,\xff\xfe,x\n", "not UTF-8"),
    ("maloja_export_x.json", b'{"maloja": {}, "scrobbles": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    ("watch-history.json", json.dumps([{"header": "YouTube Music", "titleUrl": "https://music.youtube.com/x",
                                         "time": "not a time", "title": "Watched x"}] * 30).encode(),
     "rows are not plays in YouTube Music's format"),
    # Cut short among the first entries, which are read first to learn the titles' wording.
    ("watch-history.json", b'[{"header": "YouTube Music", "title": "Watched x", "titleUrl": "https://music.youtube',
     "it is not valid JSON or it ends early"),
])
def test_damaged_files_of_other_services_are_refused_with_a_reason(app, client, db_conn, importer, filename, data,
                                                                   message):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    record = importer(uid, {filename: data})
    assert record.status == "failed" and message in record.error, record.error
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 0


def test_a_listenbrainz_zip_with_deeply_nested_lines_reads_them_as_broken_rows(app, client, db_conn, importer):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    buffer = io.BytesIO()
    good = json.dumps(listenbrainz_listen(START, "Song", "Band", "Album"))
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("listens/2024/6.jsonl", "\n".join([good] * 40 + ["[" * 500_000 + "]" * 500_000]))
    record = importer(uid, {"lb.zip": buffer.getvalue()})
    assert record.status == "done" and record.report["skipped"] == {"malformed_row": 1}
    assert record.report["imported"] == 1 and record.report["duplicate_in_upload"] == 39


def test_history_shows_each_plays_source_and_filters_by_it(app, client, db_conn, importer):
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    importer(uid, {"scrobbles.csv": lastfm_csv()})
    later = [(ts + 30 * DAY, f"Later {track}", artist, album) for ts, track, artist, album in HISTORY[:4]]
    lines = "\n".join(json.dumps(listenbrainz_listen(*row)) for row in later)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("listens/2024/7.jsonl", lines)
    assert importer(uid, {"lb.zip": buffer.getvalue()}).report["imported"] == 4

    everything = client.get("/history").get_data(as_text=True)
    assert everything.count('class="play-source source-5"') == 10 and everything.count(">Last.fm</span>") == 10
    assert everything.count(">ListenBrainz</span>") == 4
    only_lastfm = client.get("/history?source=lastfm").get_data(as_text=True)
    assert only_lastfm.count('class="play-source') == 10 and "Later Track" not in only_lastfm
    assert '<option value="lastfm" selected>' in only_lastfm
    only_lb = client.get("/history?source=listenbrainz&q=Later").get_data(as_text=True)
    assert only_lb.count('class="play-source') == 4
    none = client.get("/history?source=maloja").get_data(as_text=True)
    assert "No plays from Maloja" in none
    bad = client.get("/history?source=%27%3B--")
    assert bad.status_code == 400 and "no such source" in bad.get_data(as_text=True)
    assert client.get("/history/more?source=nope").status_code == 400
