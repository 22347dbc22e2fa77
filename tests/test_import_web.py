"""The Import page: upload, the job, live progress, reports; and a worker killed mid-import."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime, timedelta

import pytest
import requests

from app import create_app
from app.config import load_settings
from app.imports.service import run_import
from app.simulator.export import export_zip, synthetic_history, synthetic_zip
from conftest import app_environ, callback_path, consent, csrf_token, database_activity, freeze, sign_in, wait_for

DAY_MS = 86_400_000


@pytest.fixture
def riley(client, simulator):
    sign_in(client, "sim-acct-riley")
    return client


def upload(client, files: dict[str, bytes], rule="default", token=None):
    data = {"rule": rule, "files": [(io.BytesIO(content), name) for name, content in files.items()]}
    if token is not False:
        data["csrf_token"] = token or csrf_token(client, "/import")
    return client.post("/import", data=data, content_type="multipart/form-data")


def test_upload_queues_a_job_and_the_page_follows_it_to_the_report(riley, app, simulator, db_conn):
    now = freeze(simulator)
    data = export_zip(simulator.world, simulator.world.account("sim-acct-riley"), now - 10 * DAY_MS, now)
    response = upload(riley, {"my_spotify_data.zip": data})
    assert response.status_code == 303
    import_id = int(re.search(r"/import/(\d+)$", response.headers["Location"]).group(1))
    job = db_conn.execute("SELECT task_name, args, lock FROM procrastinate_jobs").fetchone()
    user_id = db_conn.execute("SELECT id FROM users").fetchone()[0]
    assert job == ("jobs.imports.import_export", {"import_id": import_id}, f"import-user-{user_id}")
    assert db_conn.execute("SELECT count(*) FROM import_chunks").fetchone()[0] == 1  # stored for any worker

    page = riley.get(f"/import/{import_id}").get_data(as_text=True)
    assert "Waiting for a worker" in page and 'hx-trigger="every 1s"' in page
    # Mid-import, the fragment shows rows so far and an estimate of the total.
    db_conn.execute("UPDATE imports SET status = 'running', stage = 'reading files', rows_read = 4000, "
                    "bytes_read = 1000000, bytes_total = 5000000, counts = '{\"short_play\": 12}' WHERE id = %s",
                    (import_id,))
    running = riley.get(f"/import/{import_id}/progress").get_data(as_text=True)
    assert "Reading files…" in running and "4,000</strong> rows read" in running and "of about 20,000" in running
    assert "Short plays (under 30 seconds)" in running and 'hx-trigger="every 1s"' in running
    db_conn.execute("UPDATE imports SET status = 'queued' WHERE id = %s", (import_id,))

    run_import(app.extensions["database"], import_id)  # what the job does
    fragment = riley.get(f"/import/{import_id}/progress", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "plays added to your archive" in fragment and "hx-trigger" not in fragment  # polling stops
    report = db_conn.execute("SELECT report FROM imports WHERE id = %s", (import_id,)).fetchone()[0]
    assert f"{report['imported']:,}</td>" in fragment and f"{report['rows']:,}</td>" in fragment
    assert "<html" not in fragment

    listing = riley.get("/import").get_data(as_text=True)
    assert "my_spotify_data.zip" in listing and f"{report['imported']:,} plays added" in listing
    assert f"{report['imported']:,}" in riley.get("/dashboard").get_data(as_text=True)


def test_other_users_cannot_see_an_import(riley, app, simulator):
    upload(riley, {"Streaming_History_Audio_2024.json": b"[]"})
    other = app.test_client()
    sign_in(other, "sim-acct-sam")
    assert other.get("/import/1").status_code == 404
    assert other.get("/import/1/progress").status_code == 404
    assert "Streaming_History_Audio_2024.json" not in other.get("/import").get_data(as_text=True)


def test_import_pages_print_times_in_the_users_zone(riley, app, simulator, db_conn):
    db_conn.execute("UPDATE users SET timezone = 'Asia/Kathmandu'")  # UTC+05:45: no rounding hides it
    now = freeze(simulator)
    upload(riley, {"my_spotify_data.zip": export_zip(simulator.world, simulator.world.account("sim-acct-riley"),
                                                     now - 3 * DAY_MS, now)})
    db_conn.execute("UPDATE imports SET created_at = '2026-11-20 18:30:00+00'")
    run_import(app.extensions["database"], 1)
    first, last = db_conn.execute("SELECT report->'period'->>'from', report->'period'->>'to' FROM imports"
                                  ).fetchone()
    show, listing = riley.get("/import/1").get_data(as_text=True), riley.get("/import").get_data(as_text=True)
    for page in (show, listing):
        assert "2026-11-21 00:15" in page and "18:30" not in page and "UTC" not in page
    assert "Import of 2026-11-21 00:15" in show
    local_day = lambda iso: (datetime.fromisoformat(iso) + timedelta(hours=5, minutes=45)).strftime("%Y-%m-%d")
    assert f"{local_day(first)} to {local_day(last)}" in show


def test_uploads_need_csrf_and_files_and_the_right_kind_of_file(riley, db_conn):
    assert upload(riley, {"x.json": b"[]"}, token=False).status_code == 400
    empty = riley.post("/import", data={"csrf_token": csrf_token(riley, "/import")})
    assert empty.status_code == 400 and "Choose your my_spotify_data.zip" in empty.get_data(as_text=True)
    picture = upload(riley, {"cat.png": b"\x89PNG\r\n\x1a\n"})
    assert picture.status_code == 400 and "cat.png is not a zip, JSON or CSV file" in picture.get_data(
        as_text=True)
    assert db_conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 0


def test_uploads_over_the_limit_are_refused(database_url, simulator, db_conn):
    settings = load_settings(app_environ(database_url, simulator.url, IMPORT_MAX_UPLOAD_MB="1"))
    small = create_app({"TESTING": True}, settings=settings)
    client = small.test_client()
    sign_in(client, "sim-acct-riley")
    response = upload(client, {"big.json": b"[" + b" " * (2 * 1024 * 1024) + b"]"})
    assert response.status_code == 413 and "Upload too large" in response.get_data(as_text=True)
    assert db_conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 0
    small.extensions["database"].dispose()


def test_a_failed_import_says_why_and_that_nothing_was_saved(riley, app, db_conn):
    upload(riley, {"Streaming_History_Audio_2024.json": json.dumps({"not": "a list"}).encode()})
    run_import(app.extensions["database"], 1)
    page = riley.get("/import/1").get_data(as_text=True)
    assert "The import failed." in page and "expected a list of plays" in page and "Nothing was saved." in page


def queued_big_import(app, db_conn, tmp_path) -> int:
    """A 150,000-row import queued for a user created ahead of sign-in (no tokens, never
    polled, so only the import writes plays); its id."""
    from app.imports.service import create_import, queue_import

    user_id = db_conn.execute("INSERT INTO users (spotify_id, display_name) VALUES ('family', 'Family') "
                              "RETURNING id").fetchone()[0]
    path = tmp_path / "my_spotify_data.zip"
    synthetic_zip(path, synthetic_history(150_000, years=4, tracks=20_000, artists=4_000))
    with app.extensions["database"].session() as session:
        with open(path, "rb") as f:
            record = create_import(session, user_id, [("my_spotify_data.zip", f)], "default")
            queue_import(session, record)
    return record.id


def test_a_worker_killed_mid_import_leaves_nothing_and_the_retry_finishes(app, simulator, db_conn, database_url,
                                                                         workers, tmp_path):
    import_id = queued_big_import(app, db_conn, tmp_path)

    first = workers()
    wait_for(lambda: db_conn.execute("SELECT rows_read FROM imports WHERE id = %s", (import_id,)
                                     ).fetchone()[0] > 20_000, message="the import under way")
    first.kill()
    assert db_conn.execute("SELECT status FROM imports WHERE id = %s", (import_id,)).fetchone()[0] == "running"
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 0  # its transaction died with it

    second = workers()
    wait_for(lambda: db_conn.execute("SELECT status FROM imports WHERE id = %s", (import_id,)
                                     ).fetchone()[0] == "done", timeout=120, message="the retried import",
             explain=lambda: f"{database_activity(db_conn)}\nworker log:\n{second.output()[-4000:]}")
    report = db_conn.execute("SELECT report FROM imports WHERE id = %s", (import_id,)).fetchone()[0]
    assert report["rows"] == 150_000
    assert report["imported"] + report["episodes"] + report["already_in_archive"] + report["duplicate_in_upload"] + sum(
        report["skipped"].values()) == 150_000
    assert report["already_in_archive"] == 0  # a clean restart, not a half-merged one
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == report["imported"] > 100_000
    # The stored upload is deleted just after "done" is written (run_import's last step):
    # waited on, not read at once (a busy machine saw the moment between the two).
    wait_for(lambda: db_conn.execute("SELECT count(*) FROM import_chunks").fetchone()[0] == 0,
             message="the stored upload deleted")


def peak_rss_mb(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_an_upload_built_to_exhaust_memory_is_refused_and_the_worker_lives_on(riley, db_conn, workers):
    """200 KB of nested brackets: ijson would need about 24 GB for it."""
    nested = b"[" * 100_000 + b"]" * 100_000
    assert upload(riley, {"StreamingHistory_music_0.json": nested}).status_code == 303
    worker = workers()
    wait_for(lambda: db_conn.execute("SELECT status FROM imports").fetchone()[0] == "failed", timeout=60,
             message="the import refused")
    error = db_conn.execute("SELECT error FROM imports").fetchone()[0]
    assert "nested more than 16 levels deep" in error
    assert worker.process.poll() is None and peak_rss_mb(worker.process.pid) < 400
    # Handled: the job ends (a moment after the import row says failed), it does not crash.
    wait_for(lambda: db_conn.execute("SELECT status FROM procrastinate_jobs WHERE task_name = "
                                     "'jobs.imports.import_export'").fetchone()[0] != "doing", timeout=30,
             message="the job to end")
    assert db_conn.execute("SELECT status FROM procrastinate_jobs WHERE task_name = 'jobs.imports.import_export'"
                           ).fetchone()[0] == "succeeded"

    # The same worker goes on with the next import.
    good = json.dumps([{"endTime": "2024-05-01 12:00", "artistName": "A", "trackName": "T", "msPlayed": 200_000}])
    upload(riley, {"StreamingHistory_music_0.json": good.encode()})
    wait_for(lambda: db_conn.execute("SELECT status FROM imports ORDER BY id DESC LIMIT 1").fetchone()[0] == "done",
             timeout=60, message="the next import")
    assert worker.process.poll() is None


def test_a_job_whose_worker_dies_twice_is_failed_with_a_message_not_retried_forever(app, db_conn, workers,
                                                                                    tmp_path):
    from app.imports.service import ABANDONED

    import_id = queued_big_import(app, db_conn, tmp_path)

    def state():
        return db_conn.execute("SELECT i.status, i.rows_read, j.status, j.attempts FROM imports i, procrastinate_jobs j "
                               "WHERE i.id = %s AND j.task_name = 'jobs.imports.import_export'", (import_id,)).fetchone()

    for attempt in (0, 1):  # the first run and its one retry both take their worker down
        worker = workers()
        wait_for(lambda: state()[1] > 20_000 and state()[2] == "doing" and state()[3] == attempt, timeout=90,
                 message=f"run {attempt + 1} under way")
        worker.kill()
        db_conn.execute("UPDATE imports SET rows_read = 0 WHERE id = %s", (import_id,))

    workers()  # notices the second death: no third run
    wait_for(lambda: state()[0] == "failed", timeout=60, message="the import failed")
    status, rows_read, job_status, attempts = state()
    assert job_status == "failed" and attempts == 2  # two runs, each ended by its worker's death
    assert db_conn.execute("SELECT error FROM imports WHERE id = %s", (import_id,)).fetchone()[0] == ABANDONED
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM import_chunks").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')").fetchone()[0] \
        == 0


def test_a_person_cannot_queue_imports_without_end(riley, db_conn):
    good = json.dumps([{"endTime": "2024-05-01 12:00", "artistName": "A", "trackName": "T", "msPlayed": 200_000}])
    for _ in range(2):  # no worker runs: both wait
        assert upload(riley, {"StreamingHistory_music_0.json": good.encode()}).status_code == 303
    refused = upload(riley, {"StreamingHistory_music_0.json": good.encode()})
    assert refused.status_code == 429
    assert "You already have 2 imports waiting or running" in refused.get_data(as_text=True)
    assert db_conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 2
    db_conn.execute("UPDATE imports SET status = 'done' WHERE id = 1")
    assert upload(riley, {"StreamingHistory_music_0.json": good.encode()}).status_code == 303  # room again


def raw_upload(url: str, cookie: str, token: str, body_chunks, *, chunked: bool, length: int | None = None):
    """POST /import over a socket, as a script would: returns (status line, bytes sent)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = ["POST /import HTTP/1.1", f"Host: {parts.netloc}", f"Cookie: {cookie}", f"X-CSRFToken: {token}",
            "Content-Type: multipart/form-data; boundary=xyz"]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        conn.settimeout(0.05)
        for chunk in body_chunks:
            try:
                if conn.recv(1, socket.MSG_PEEK):
                    break  # the server has answered: stop sending
            except (socket.timeout, BlockingIOError):
                pass
            try:
                conn.sendall((f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if chunked else chunk)
            except socket.timeout:
                continue  # the server is not reading (its buffers are full): look for its answer again
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        conn.settimeout(10)
        return conn.recv(200).split(b"\r\n", 1)[0].decode(), sent


def test_an_upload_of_unknown_size_is_refused_before_it_is_read(app, simulator, database_url):
    """A chunked body names no size: werkzeug would spool it to disk up to the limit (512 MB)
    before refusing it. It is refused at once instead."""
    from conftest import app_server

    server = app_server(app)
    try:
        browser = requests.Session()
        authorize = browser.get(f"{server.url}/auth/login", allow_redirects=False, timeout=10).headers["Location"]
        browser.get(f"{server.url}{callback_path(consent(authorize, 'sim-acct-riley'))}", timeout=30)
        token = re.search(r'"X-CSRFToken": "([^"]+)"', browser.get(f"{server.url}/import", timeout=10).text).group(1)
        cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
        endless = (b"x" * 1024 * 1024 for _ in range(600))  # 600 MB, if anyone read it all
        status, sent = raw_upload(server.url, cookie, token, endless, chunked=True)
        assert status.split()[1] == "411" and sent < 50 * 1024 * 1024  # the reason phrase is the server's
        too_big = (b"x" * 1024 * 1024 for _ in range(600))
        status, sent = raw_upload(server.url, cookie, token, too_big, chunked=False, length=600 * 1024 * 1024)
        assert status.split()[1] == "413" and sent < 50 * 1024 * 1024
    finally:
        server.stop()
