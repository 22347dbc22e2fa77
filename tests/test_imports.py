"""Importing Spotify data exports: every row accounted for, nothing counted twice, bad
input refused with a clear message and nothing written. Real Postgres; exports made by
the simulator from its ground truth."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.archival.poll import Archivist, poll_user
from app.imports.service import create_import, queue_import
from app.imports.sources import Limits
from app.simulator.export import ROWS_PER_FILE, account_rows, export_zip, extended_rows
from conftest import REFERENCE_MS, add_users, archived, freeze, sign_in, wait_for

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
CATALOGUE_TABLES = ("plays", "tracks", "albums", "artists", "track_artists")


def counts(db_conn) -> dict[str, int]:
    return {t: db_conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in CATALOGUE_TABLES}


def buckets_sum(report) -> int:
    return (report["imported"] + report["episodes"] + report["already_in_archive"] + report["duplicate_in_upload"]
            + sum(report["skipped"].values()))


def qualifying(world, key, start_ms, end_ms) -> list:
    """Ground-truth plays the default rule counts: 30 s or more, not in a private session,
    which is exactly what the simulator calls visible."""
    return [p for p in world.plays_between(world.account(key), start_ms, end_ms) if p.visible]


def counted_as_play(row: dict) -> bool:
    """The default rule, read off an extended-history row."""
    return bool(row["spotify_track_uri"]) and row["ms_played"] >= 30_000 and not row["incognito_mode"]


def assert_each_true_play_stored_once(db_conn, user_id, world, plays, window_ms=10_000):
    """Every real play is in the archive exactly once (whatever its source's precision)."""
    stored: dict[str, list[int]] = {}
    for track, ms in db_conn.execute(
            "SELECT t.spotify_id, (extract(epoch FROM p.played_at) * 1000)::bigint FROM plays p "
            "JOIN tracks t ON t.id = p.track_id WHERE p.user_id = %s", (user_id,)):
        stored.setdefault(track, []).append(ms)
    for play in plays:
        track = world.catalogue.tracks[play.track_index].id
        near = [ms for ms in stored.get(track, []) if abs(ms - play.played_at_ms) <= window_ms]
        assert len(near) == 1, f"play of {track} at {play.played_at_ms}: stored {len(near)} times"
    assert sum(map(len, stored.values())) == len(plays)


# --- the report ----------------------------------------------------------------------------


def test_every_row_lands_in_one_bucket_and_reimport_adds_nothing(app, simulator, importer, db_conn):
    now = freeze(simulator)
    world = simulator.world
    user = add_users(app, simulator, ["sim-acct-max"])["sim-acct-max"]  # skip-heavy: many short plays
    start = now - 30 * DAY_MS
    data = export_zip(world, world.account("sim-acct-max"), start, now)
    rows = extended_rows(world, world.account("sim-acct-max"), start, now)

    first = importer(user, {"my_spotify_data.zip": data})
    report = first.report
    assert first.status == "done" and first.error is None
    repeated = (len(rows) - 1) // ROWS_PER_FILE  # each file after the first repeats a boundary row
    # A repeated row is a duplicate play when it is a play at all (a repeated short play is
    # skipped again, as a short play).
    repeated_plays = sum(1 for k in range(1, repeated + 1) if counted_as_play(rows[k * ROWS_PER_FILE - 1]))
    assert repeated_plays >= 1
    assert report["rows"] == buckets_sum(report) == len(rows) + repeated
    assert report["duplicate_in_upload"] == repeated_plays
    truth = qualifying(world, "sim-acct-max", start, now)
    assert report["imported"] == len(truth)
    assert report["skipped"]["short_play"] > 100 and report["episodes"] > 0  # podcasts: kept apart (app/podcasts)
    assert db_conn.execute("SELECT count(*) FROM episode_plays").fetchone()[0] == report["episodes"]
    assert [f["kind"] for f in report["files"]].count("ignored") == 2  # the video history and the PDF
    assert_each_true_play_stored_once(db_conn, user, world, truth)
    assert db_conn.execute("SELECT DISTINCT source FROM plays").fetchall() == [(2,)]
    assert db_conn.execute("SELECT count(*) FROM import_chunks").fetchone()[0] == 0  # uploaded bytes are not kept

    before = counts(db_conn)
    again = importer(user, {"my_spotify_data.zip": data}).report
    assert again["imported"] == again["episodes"] == 0
    assert again["already_in_archive"] == report["imported"] + report["episodes"]
    assert buckets_sum(again) == again["rows"] == report["rows"]
    assert counts(db_conn) == before


def test_the_finished_only_rule(app, simulator, importer):
    now = freeze(simulator)
    world = simulator.world
    user = add_users(app, simulator, ["sim-acct-max"])["sim-acct-max"]
    data = export_zip(world, world.account("sim-acct-max"), now - 10 * DAY_MS, now)
    report = importer(user, {"x.zip": data}, rule="finished").report
    assert report["rule"] == "finished" and report["skipped"]["not_finished"] > 0
    assert "short_play" not in report["skipped"] and buckets_sum(report) == report["rows"]
    full = [p for p in qualifying(world, "sim-acct-max", now - 10 * DAY_MS, now)
            if p.ms_played >= world.catalogue.tracks[p.track_index].duration_ms]
    assert report["imported"] == len(full)


def test_an_import_merged_with_polled_plays_counts_nothing_twice_and_misses_nothing(app, simulator, importer,
                                                                                      db_conn):
    """The simulator's exports shift `ts` by up to ±3 s from the API's played_at."""
    world = simulator.world
    world.config.access_token_ttl_s = 7 * 86_400
    now = freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    archivist = Archivist.from_app(app)
    for hours_ago in range(48, -1, -1):  # the poller archived the last two days, hour by hour
        freeze(simulator, now - hours_ago * 3_600_000)
        poll_user(archivist, user)
    polled = archived(db_conn, user)
    assert len(polled) > 200

    start = now - 7 * DAY_MS  # the export covers the week, overlapping the polled days
    report = importer(user, {"my_spotify_data.zip": export_zip(world, world.account("sim-acct-sam"), start, now)}).report
    truth = qualifying(world, "sim-acct-sam", start, now)
    assert all(ms >= start for _, ms in polled)
    assert report["already_in_archive"] == len(polled)
    assert report["imported"] == len(truth) - len(polled)
    assert_each_true_play_stored_once(db_conn, user, world, truth)

    # And polling after the import adds nothing: the export already holds those plays.
    assert poll_user(archivist, user).new_plays == 0
    assert_each_true_play_stored_once(db_conn, user, world, truth)


@dataclass
class BingeSetup:
    """Sam polled at t0, just before a binge of more than 60 plays in two hours: polled
    again at t0 + 2 h, the cursor says plays may be missing in between."""

    user: int
    archivist: Archivist
    t0: int
    start: int  # the first poll's oldest play
    end: int  # t0 + 2 h, when the second poll comes

    def export(self, world) -> bytes:
        return export_zip(world, world.account("sim-acct-sam"), self.start, self.end)

    def truth(self, world) -> list:
        return qualifying(world, "sim-acct-sam", self.start, self.end + 1)


def polled_before_a_binge(app, simulator, db_conn) -> BingeSetup:
    world = simulator.world
    world.config.access_token_ttl_s = 86_400
    t0 = REFERENCE_MS - 3 * DAY_MS
    while len([p for p in world.plays_between(world.account("sim-acct-sam"), t0, t0 + 2 * HOUR_MS)
               if p.visible]) <= 60:
        t0 += HOUR_MS
    freeze(simulator, t0)
    user = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    archivist = Archivist.from_app(app)
    poll_user(archivist, user)
    return BingeSetup(user, archivist, t0, min(ms for _, ms in archived(db_conn, user)), t0 + 2 * HOUR_MS)


def test_an_import_fills_the_gap_a_poll_recorded(app, simulator, importer, db_conn, client):
    world, binge = simulator.world, polled_before_a_binge(app, simulator, db_conn)
    freeze(simulator, binge.end)
    assert poll_user(binge.archivist, binge.user).gap is not None
    assert db_conn.execute("SELECT count(*) FROM gaps WHERE filled_at IS NULL").fetchone()[0] == 1

    report = importer(binge.user, {"my_spotify_data.zip": binge.export(world)}).report
    assert report["gaps_filled"] == 1
    assert db_conn.execute("SELECT count(*) FROM gaps WHERE filled_at IS NULL").fetchone()[0] == 0
    assert_each_true_play_stored_once(db_conn, binge.user, world, binge.truth(world))
    sign_in(client, "sim-acct-sam")
    assert "possible gap" not in client.get("/dashboard").get_data(as_text=True)


def test_a_poll_records_no_gap_that_an_import_already_filled(app, simulator, importer, db_conn):
    """The cursor says plays may be missing; the imported plays since say they are not."""
    world, binge = simulator.world, polled_before_a_binge(app, simulator, db_conn)
    assert importer(binge.user, {"my_spotify_data.zip": binge.export(world)}).report["imported"] > 60

    freeze(simulator, binge.end)
    result = poll_user(binge.archivist, binge.user)
    assert result.outcome == "archived" and result.gap is None and result.new_plays == 0
    assert db_conn.execute("SELECT count(*) FROM gaps").fetchone()[0] == 0
    assert_each_true_play_stored_once(db_conn, binge.user, world, binge.truth(world))


def test_a_poll_while_an_import_merges_counts_nothing_twice(app, simulator, db_conn, workers):
    """The import runs in a real worker; the poll comes while it is saving plays, after it
    has matched them against the archive: without one lock for both, the poll's 50 plays
    were stored twice (once polled, once exported, seconds apart)."""
    world = simulator.world
    world.config.access_token_ttl_s = 400 * DAY_MS // 1000
    now = freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-sam"])["sim-acct-sam"]
    start = now - 300 * DAY_MS
    database = app.extensions["database"]
    with database.session() as session:
        data = export_zip(world, world.account("sim-acct-sam"), start, now)
        record = create_import(session, user, [("my_spotify_data.zip", io.BytesIO(data))], "default")
        queue_import(session, record)
        import_id = record.id

    def stage():
        return db_conn.execute("SELECT status, stage FROM imports WHERE id = %s", (import_id,)).fetchone()

    workers()
    wait_for(lambda: stage()[1] == "saving plays", timeout=120, interval=0.01, message="the import saving plays")
    during = poll_user(Archivist.from_app(app), user)
    assert during.outcome == "skipped" and "import" in during.message
    wait_for(lambda: stage()[0] == "done", timeout=120, message="the import done")
    # Waiting for the lock: the worker's own dispatcher may be polling Sam at this moment
    # (a "skipped" here, once in CI), or the import releasing its lock just after "done".
    after = poll_user(Archivist.from_app(app), user, wait_for_lock=True)
    assert after.outcome == "archived" and after.new_plays == 0  # the export held them
    truth = qualifying(world, "sim-acct-sam", start, now + 1)
    assert len(truth) > 10_000
    assert_each_true_play_stored_once(db_conn, user, world, truth)


def test_polling_after_an_import_does_not_double_count(app, simulator, importer, db_conn):
    world = simulator.world
    now = freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]
    start = now - 5 * DAY_MS
    importer(user, {"my_spotify_data.zip": export_zip(world, world.account("sim-acct-riley"), start, now)})
    imported = counts(db_conn)["plays"]
    result = poll_user(Archivist.from_app(app), user)
    assert result.outcome == "archived" and result.new_plays == 0  # all 50 were in the export
    assert counts(db_conn)["plays"] == imported


def test_account_data_is_matched_by_names(app, simulator, importer, db_conn):
    world = simulator.world
    world.config.access_token_ttl_s = 7 * 86_400
    now = freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-riley"])["sim-acct-riley"]
    poll_user(Archivist.from_app(app), user)  # the last 50 plays, with their tracks and artists
    polled = archived(db_conn, user)

    start = now - 15 * DAY_MS
    account = world.account("sim-acct-riley")
    data = export_zip(world, account, start, now, kind="account")
    report = importer(user, {"my_spotify_data.zip": data}).report
    rows = account_rows(world, account, start, now)
    assert report["rows"] == buckets_sum(report) == len(rows) + (len(rows) - 1) // ROWS_PER_FILE
    assert report["already_in_archive"] == len(polled)  # matched by name, to the minute
    names = [f["name"] for f in report["files"]]
    assert any(n.endswith("Userdata.json") for n in names) and any(n.endswith("Payments.json") for n in names)
    assert all(f["kind"] == "ignored" for f in report["files"] if f["name"].endswith(("Userdata.json",
                                                                                      "Payments.json")))
    # Account data cannot tell private sessions: every play of 30 s or more counts.
    thirty = [p for p in world.plays_between(account, start, now) if p.ms_played >= 30_000]
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (user,)).fetchone()[0] == len(thirty)
    # Tracks the user had polled were recognised by name; the rest are name-only until resolved.
    name_only = db_conn.execute("SELECT count(*) FROM tracks WHERE spotify_id IS NULL").fetchone()[0]
    assert name_only == report["name_only_tracks"] > 0


def test_extended_and_account_data_together_count_once(app, simulator, importer, db_conn):
    world = simulator.world
    now = freeze(simulator)
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    account = world.account("sim-acct-jo")
    start = now - 20 * DAY_MS
    report = importer(user, {
        "extended.zip": export_zip(world, account, start, now),
        "account.zip": export_zip(world, account, start, now, kind="account"),
    }).report
    truth = qualifying(world, "sim-acct-jo", start, now)
    assert report["imported"] == len(truth) and buckets_sum(report) == report["rows"]
    assert_each_true_play_stored_once(db_conn, user, world, truth)


def test_offline_plays_are_placed_by_their_offline_timestamp(app, simulator, importer, db_conn):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    base = {"ms_played": 200_000, "master_metadata_track_name": "Song", "master_metadata_album_artist_name": "A",
            "master_metadata_album_album_name": "B", "reason_end": "trackdone", "offline": True,
            "incognito_mode": False, "ts": "2024-05-01T12:00:00Z"}
    rows = [
        base | {"spotify_track_uri": "spotify:track:" + "a" * 22, "offline_timestamp": 1714550000},  # seconds
        base | {"spotify_track_uri": "spotify:track:" + "b" * 22, "offline_timestamp": 1714551000123},  # ms
        base | {"spotify_track_uri": "spotify:track:" + "c" * 22, "offline_timestamp": 0},  # unknown: ts
    ]
    report = importer(user, {"Streaming_History_Audio_2024.json": json.dumps(rows).encode()}).report
    assert report["imported"] == 3
    ends = dict(db_conn.execute("SELECT t.spotify_id, (extract(epoch FROM p.played_at) * 1000)::bigint "
                                "FROM plays p JOIN tracks t ON t.id = p.track_id").fetchall())
    assert ends == {"a" * 22: 1714550000_000 + 200_000, "b" * 22: 1714551000123 + 200_000,
                    "c" * 22: 1714564800_000}


def test_loose_files_and_unfamiliar_names(app, simulator, importer):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    row = {"ts": "2024-05-01T12:00:00Z", "ms_played": 200_000, "spotify_track_uri": "spotify:track:" + "d" * 22,
           "master_metadata_track_name": "Song"}
    report = importer(user, {
        "endsong_0.json": json.dumps([row]).encode(),
        "renamed by me.json": json.dumps([row | {"spotify_track_uri": "spotify:track:" + "e" * 22}]).encode(),
        "StreamingHistory0.json": json.dumps([{"endTime": "2024-05-01 13:00", "artistName": "X", "trackName": "Y",
                                              "msPlayed": 100_000}]).encode(),
    }).report
    assert report["imported"] == 3 and [f["kind"] for f in report["files"]] == ["extended", "extended", "account"]


# --- bad input -----------------------------------------------------------------------------


def zip_of(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def encrypted(data: bytes) -> bytes:
    """Set the 'encrypted' flag on every entry, as a password-protected zip has."""
    data = bytearray(data)
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            flags = struct.unpack_from("<H", data, start + flag_offset)[0]
            struct.pack_into("<H", data, start + flag_offset, flags | 1)
            start += 4
    return bytes(data)


def corrupted(data: bytes) -> bytes:
    """A byte of a member's data flipped: the zip opens, the member fails its CRC check."""
    data = bytearray(data)
    data[len(data) // 3] ^= 0xFF
    return bytes(data)


GOOD_ROW = {"ts": "2024-05-01T12:00:00Z", "ms_played": 200_000, "spotify_track_uri": "spotify:track:" + "f" * 22,
            "master_metadata_track_name": "Song"}
GOOD_ZIP = zip_of({"Spotify Extended Streaming History/Streaming_History_Audio_2024.json": json.dumps([GOOD_ROW] * 5)})
# 200 KB that take ijson about 24 GB to parse (its memory grows with the square of the depth).
NESTED = b"[" * 100_000 + b"]" * 100_000
LONE_SURROGATE = '{"ts": "2024-05-01T12:00:00Z", "ms_played": 200000, "spotify_track_uri": "spotify:track:' + \
    "f" * 22 + '", "master_metadata_track_name": "Song \\ud800"}'


@pytest.mark.parametrize("files, message", [
    ({"cover.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 100}, "is not a zip, JSON or CSV file"),
    ({"my_spotify_data.zip": GOOD_ZIP[: len(GOOD_ZIP) // 2]}, "damaged or incomplete"),
    ({"my_spotify_data.zip": encrypted(GOOD_ZIP)}, "password-protected"),
    ({"my_spotify_data.zip": zip_of({"Streaming_History_Audio_bomb.json": b"[" + b" " * 50_000_000 + b"]"})},
     "zip bomb"),
    ({"my_spotify_data.zip": zip_of({"../../etc/Streaming_History_Audio_x.json": json.dumps([GOOD_ROW])})},
     "unsafe name"),
    ({"Streaming_History_Audio_2024.json": json.dumps({"plays": [GOOD_ROW]}).encode()}, "expected a list of plays"),
    ({"Streaming_History_Audio_2024.json": json.dumps([GOOD_ROW] * 3).encode()[:-20]}, "ends early"),
    ({"Streaming_History_Audio_2024.json": json.dumps([{"ts": 1714564800, "ms_played": "long"}] * 20).encode()},
     "20 of 20 rows are not plays in Spotify's format"),
    ({"StreamingHistory_music_0.json": NESTED}, "nested more than 16 levels deep"),
    ({"my_spotify_data.zip": zip_of({"Streaming_History_Audio_2020.json": NESTED})}, "nested more than 16 levels"),
    ({"history.json": NESTED}, "nested more than 16 levels"),  # an unfamiliar name: sniffed, guarded too
    ({"Streaming_History_Audio_2024.json": b'[{"ts": "' + b"9" * 3 * 1024**2 + b'"}]'}, "longer than 1 MB"),
    ({"my_spotify_data.zip": corrupted(zip_of({"Streaming_History_Audio_2024.json": json.dumps([GOOD_ROW] * 500)}))},
     "could not be read from the zip"),
    ({"Streaming_History_Audio_2024.json": ("[" + ", ".join([LONE_SURROGATE] * 20) + "]").encode()},
     "20 of 20 rows are not plays in Spotify's format"),
])
def test_bad_input_is_refused_clearly_and_writes_nothing(app, simulator, importer, db_conn, files, message):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    before = counts(db_conn)
    good = {"Streaming_History_Audio_ok.json": json.dumps([GOOD_ROW | {"ts": "2024-06-01T00:00:00Z"}]).encode()}
    record = importer(user, good | files)  # a good file alongside: the import is still all or nothing
    assert record.status == "failed" and message in record.error, record.error
    assert record.report is None
    assert counts(db_conn) == before
    assert db_conn.execute("SELECT count(*) FROM import_chunks").fetchone()[0] == 0


def test_an_export_without_streaming_history_is_refused(app, simulator, importer, db_conn):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    record = importer(user, {"my_spotify_data.zip": zip_of({"Spotify Account Data/Userdata.json": "{}",
                                                           "Spotify Account Data/Payments.json": "{}"})})
    assert record.status == "failed" and "No listening history found" in record.error
    assert "Streaming_History_Audio" in record.error  # and it says what to upload instead
    assert counts(db_conn) == dict.fromkeys(CATALOGUE_TABLES, 0)


def test_an_expanding_limit_is_enforced(app, simulator, importer, db_conn):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    record = importer(user, {"my_spotify_data.zip": GOOD_ZIP}, limits=Limits(max_uncompressed_bytes=100))
    assert record.status == "failed" and "more than the 0.0 GB this server accepts" in record.error


def test_a_few_broken_rows_are_skipped_and_counted(app, simulator, importer):
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    rows = [GOOD_ROW | {"ts": f"2024-05-01T12:{m:02d}:00Z"} for m in range(50)] + ["garbage", {"ts": None}]
    report = importer(user, {"Streaming_History_Audio_2024.json": json.dumps(rows).encode()}).report
    assert report["imported"] == 50 and report["skipped"] == {"malformed_row": 2} and report["rows"] == 52


def test_a_row_with_a_lone_surrogate_is_an_unreadable_row(app, simulator, importer, db_conn):
    """JSON can escape half of a UTF-16 pair ("\\ud800"); no database text can hold it."""
    user = add_users(app, simulator, ["sim-acct-jo"])["sim-acct-jo"]
    good = [json.dumps(GOOD_ROW | {"ts": f"2024-05-01T12:{m:02d}:00Z"}) for m in range(50)]
    text = "[" + ", ".join(good + [LONE_SURROGATE]) + "]"
    record = importer(user, {"Streaming_History_Audio_2024.json": text.encode()})
    assert record.status == "done", record.error
    assert record.report["imported"] == 50 and record.report["skipped"] == {"malformed_row": 1}
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 50


# --- the CLI and operator-created users ----------------------------------------------------


def test_users_add_then_import_then_sign_in(app, simulator, database_url, tmp_path, client, db_conn):
    from conftest import app_environ, cli, sign_in

    env = app_environ(database_url, simulator.url)
    env["TOKEN_ENCRYPTION_KEY"] = app.config["SETTINGS"].token_encryption_keys[0]
    added = cli("users", "add", "--spotify-id", "sim-acct-jo", "--name", "Jo (family)", env=env)
    assert added.returncode == 0 and "Added user" in added.stdout, added.stderr

    now = freeze(simulator)
    path = tmp_path / "my_spotify_data.zip"
    path.write_bytes(export_zip(simulator.world, simulator.world.account("sim-acct-jo"), now - 30 * DAY_MS, now))
    result = cli("import", "--user", "sim-acct-jo", str(path), env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["report"]["imported"] > 0
    assert buckets_sum(summary["report"]) == summary["report"]["rows"]

    listed = cli("users", "list", env=env)
    assert "sim-acct-jo" in listed.stdout and "not signed in" in listed.stdout

    sign_in(client, "sim-acct-jo")
    assert db_conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1  # the same user, now signed in
    page = client.get("/dashboard").get_data(as_text=True)
    assert f"{summary['report']['imported']:,}" in page

    refused = cli("import", "--user", "sim-acct-jo", str(Path(__file__)), env=env)
    assert refused.returncode == 1 and "is not a zip, JSON or CSV file" in refused.stderr
