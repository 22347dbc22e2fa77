"""DATABASE_URL in Heroku's `postgres://` form, against a separately started Postgres on TCP:
the release step migrates, the app runs on it, and a user can sign in end to end."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import psycopg
import pytest
import requests

from app.migrate import head
from conftest import RunningApp, cli


@pytest.fixture(scope="module")
def heroku_url(tcp_postgres):
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{tcp_postgres}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE heroku_app")
    return f"postgres://postgres:ignored-by-trust@127.0.0.1:{tcp_postgres}/heroku_app"


def test_release_then_run_then_sign_in(heroku_url, tmp_path):
    release = cli("db", "upgrade", env={"DATABASE_URL": heroku_url, "SECRET_KEY": "k" * 32,
                                        "TOKEN_ENCRYPTION_KEY": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
                                        "SPOTIFY_CLIENT_ID": "x", "SPOTIFY_CLIENT_SECRET": "y"})
    assert release.returncode == 0, release.stderr
    assert f"database at {head()} (head)" in release.stdout

    app = RunningApp(tmp_path / "var", extra_env={
        "DATABASE_URL": heroku_url, "SECRET_KEY": "k" * 32,
        "TOKEN_ENCRYPTION_KEY": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="})
    try:
        assert "embedded Postgres" not in app.output()
        browser = requests.Session()
        consent_page = browser.get(f"{app.url}/auth/login", timeout=10)
        assert consent_page.url.startswith(app.simulator_url) and "Riley Demo" in consent_page.text
        form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', consent_page.text))
        dashboard = browser.post(urljoin(consent_page.url, "/authorize"), timeout=10,
                                 data=form | {"account": "sim-acct-riley", "decision": "accept"})
        assert dashboard.url == f"{app.url}/dashboard"
        assert "Hello, Riley Demo" in dashboard.text
    finally:
        assert app.stop() == 0, app.output()
    assert not (tmp_path / "var" / "pg").exists()  # never touched the embedded server
    with psycopg.connect(heroku_url.replace("postgres://", "postgresql://", 1)) as conn:
        assert conn.execute("SELECT spotify_id FROM users").fetchall() == [("sim-acct-riley",)]
