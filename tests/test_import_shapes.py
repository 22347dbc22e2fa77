"""The shapes real Spotify exports come in, each built here from the published layout (not
from anyone's file): files from before 2021 without track URIs, audiobook histories beside
the music, podcast episodes listed as music, offline rows sharing a sync time, repeated
rows, null and empty fields, unsorted files, account data minutes off the extended history."""

from __future__ import annotations

import io
import json
import zipfile

from app.archival.poll import Archivist, poll_user
from conftest import add_users, freeze

TRACK = "spotify:track:"


def zipped(files: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rows in files.items():
            archive.writestr(name, json.dumps(rows))
    return buffer.getvalue()


def extended(ts: str, track: str | None, artist: str | None = "Artist", uri: str | None = None, ms: int = 200_000,
             **fields) -> dict:
    """A row of Streaming_History_Audio_*.json, every field present as Spotify writes them."""
    return {"ts": ts, "platform": "android", "ms_played": ms, "conn_country": "SE", "ip_addr": "192.0.2.7",
            "master_metadata_track_name": track, "master_metadata_album_artist_name": artist,
            "master_metadata_album_album_name": "Album" if track else None, "spotify_track_uri": uri,
            "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
            "audiobook_title": None, "audiobook_uri": None, "audiobook_chapter_uri": None,
            "audiobook_chapter_title": None, "reason_start": "trackdone", "reason_end": "trackdone",
            "shuffle": False, "skipped": False, "offline": False, "offline_timestamp": 0, "incognito_mode": False,
            **fields}


def endsong(ts: str, track: str | None, artist: str | None = "Artist", ms: int = 200_000) -> dict:
    """A row of endsong_*.json (2020 and before): names, places, and no spotify_track_uri at all."""
    return {"ts": ts, "username": "someone", "platform": "Android OS 9 API 28 (samsung, SM-G960F)", "ms_played": ms,
            "conn_country": "SE", "ip_addr_decrypted": "192.0.2.7", "user_agent_decrypted": "unknown",
            "master_metadata_track_name": track, "master_metadata_album_artist_name": artist,
            "master_metadata_album_album_name": "Old Album" if track else None, "reason_start": "clickrow",
            "reason_end": "trackdone", "shuffle": False, "skipped": None, "offline": False,
            "offline_timestamp": 1580000000000, "incognito_mode": False, "city": "stockholm", "region": "stockholm",
            "metro_code": None, "latitude": 59.33, "longitude": 18.07, "episode_name": None,
            "episode_show_name": None, "spotify_episode_uri": None}


def account(end_time: str, track: str, artist: str, ms: int = 200_000) -> dict:
    return {"endTime": end_time, "artistName": artist, "trackName": track, "msPlayed": ms}


def episode(ts: str, show: str, name: str = "Episode 1") -> dict:
    return extended(ts, None, None, ms=1_500_000, episode_name=name, episode_show_name=show,
                    spotify_episode_uri="spotify:episode:" + "e" * 22, reason_end="endplay")


def plays(db_conn) -> list[tuple]:
    return db_conn.execute("""
        SELECT to_char(p.played_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), t.name, t.spotify_id, p.source
          FROM plays p JOIN tracks t ON t.id = p.track_id ORDER BY p.played_at, t.name
    """).fetchall()


def test_files_from_before_2021_without_track_uris_count_their_plays_by_name(app, simulator, importer, db_conn):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    rows = [endsong("2019-03-01T10:00:00Z", "Old Song", "Old Band"),
            endsong("2019-03-01T10:04:00Z", "Other Song", "Old Band"),
            endsong("2019-03-02T09:00:00Z", "Old Song", "Old Band"),
            endsong("2019-03-02T09:10:00Z", None, None)]  # nothing to go by: no id, no name
    record = importer(user, {"my_spotify_data.zip": zipped({"MyData/endsong_0.json": rows})})
    assert record.status == "done", record.error
    report = record.report
    assert report["imported"] == 3 and report["skipped"] == {"no_track_id": 1} and report["name_only_tracks"] == 2
    assert plays(db_conn) == [("2019-03-01 10:00:00", "Old Song", None, 2), ("2019-03-01 10:04:00", "Other Song", None, 2),
                              ("2019-03-02 09:00:00", "Old Song", None, 2)]
    album = db_conn.execute("SELECT al.name, al.artist_name FROM tracks t JOIN albums al ON al.id = t.album_id "
                            "WHERE t.name = 'Old Song'").fetchone()
    assert album == ("Old Album", "Old Band")


def test_a_play_without_a_uri_joins_the_track_the_archive_knows_by_name(app, simulator, importer, db_conn):
    freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]
    poll_user(Archivist.from_app(app), user)
    name, artist, track_id = db_conn.execute("""
        SELECT t.name, a.name, t.id FROM tracks t JOIN track_artists ta ON ta.track_id = t.id AND ta.position = 0
          JOIN artists a ON a.id = ta.artist_id ORDER BY t.id LIMIT 1""").fetchone()
    report = importer(user, {"endsong_0.json": json.dumps([endsong("2019-05-05T05:05:05Z", name, artist)]).encode()
                             }).report
    assert report["imported"] == 1 and report["name_only_tracks"] == 0
    assert db_conn.execute("SELECT track_id FROM plays WHERE played_at < '2020-01-01'").fetchone()[0] == track_id


def test_an_audiobook_history_beside_the_music_is_listed_as_ignored(app, simulator, importer):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    data = zipped({
        "Spotify Account Data/StreamingHistory_music_0.json": [account("2024-02-01 10:00", "Song", "Band")],
        "Spotify Account Data/StreamingHistory_audiobook_0.json": [
            {"endTime": "2024-02-01 11:00", "audiobookName": "A Book", "chapterName": "Chapter 1",
             "msPlayed": 1_200_000}],
    })
    record = importer(user, {"my_spotify_data.zip": data})
    assert record.status == "done", record.error
    files = {f["name"].rsplit("/", 1)[-1]: f for f in record.report["files"]}
    assert files["StreamingHistory_audiobook_0.json"] == {
        "name": "Spotify Account Data/StreamingHistory_audiobook_0.json", "kind": "ignored",
        "reason": "audiobook history is not music plays"}
    assert record.report["imported"] == 1
    # Loose files, as people upload them after unzipping: the same.
    loose = {"StreamingHistory_music_0.json": json.dumps([account("2024-02-02 10:00", "Song", "Band")]).encode(),
             "StreamingHistory_audiobook_0.json": json.dumps([{"endTime": "2024-02-02 11:00", "audiobookName": "A Book",
                                                               "msPlayed": 1_200_000}]).encode()}
    assert importer(user, loose).report["imported"] == 1
    # The same file on its own, under a name we do not know, is not taken for music either.
    loose = importer(user, {"books.json": json.dumps([{"endTime": "2024-02-01 11:00", "audiobookName": "A Book",
                                                       "msPlayed": 1_200_000}]).encode()})
    assert loose.status == "failed" and "No listening history found" in loose.error


def test_episodes_in_old_account_data_are_told_apart_by_the_shows_the_extended_history_names(app, simulator,
                                                                                          importer, db_conn):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    old_account = [account("2024-03-01 08:00", "Song", "Band"),
                   account("2024-03-01 08:30", "Episode 12: Things", "The Daily Show"),
                   account("2024-03-02 08:30", "Episode 13: More", "the daily show")]
    history = [extended("2024-01-01T08:00:00Z", "Earlier", uri=TRACK + "a" * 22),
               episode("2024-01-02T08:00:00Z", "The Daily Show")]
    report = importer(user, {"my_spotify_data.zip": zipped({
        "Spotify Account Data/StreamingHistory0.json": old_account,  # read first in the zip: order must not matter
        "Spotify Extended Streaming History/Streaming_History_Audio_2024.json": history})}).report
    assert report["skipped"] == {} and report["episodes"] == 3  # the extended one, and the two listed as music
    assert report["imported"] == 2  # "Song" and "Earlier"
    shows = db_conn.execute("SELECT s.name, count(*) FROM episode_plays p JOIN episodes e ON e.id = p.episode_id "
                            "JOIN shows s ON s.id = e.show_id GROUP BY s.name").fetchall()
    assert shows == [("The Daily Show", 3)]


def test_offline_plays_that_share_a_sync_time(app, simulator, importer, db_conn):
    """Offline plays are reported at the sync, all with one `ts`; `offline_timestamp` (the
    start) is in seconds in recent rows, milliseconds in older ones, 0 or null when unknown.
    A repeat of one track is told apart only by it."""
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    sync, song = "2024-04-01T12:00:00Z", TRACK + "b" * 22
    start = 1711958400  # 2024-04-01 08:00:00 UTC
    rows = [extended(sync, "Song", uri=song, offline=True, offline_timestamp=start),  # seconds
            extended(sync, "Song", uri=song, offline=True, offline_timestamp=(start + 600) * 1000),  # ms: a repeat
            extended(sync, "Other", uri=TRACK + "c" * 22, offline=True, offline_timestamp=0),
            extended(sync, "Third", uri=TRACK + "d" * 22, offline=None, offline_timestamp=None)]
    report = importer(user, {"Streaming_History_Audio_2024.json": json.dumps(rows).encode()}).report
    assert report["imported"] == 4 and report["duplicate_in_upload"] == 0
    assert [p[:2] for p in plays(db_conn)] == [("2024-04-01 08:03:20", "Song"), ("2024-04-01 08:13:20", "Song"),
                                               ("2024-04-01 12:00:00", "Other"), ("2024-04-01 12:00:00", "Third")]


def test_repeated_rows_null_fields_odd_reasons_and_unsorted_files(app, simulator, importer):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    song = TRACK + "f" * 22
    a = extended("2023-12-31T23:59:00Z", "Song", uri=song)
    b = extended("2024-06-01T10:00:00Z", "Song", uri=song, reason_start="click-row", reason_end="")
    c = extended("2024-06-01T09:00:00Z", "Song", uri=song, reason_start="clickrow",
                 reason_end="unexpected-exit-while-paused", skipped=None, platform=None, incognito_mode=None,
                 offline=None)
    d = extended("2024-06-01T08:00:00Z", "Song", uri=song, ms=0, reason_end="trackdone")
    files = {
        # Named for 2024, holding the last minute of 2023; unsorted; a row twice in one
        # file and once more in the next.
        "Streaming_History_Audio_2024_0.json": json.dumps([b, a, c, b, d]).encode(),
        "Streaming_History_Audio_2024_1.json": json.dumps([c]).encode(),
    }
    report = importer(user, files).report
    assert report["rows"] == 6 and report["duplicate_in_upload"] == 2
    assert report["imported"] == 3 and report["skipped"] == {"short_play": 1}
    finished = importer(add_users(app, simulator, ["sim-acct-max"])["sim-acct-max"], files, rule="finished").report
    # a and d ran to the end; b and c (each twice) did not
    assert finished["imported"] == 2 and finished["skipped"] == {"not_finished": 4}


def test_account_data_minutes_off_the_extended_history_counts_once(app, simulator, importer, db_conn):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    history = [extended("2024-07-01T10:00:00Z", "Song", "Band", uri=TRACK + "g" * 22),
               extended("2024-07-01T10:04:10Z", "Song", "Band", uri=TRACK + "g" * 22),  # the same song again
               extended("2024-07-01T11:00:00Z", "Private", "Band", uri=TRACK + "h" * 22, incognito_mode=True)]
    old = [account("2024-07-01 10:02", "Song", "Band"), account("2024-07-01 10:07", "Song", "Band"),
           account("2024-07-01 10:58", "Private", "Band"),  # private in the extended history: stays skipped
           account("2024-07-02 10:00", "Song", "Band")]  # a day later: a play of its own
    report = importer(user, {"Streaming_History_Audio_2024.json": json.dumps(history).encode(),
                             "StreamingHistory_music_0.json": json.dumps(old).encode()}).report
    assert report["imported"] == 3 and report["duplicate_in_upload"] == 3 and report["skipped"] == {"private_session": 1}
    assert [p[0] for p in plays(db_conn)] == ["2024-07-01 10:00:00", "2024-07-01 10:04:10", "2024-07-02 10:00:00"]
