"""Exports: each format read back and compared with the archive play by play, Spotify's
shape imported into a fresh archive and into the original one, the period filter, and the
page, job and download as a user meets them (real worker, real HTTP)."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from datetime import date, datetime, timedelta, timezone

import pytest
import requests
from conftest import add_users, cli, freeze, http_sign_in, new_user, wait_for

from app.archival.poll import Archivist, poll_user
from app.exports import files
from app.exports.service import create_export, expire_exports, run_export, write_file
from app.models import Export, User
from app.simulator.export import as_account_data, synthetic_history

END = datetime(2025, 7, 1, tzinfo=timezone.utc)
# Spotify's extended streaming history fields, in Spotify's order (docs/spotify.md).
SPOTIFY_FIELDS = ["ts", "platform", "ms_played", "conn_country", "ip_addr", "master_metadata_track_name",
                  "master_metadata_album_artist_name", "master_metadata_album_album_name", "spotify_track_uri",
                  "episode_name", "episode_show_name", "spotify_episode_uri", "audiobook_title", "audiobook_uri",
                  "audiobook_chapter_uri", "audiobook_chapter_title", "reason_start", "reason_end", "shuffle",
                  "skipped", "offline", "offline_timestamp", "incognito_mode"]
HOSTILE = ["=HYPERLINK(\"http://evil\")", "+1+2", "@SUM(A1)", "Comma, \"quoted\"\nnewline", "Ünïcødé 🎧 名前",
           "<script>alert('xss')</script>", "\"><img src=x onerror=alert(1)>"]
# What a page, fragment or file must never contain verbatim (the two HTML payloads above).
RAW_HTML = ("<script>alert('xss')</script>", "<img src=x onerror=alert(1)>")


def _zip(files_: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files_.items():
            archive.writestr(name, json.dumps(content))
    return buffer.getvalue()


@pytest.fixture
def archive(app, simulator, importer, db_conn):
    """'sim-acct-sam': two years of extended history, a year of account data (names only)
    with hostile names, and polled plays; 'sim-acct-riley' beside, with plays of their own."""
    simulator.world.config.access_token_ttl_s = 400 * 86_400
    users = add_users(app, simulator, ["sim-acct-sam", "sim-acct-riley"])
    end_ms = int(END.timestamp() * 1000)
    extended = synthetic_history(3_000, years=2, tracks=400, artists=80, seed=7, end_ms=end_ms - 400 * 86_400_000,
                                 rows_per_file=1_500)
    account = as_account_data(synthetic_history(400, years=0.5, tracks=50, artists=10, seed=8, end_ms=end_ms))
    for n, name in enumerate(HOSTILE):
        account[0][n]["trackName"] = name
        account[0][n]["artistName"] = name
        account[0][n]["msPlayed"] = 200_000
    report = importer(users["sim-acct-sam"], {"my_spotify_data.zip": _zip({
        **{f"Streaming_History_Audio_{n}.json": part for n, part in enumerate(extended)},
        **{f"StreamingHistory_music_{n}.json": part for n, part in enumerate(account)}})})
    assert report.status == "done", report.error
    archivist = Archivist.from_app(app)
    freeze(simulator, end_ms + 86_400_000)
    for user_id in users.values():
        assert poll_user(archivist, user_id).outcome == "archived"
    db_conn.execute("INSERT INTO gaps (user_id, starts_at, ends_at, reason) VALUES (%s, %s, %s, 'test gap')",
                    (users["sim-acct-sam"], END - timedelta(days=3), END - timedelta(days=2)))
    return users


def archive_plays(conn, user_id: int, since: datetime | None = None, until: datetime | None = None) -> list[tuple]:
    """(played_at ms, track spotify id, track name, ms_played, source) straight from the tables."""
    return conn.execute("""
        SELECT (extract(epoch FROM p.played_at) * 1000)::bigint, t.spotify_id, t.name, p.ms_played, p.source
          FROM plays p JOIN tracks t ON t.id = p.track_id
         WHERE p.user_id = %s AND p.played_at >= coalesce(%s::timestamptz, '-infinity') AND p.played_at < coalesce(%s::timestamptz, 'infinity')
         ORDER BY p.played_at, p.track_id""", (user_id, since, until)).fetchall()


def export_bytes(app, user_id: int, fmt: str, period_from: date | None = None, period_to: date | None = None) -> bytes:
    database = app.extensions["database"]
    with database.session() as session:
        record = create_export(session, session.get(User, user_id), fmt, period_from, period_to,
                               now=app.extensions["clock"]())
        export_id = record.id
    record = run_export(database, export_id, clock=app.extensions["clock"], expiry_days=7)
    assert record.status == "done", record.error
    out = io.BytesIO()
    assert write_file(database, record, out) == record.bytes_file
    return out.getvalue()


def test_csv_is_every_play_in_a_spreadsheet_readable_form(app, archive, db_conn):
    sam = archive["sim-acct-sam"]
    db_conn.execute("UPDATE users SET timezone = 'Asia/Kathmandu' WHERE id = %s", (sam,))
    data = export_bytes(app, sam, "csv")
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data  # BOM for Excel; RFC 4180 line ends
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows[0] == files.CSV_HEADER
    plays = archive_plays(db_conn, sam)
    assert len(rows) - 1 == len(plays) > 2_000
    kathmandu = timezone(timedelta(hours=5, minutes=45))
    names = {"1": "poll", "2": "extended_history", "3": "account_data"}
    for row, (ms, spotify_id, name, ms_played, source) in zip(rows[1:], plays):
        moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
        assert row[1] == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
        assert row[0] == moment.astimezone(kathmandu).strftime("%Y-%m-%d %H:%M:%S") and row[2] == "Asia/Kathmandu"
        expected_name = "'" + name if name.startswith(("=", "+", "-", "@")) else name
        assert row[3] == expected_name
        assert row[7] == ("" if ms_played is None else str(ms_played))
        assert row[8] == names[str(source)]
        assert row[9] == (f"spotify:track:{spotify_id}" if spotify_id else "")
    hostile = {row[3] for row in rows[1:]}
    assert {"'=HYPERLINK(\"http://evil\")", "'+1+2", "'@SUM(A1)", "Comma, \"quoted\"\nnewline",
            "Ünïcødé 🎧 名前"} <= hostile
    assert {row[8] for row in rows[1:]} == {"poll", "extended_history", "account_data"}


def test_json_holds_every_play_to_the_millisecond_and_what_it_points_to(app, archive, db_conn):
    sam = archive["sim-acct-sam"]
    document = json.loads(export_bytes(app, sam, "json"))
    assert document["format"] == "audiospective" and document["version"] == 1
    assert document["user"]["spotify_id"] == "sim-acct-sam"
    tracks = {t["id"]: t for t in document["tracks"]}
    albums, artists = {a["id"] for a in document["albums"]}, {a["id"] for a in document["artists"]}
    sources = {"poll": 1, "extended_history": 2, "account_data": 3}
    got = []
    for play in document["plays"]:
        track = tracks[play["track"]]
        assert track["album"] is None or track["album"] in albums
        assert set(track["artists"]) <= artists
        ms = int(datetime.fromisoformat(play["played_at"].replace("Z", "+00:00")).timestamp() * 1000)
        got.append((ms, track["spotify_id"], track["name"], play["ms_played"], sources[play["source"]]))
    assert got == archive_plays(db_conn, sam) and len(got) > 2_000
    assert [g["reason"] for g in document["gaps"]] == ["test gap"]
    riley_tracks = {r[1] for r in archive_plays(db_conn, archive["sim-acct-riley"])}
    assert {t["spotify_id"] for t in document["tracks"]} == {p[1] for p in got}  # nothing of riley's beyond
    assert riley_tracks - {p[1] for p in got}, "riley's own tracks must be distinct for this check to mean anything"


def test_a_period_is_whole_local_days(app, archive, db_conn):
    sam = archive["sim-acct-sam"]
    db_conn.execute("UPDATE users SET timezone = 'America/New_York' WHERE id = %s", (sam,))
    since = datetime(2024, 1, 1, 5, tzinfo=timezone.utc)  # midnight in New York
    until = datetime(2024, 4, 1, 4, tzinfo=timezone.utc)  # 31 March ends at midnight EDT
    document = json.loads(export_bytes(app, sam, "json", date(2024, 1, 1), date(2024, 3, 31)))
    expected = archive_plays(db_conn, sam, since, until)
    assert len(document["plays"]) == len(expected) > 100
    assert document["period"] == {"from": "2024-01-01", "to": "2024-03-31", "timezone": "America/New_York"}


def test_spotify_shape_round_trips_through_the_importer(app, archive, importer, db_conn):
    sam = archive["sim-acct-sam"]
    data = export_bytes(app, sam, "spotify")
    plays = archive_plays(db_conn, sam)
    with zipfile.ZipFile(io.BytesIO(data)) as exported:
        names = exported.namelist()
        rows = [row for name in names for row in json.loads(exported.read(name))]
    assert all(re.fullmatch(r"Spotify Extended Streaming History/Streaming_History_Audio_\d{4}(-\d{4})?_\d+\.json",
                            n) for n in names)
    assert len(names) == -(-len(plays) // files.SPOTIFY_FILE_ROWS) and len(rows) == len(plays)
    for row in rows:
        assert list(row) == SPOTIFY_FIELDS
        assert isinstance(row["ms_played"], int) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["ts"])
        assert row["spotify_track_uri"] is None or re.fullmatch(r"spotify:track:[0-9A-Za-z]{22}",
                                                                row["spotify_track_uri"])
    # Into a fresh archive: the same plays, to the second.
    fresh = new_user(app, "fresh-instance-user")
    result = importer(fresh, {"my_spotify_data.zip": data})
    assert result.status == "done", result.error
    assert result.report["imported"] == len(plays), result.report

    def to_second(rows_: list[tuple]) -> list[tuple]:
        return sorted((ms // 1000, spotify_id or name.lower()) for ms, spotify_id, name, _, _ in rows_)

    assert to_second(archive_plays(db_conn, fresh)) == to_second(plays)
    # Into the original archive: nothing new.
    again = importer(sam, {"my_spotify_data.zip": data})
    assert again.status == "done" and again.report["imported"] == 0, again.report
    assert len(archive_plays(db_conn, sam)) == len(plays)


def test_listenbrainz_format_is_its_user_export_and_round_trips(app, archive, importer, db_conn):
    """listens/<year>/<month>.jsonl by the month each play started, `listened_at` the start;
    into a fresh archive it gives the same plays, into the original one nothing new."""
    sam = archive["sim-acct-sam"]
    data = export_bytes(app, sam, "listenbrainz")
    plays = archive_plays(db_conn, sam)
    starts = sorted(r[0] for r in db_conn.execute("""
        SELECT floor(extract(epoch FROM p.played_at) - coalesce(p.ms_played, t.duration_ms, 0) / 1000.0)::bigint
          FROM plays p JOIN tracks t ON t.id = p.track_id WHERE p.user_id = %s""", (sam,)))
    listens = []
    with zipfile.ZipFile(io.BytesIO(data)) as exported:
        names = exported.namelist()
        assert names[0] == "user.json" and json.loads(exported.read("user.json"))["username"] == "sim-acct-sam"
        for name in names[1:]:
            match = re.fullmatch(r"listens/(\d{4})/(\d{1,2})\.jsonl", name)
            assert match, name
            for line in exported.read(name).decode().splitlines():
                listen = json.loads(line)
                started = datetime.fromtimestamp(listen["listened_at"], timezone.utc)
                assert (started.year, started.month) == (int(match.group(1)), int(match.group(2)))
                assert listen["track_metadata"]["track_name"] and "artist_name" in listen["track_metadata"]
                listens.append(listen)
    assert len(listens) == len(plays) and sorted(x["listened_at"] for x in listens) == starts
    assert any("spotify_id" in x["track_metadata"]["additional_info"] for x in listens)

    fresh = new_user(app, "koito-bound")
    result = importer(fresh, {"listenbrainz_koito-bound.zip": data})
    assert result.status == "done" and result.report["imported"] == len(plays), result.report
    assert db_conn.execute("SELECT count(*) FROM plays WHERE user_id = %s", (fresh,)).fetchone()[0] == len(plays)
    again = importer(sam, {"listenbrainz_sam.zip": data})
    assert again.status == "done" and again.report["imported"] == 0, again.report


def test_expired_exports_are_deleted_with_their_files(app, archive, db_conn):
    sam = archive["sim-acct-sam"]
    export_bytes(app, sam, "csv")
    assert db_conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] > 0
    clock = app.extensions["clock"]
    assert expire_exports(app.extensions["database"], clock() + timedelta(days=6)) == 0
    assert expire_exports(app.extensions["database"], clock() + timedelta(days=7, seconds=1)) == 1
    assert db_conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] == 0


def test_export_page_job_and_download(app, archive, workers, db_conn, server):
    """Through the page over HTTP, written by a real worker; downloads are the owner's only."""
    sam, riley = archive["sim-acct-sam"], archive["sim-acct-riley"]
    browser = http_sign_in(server.url, "sim-acct-sam")
    page = browser.get(f"{server.url}/export")
    assert page.status_code == 200 and "No exports yet" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    refused = browser.post(f"{server.url}/export", data={"csrf_token": token, "format": "csv",
                                                         "from": "2024-13-01"})
    assert refused.status_code == 400 and "not a real date" in refused.text
    assert db_conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 0
    asked = browser.post(f"{server.url}/export", data={"csrf_token": token, "format": "csv", "from": "",
                                                       "to": ""})
    assert asked.status_code == 200 and "Waiting for a worker" in asked.text
    export_id = db_conn.execute("SELECT id FROM exports").fetchone()[0]
    workers()
    wait_for(lambda: db_conn.execute("SELECT status FROM exports WHERE id = %s", (export_id,)).fetchone()[0]
             in ("done", "failed"), timeout=60, message="the export to be written")
    row = browser.get(f"{server.url}/export/{export_id}/row")
    assert "Ready" in row.text and "hx-trigger" not in row.text and "Download" in row.text
    download = browser.get(f"{server.url}/export/{export_id}/download")
    assert download.status_code == 200 and download.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in download.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8-sig"), newline="")))
    assert len(rows) - 1 == len(archive_plays(db_conn, sam))
    # Another user, and nobody: not found, nothing given away.
    other = http_sign_in(server.url, "sim-acct-riley")
    assert other.get(f"{server.url}/export/{export_id}/download").status_code == 404
    assert other.get(f"{server.url}/export/{export_id}/row").status_code == 404
    other_token = re.search(r'name="csrf_token" value="([^"]+)"', other.get(f"{server.url}/export").text).group(1)
    assert other.post(f"{server.url}/export/{export_id}/delete", data={"csrf_token": other_token}).status_code == 404
    anonymous = requests.get(f"{server.url}/export/{export_id}/download", allow_redirects=False)
    assert anonymous.status_code in (302, 401) and not anonymous.content.startswith(b"\xef\xbb\xbf")
    # Expired: a clear page, no file.
    db_conn.execute("UPDATE exports SET expires_at = %s WHERE id = %s",
                    (app.extensions["clock"](), export_id))
    gone = browser.get(f"{server.url}/export/{export_id}/download")
    assert gone.status_code == 410 and "expired" in gone.text
    # Delete: row and file go.
    deleted = browser.post(f"{server.url}/export/{export_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 200 and "No exports yet" in deleted.text
    assert db_conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] == 0
    assert riley  # riley's own data untouched by all of this
    assert len(archive_plays(db_conn, riley)) > 0


def test_an_export_after_more_plays_arrive_holds_them(app, archive, importer, db_conn):
    sam = archive["sim-acct-sam"]
    before = json.loads(export_bytes(app, sam, "json"))["plays"]
    more = synthetic_history(200, years=0.2, tracks=20, artists=4, seed=42, end_ms=int(END.timestamp() * 1000))
    added = importer(sam, {"more.zip": _zip({f"Streaming_History_Audio_{n}.json": p for n, p in enumerate(more)})})
    assert added.status == "done" and added.report["imported"] > 50, added.report
    after = json.loads(export_bytes(app, sam, "json"))["plays"]
    assert len(after) == len(before) + added.report["imported"] == len(archive_plays(db_conn, sam))
    assert {p["played_at"] for p in before} < {p["played_at"] for p in after}


def test_a_failed_export_says_why_and_can_be_retried(app, archive, db_conn):
    sam = archive["sim-acct-sam"]
    database = app.extensions["database"]
    with database.session() as session:
        export_id = create_export(session, session.get(User, sam), "json", None, None, now=app.extensions["clock"]()).id
    from app.exports import service

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    saved = service.WRITERS["json"]
    service.WRITERS["json"] = broken
    try:
        record = run_export(database, export_id, clock=app.extensions["clock"], expiry_days=7)
    finally:
        service.WRITERS["json"] = saved
    assert record.status == "failed" and "went wrong" in record.error and "disk" not in record.error
    assert db_conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] == 0
    with database.session() as session:
        assert service.retry_export(session, session.get(Export, export_id))
    assert db_conn.execute("SELECT status FROM exports").fetchone()[0] == "queued"
    record = run_export(database, export_id, clock=app.extensions["clock"], expiry_days=7)
    assert record.status == "done" and record.rows_written == len(archive_plays(db_conn, sam))


def test_an_export_whose_database_goes_away_is_run_again_not_failed(app, archive, db_conn):
    """A database error in the middle of writing is the database's, not the export's: the
    job raises it so that procrastinate runs it again (queue.DATABASE_RETRY), the export is
    not marked failed, and the next attempt writes the whole file over what was left."""
    import psycopg
    from jobs.exports import write_export

    from app.exports import service
    from app.queue import DATABASE_RETRY

    assert write_export.retry_strategy is DATABASE_RETRY
    sam = archive["sim-acct-sam"]
    database = app.extensions["database"]
    with database.session() as session:
        export_id = create_export(session, session.get(User, sam), "json", None, None, now=app.extensions["clock"]()).id
    saved = service.WRITERS["json"]

    def lost_midway(conn, scope, out, progress, **kwargs):
        out.write(b"[half a file")
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    service.WRITERS["json"] = lost_midway
    try:
        with pytest.raises(psycopg.OperationalError):
            run_export(database, export_id, clock=app.extensions["clock"], expiry_days=7)
    finally:
        service.WRITERS["json"] = saved
    assert db_conn.execute("SELECT status, error FROM exports").fetchone() == ("running", None)
    record = run_export(database, export_id, clock=app.extensions["clock"], expiry_days=7)
    assert record.status == "done" and record.rows_written == len(archive_plays(db_conn, sam))
    out = io.BytesIO()
    write_file(database, record, out)
    assert b"[half a file" not in out.getvalue()


def test_export_command(app, archive, worker_env, tmp_path, db_conn):
    sam = archive["sim-acct-sam"]
    out = tmp_path / "sam.json"
    done = cli("export", "--user", "sim-acct-sam", "--format", "json", "-o", str(out), env=worker_env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(out.read_text())["plays"]) == len(archive_plays(db_conn, sam))
    assert db_conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 0  # nothing kept
    again = cli("export", "--user", "sim-acct-sam", "--format", "csv", "-o", str(out), env=worker_env)
    assert again.returncode != 0 and "exists" in again.stderr
    bad = cli("export", "--user", "sim-acct-sam", "--format", "csv", "--from", "2024-02-30", "-o",
              str(tmp_path / "x.csv"), env=worker_env)
    assert bad.returncode != 0 and "not a real date" in bad.stderr and not (tmp_path / "x.csv").exists()


def test_what_cannot_be_exported_is_refused_with_a_message(app, archive, client, db_conn):
    from conftest import csrf_token, sign_in

    sign_in(client, "sim-acct-sam")
    token = csrf_token(client, "/export")
    for form, message in [({"format": "xml"}, "Unknown format"), ({"format": "csv", "from": "2024-02-30"}, "not a real date"),
                          ({"format": "csv", "from": "2024-03-01", "to": "2024-02-01"}, "after the end date"),
                          ({"format": "csv", "from": "0001-01-01"}, "between the years"),
                          ({"format": "csv", "to": "99999-01-01"}, "look like 2024-01-31")]:
        answer = client.post("/export", data={"csrf_token": token, **form})
        assert answer.status_code == 400 and message in answer.get_data(as_text=True), form
    assert db_conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 0
    # EXPORT_MAX_WAITING (2): a third export while two wait is refused, nothing queued.
    for _ in range(2):
        assert client.post("/export", data={"csrf_token": token, "format": "csv"}).status_code == 303
    third = client.post("/export", data={"csrf_token": token, "format": "json"})
    assert third.status_code == 400 and "already have 2 exports" in third.get_data(as_text=True)
    assert db_conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 2
    assert db_conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'jobs.exports.write_export'"
                           ).fetchone()[0] == 2


def test_an_export_whose_worker_died_twice_is_failed_with_a_message(app, archive, db_conn):
    from app.exports.service import ABANDONED, abandon_export

    database = app.extensions["database"]
    with database.session() as session:
        export_id = create_export(session, session.get(User, archive["sim-acct-sam"]), "csv", None, None,
                                  now=app.extensions["clock"]()).id
    db_conn.execute("UPDATE exports SET status = 'running' WHERE id = %s", (export_id,))
    db_conn.execute("INSERT INTO export_chunks (export_id, seq, data) VALUES (%s, 0, 'half')", (export_id,))
    abandon_export(database, export_id)
    assert db_conn.execute("SELECT status, error FROM exports").fetchone() == ("failed", ABANDONED)
    assert db_conn.execute("SELECT count(*) FROM export_chunks").fetchone()[0] == 0
