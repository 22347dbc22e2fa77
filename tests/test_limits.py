"""Limits on what people can repeat, counted in Postgres (app/limits.py): sign-ins per
client address, imports and exports per person; over them, 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta

from conftest import REFERENCE_MS, csrf_token, freeze, sign_in

from app.limits import SIGN_INS_PER_IP, Limit, Limited, hit


def test_a_window_counts_then_starts_again(app, simulator):
    freeze(simulator)
    limit = Limit("test", 3, timedelta(minutes=10))
    clock = app.extensions["clock"]
    with app.extensions["database"].session() as session:
        for _ in range(3):
            hit(session, limit, "someone", now=clock())
        try:
            hit(session, limit, "someone", now=clock())
            raise AssertionError("the fourth hit must be refused")
        except Limited as exc:
            assert exc.retry_after_s == 600
        hit(session, limit, "someone else", now=clock())  # per subject
        hit(session, limit, "someone", now=clock() + timedelta(minutes=10))  # a new window


def test_sign_ins_per_client_address(app, client, simulator):
    freeze(simulator)
    for _ in range(SIGN_INS_PER_IP.hits):
        assert client.get("/auth/login").status_code == 302
    limited = client.get("/auth/login")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "600"
    assert "Too many sign-ins" in limited.get_data(as_text=True)
    freeze(simulator, REFERENCE_MS + 11 * 60_000)
    assert client.get("/auth/login").status_code == 302


def test_imports_and_exports_per_person_per_day(app, client, simulator, db_conn):
    freeze(simulator)
    sign_in(client, "sim-acct-sam")
    uid = db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-sam'").fetchone()[0]
    db_conn.execute("INSERT INTO rate_limits VALUES (%s, %s, 20), (%s, %s, 30)",
                    (f"import-user:{uid}", app.extensions["clock"](), f"export-user:{uid}", app.extensions["clock"]()))
    token = csrf_token(client, "/export")
    export = client.post("/export", data={"format": "csv", "csrf_token": token})
    assert export.status_code == 429 and "30 exports today" in export.get_data(as_text=True)
    import io

    upload = client.post("/import", data={"csrf_token": token, "rule": "default",
                                          "files": (io.BytesIO(b"[]"), "StreamingHistory_music_0.json")},
                         content_type="multipart/form-data")
    assert upload.status_code == 429 and "20 imports today" in upload.get_data(as_text=True)
    assert db_conn.execute("SELECT count(*) FROM exports").fetchone()[0] == 0
    assert db_conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 0
