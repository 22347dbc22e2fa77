"""PDF reports: the text of the PDF carries the dashboard's numbers for the period, the
preview is the same report as a page, and images that cannot be fetched are left out
within the fetcher's time limits."""

from __future__ import annotations

import io
import socket
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from conftest import cli, csrf_token, sign_in
from pypdf import PdfReader
from test_exports import archive, export_bytes  # noqa: F401 - the fixture is shared

from app.email.outbox import mail_context
from app.reports import report as report_module
from app.stats import queries
from app.stats.periods import between
from app.templating import duration
from app.time import zone

YEAR = between(date(2024, 1, 1), date(2024, 12, 31), zone("UTC"))


def pdf_text(data: bytes) -> tuple[str, int]:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages), len(reader.pages)


def expected(app, user_id: int):
    with app.extensions["database"].engine.connect() as conn:
        return (queries.totals(conn, user_id, YEAR), queries.top(conn, user_id, YEAR, "artists"),
                queries.top(conn, user_id, YEAR, "tracks"))


def test_the_pdf_carries_the_dashboards_numbers_for_the_period(app, archive):  # noqa: F811
    sam = archive["sim-acct-sam"]
    totals, artists, tracks = expected(app, sam)
    assert totals.plays > 300 and artists and tracks
    with mail_context(app):
        data = export_bytes(app, sam, "pdf", date(2024, 1, 1), date(2024, 12, 31))
    assert data.startswith(b"%PDF-")
    text, pages = pdf_text(data)
    flat = " ".join(text.split())
    assert 4 <= pages <= 12, pages
    assert "2024 in review" in flat and "1 January 2024 – 31 December 2024" in flat
    for figure in (f"{totals.plays:,}", duration(totals.ms), f"{totals.tracks:,}", f"{totals.artists:,}"):
        assert figure in flat, figure
    assert artists[0].name in flat and f"{artists[0].plays:,} plays · {duration(artists[0].ms)}" in flat
    assert tracks[0].name in flat
    assert "How this was counted" in flat and "Listening clock" in flat
    assert "Top albums" in flat and "Discoveries" in flat and "Habits" in flat


def test_the_preview_is_the_same_report_as_a_page(app, archive, client):  # noqa: F811
    sam = archive["sim-acct-sam"]
    totals, artists, _ = expected(app, sam)
    sign_in(client, "sim-acct-sam")
    page = client.get("/report/preview?from=2024-01-01&to=2024-12-31")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "2024 in review" in html
    assert f"<dd>{totals.plays:,}</dd>" in html and artists[0].name in html
    assert "<script>" not in html and "style=" not in html  # the page's CSP allows neither
    for hostile in ("from=1900-01-01&to=9998-12-31", "from=9998-01-01", "to=1900-01-02", "from=%00", "from=" + "9" * 5000,
                    "from=2024-01-01&to=2023-01-01", "from=%ED%A0%80"):
        assert client.get(f"/report/preview?{hostile}").status_code in (200, 400), hostile
    bad = client.get("/report/preview?from=2024-02-30")
    assert bad.status_code == 400 and "not a real date" in bad.get_data(as_text=True)
    assert client.get("/export").status_code == 200 and "PDF report" in client.get("/export").get_data(as_text=True)


def test_images_that_do_not_answer_are_left_out_within_the_limits(app, archive, db_conn, monkeypatch):  # noqa: F811
    """Covers point at a server that accepts connections and never answers: without the
    fetcher's limits the PDF would wait on each of them for good."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    attempts = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            attempts.append(time.monotonic())
            held.append(conn)  # never answered

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    db_conn.execute("UPDATE albums SET image_url = 'http://127.0.0.1:' || %s || '/cover/' || id", (port,))
    db_conn.execute("UPDATE artists SET image_url = 'http://127.0.0.1:' || %s || '/artist/' || id", (port,))
    monkeypatch.setattr("app.reports.fetcher.image_allowed", lambda url, settings: url.startswith("http://127.0.0.1"))
    monkeypatch.setattr(report_module, "FETCH_TIMEOUT_S", 0.5)
    monkeypatch.setattr(report_module, "FETCH_BUDGET_S", 1.5)
    try:
        started = time.monotonic()
        with mail_context(app):
            data = export_bytes(app, archive["sim-acct-sam"], "pdf", date(2024, 1, 1), date(2024, 12, 31))
        spent = time.monotonic() - started
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert data.startswith(b"%PDF-") and "2024 in review" in pdf_text(data)[0]
    # The budget stops fetching after about 1.5 s of waiting: a handful of attempts, not one
    # per cover (there are dozens), each given up on after half a second.
    assert 1 <= len(attempts) <= 5, len(attempts)
    print(f"PDF with {len(attempts)} unanswered image fetches written in {spent:.1f} s")


def test_the_fetcher_refuses_what_is_not_a_static_file_or_an_image_host(app):
    from app.reports.fetcher import ReportFetcher

    fetcher = ReportFetcher(Path(app.static_folder), app.config["SETTINGS"], base_url=report_module.BASE_URL,
                            timeout=1, budget=1)
    assert fetcher.fetch(report_module.BASE_URL + "static/report.css").read().startswith(b"/*")
    for url in ("https://evil.example/x.png", "file:///etc/passwd", report_module.BASE_URL + "static/../../app/config.py",
                "http://169.254.169.254/latest/meta-data/", "https://i.scdn.co.evil.example/x"):
        with pytest.raises(ValueError):
            fetcher.fetch(url)


def test_operators_write_a_report_from_the_command_line(app, archive, worker_env, tmp_path):  # noqa: F811
    out = tmp_path / "report.pdf"
    done = cli("export", "--user", str(archive["sim-acct-sam"]), "--format", "pdf", "--from", "2024-01-01",
               "--to", "2024-12-31", "-o", str(out), env=worker_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2024 in review" in pdf_text(out.read_bytes())[0]


def test_a_pdf_export_is_asked_for_on_the_export_page(app, archive, client, db_conn):  # noqa: F811
    sign_in(client, "sim-acct-sam")
    token = csrf_token(client, "/export")
    response = client.post("/export", data={"format": "pdf", "from": "2024-01-01", "to": "2024-12-31",
                                            "csrf_token": token})
    assert response.status_code == 303
    assert db_conn.execute("SELECT format, status FROM exports").fetchall() == [("pdf", "queued")]
