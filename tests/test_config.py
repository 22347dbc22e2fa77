"""Configuration is read from the environment and every problem is one clear line."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from app.config import DEMO_CLIENT_ID, ConfigError, load_settings, normalise_database_url, sqlalchemy_url
from conftest import cli

# Fixed (not generated) so that test ids are the same in every pytest-xdist worker.
GOOD_KEY = "x6MAoroytRHkwgziCH00zLCgteiiLXOgUC5lhDyk59c="


def deployed(**overrides) -> dict[str, str]:
    env = {
        "DATABASE_URL": "postgres://u:p@db.example:5432/prod",
        "SECRET_KEY": "s" * 40,
        "TOKEN_ENCRYPTION_KEY": GOOD_KEY,
        "SPOTIFY_CLIENT_ID": "client",
        "SPOTIFY_CLIENT_SECRET": "secret",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def test_deployed_configuration_is_read_and_normalised():
    settings = load_settings(deployed(PORT="8080"))
    assert settings.database_url == "postgresql://u:p@db.example:5432/prod"
    assert sqlalchemy_url(settings.database_url) == "postgresql+psycopg://u:p@db.example:5432/prod"
    assert settings.port == 8080
    assert settings.spotify_redirect_uri == "http://127.0.0.1:8080/auth/callback"
    assert settings.spotify_accounts_url == "https://accounts.spotify.com"
    assert not settings.demo_mode
    assert settings.generated_secrets == ()


@pytest.mark.parametrize("name", ["SECRET_KEY", "TOKEN_ENCRYPTION_KEY", "SPOTIFY_CLIENT_ID", "SPOTIFY_CLIENT_SECRET"])
def test_deployed_requires_each_secret(name):
    with pytest.raises(ConfigError) as err:
        load_settings(deployed(**{name: None}))
    assert str(err.value).startswith(f"{name} is not set")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("TOKEN_ENCRYPTION_KEY", "not-a-fernet-key"),
        ("TOKEN_ENCRYPTION_KEY", f"{GOOD_KEY},short"),
        ("DATABASE_URL", "mysql://u@h/db"),
        ("PORT", "http"),
        ("PORT", "70000"),
        ("SECRET_KEY", "short"),
        ("SPOTIFY_REDIRECT_URI", "http://localhost:5000/auth/callback"),
        ("SPOTIFY_REDIRECT_URI", "http://127.0.0.1:5000/elsewhere"),
        ("SPOTIFY_API_URL", "ftp://x"),
        ("LOG_LEVEL", "chatty"),
        ("SMTP_URL", "mail.example.com"),
        ("SMTP_URL", "smtp://mail.example.com:port"),
        ("SMTP_URL", "smtp://mail.example.com?starttls=maybe"),
        ("MAIL_FROM", "nobody"),
        ("MAIL_FROM", "a@example.com\nBcc: victim@example.com"),
    ],
)
def test_malformed_values_are_named(name, value):
    with pytest.raises(ConfigError) as err:
        load_settings(deployed(**{name: value}))
    assert str(err.value).startswith(f"{name} is malformed")


def test_heroku_style_urls_are_accepted():
    assert normalise_database_url("postgres://a:b@h:5432/d") == "postgresql://a:b@h:5432/d"
    assert normalise_database_url("postgresql://a@/d?host=/tmp") == "postgresql://a@/d?host=/tmp"


def test_local_run_generates_and_keeps_secrets(tmp_path):
    env = {"AUDIOSPECTIVE_DATA_DIR": str(tmp_path), "SPOTIFY_ACCOUNTS_URL": "http://127.0.0.1:5001",
           "SPOTIFY_API_URL": "http://127.0.0.1:5001"}
    first = load_settings(env)
    assert first.uses_embedded_db and first.demo_mode
    assert set(first.generated_secrets) == {"SECRET_KEY", "TOKEN_ENCRYPTION_KEY"}
    assert first.spotify_client_id == DEMO_CLIENT_ID
    Fernet(first.token_encryption_keys[0])  # a usable key
    secrets_file = tmp_path / "secrets.env"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600

    second = load_settings(env)
    assert second.generated_secrets == ()
    assert (second.secret_key, second.token_encryption_keys) == (first.secret_key, first.token_encryption_keys)


def test_real_spotify_without_credentials_is_refused_locally(tmp_path):
    with pytest.raises(ConfigError, match="^SPOTIFY_CLIENT_ID is not set"):
        load_settings({"AUDIOSPECTIVE_DATA_DIR": str(tmp_path)})


def test_migrations_do_not_need_spotify_credentials():
    settings = load_settings(deployed(SPOTIFY_CLIENT_ID=None, SPOTIFY_CLIENT_SECRET=None), require_spotify=False)
    assert settings.database_url == "postgresql://u:p@db.example:5432/prod"
    with pytest.raises(ConfigError, match="^TOKEN_ENCRYPTION_KEY is malformed"):
        load_settings(deployed(TOKEN_ENCRYPTION_KEY="x", SPOTIFY_CLIENT_ID=None), require_spotify=False)


def test_processes_refuse_to_start_with_a_malformed_encryption_key(tmp_path):
    env = deployed(TOKEN_ENCRYPTION_KEY="definitely-not-base64!", AUDIOSPECTIVE_DATA_DIR=str(tmp_path))
    for args in (["worker"], ["run"], ["db", "upgrade"]):
        result = cli(*args, env=env)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("audiospective: configuration error: TOKEN_ENCRYPTION_KEY is malformed")


def test_wsgi_entry_point_refuses_to_boot_with_a_malformed_key(tmp_path):
    import os
    import subprocess
    import sys

    from app.config import ROOT

    env = {**os.environ, **deployed(TOKEN_ENCRYPTION_KEY="nope")}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 3
    assert "configuration error: TOKEN_ENCRYPTION_KEY is malformed" in result.stderr
    assert "Traceback" not in result.stderr


def test_archival_settings_are_read_and_checked():
    settings = load_settings(deployed(POLL_INTERVAL_FREE="3-45", POLL_INTERVAL_PRO="1-10", FAILURE_NETWORK="5m/30m/4",
                                      SPOTIFY_REQUESTS_PER_30S="90", SPOTIFY_POLLING_RESERVE="0.5"))
    archival = settings.archival
    assert archival.free_interval_s == (180, 2700) and archival.pro_interval_s == (60, 600)
    assert archival.failures["network"].base_s == 300 and archival.failures["network"].deactivate_after == 4
    assert archival.failures["auth"].base_s == 1800  # untouched classes keep the seed design's values
    assert (archival.requests_per_30s, archival.polling_reserve) == (90, 0.5)


@pytest.mark.parametrize("name, value", [
    ("POLL_INTERVAL_FREE", "60-5"), ("POLL_INTERVAL_FREE", "often"), ("FAILURE_AUTH", "30m/4h"),
    ("FAILURE_SPOTIFY_5XX", "1h/10m/3"), ("SPOTIFY_REQUESTS_PER_30S", "0"), ("SPOTIFY_POLLING_RESERVE", "2"),
    ("WORKER_STALLED_AFTER_SECONDS", "soon"),
])
def test_malformed_archival_settings_are_named(name, value):
    with pytest.raises(ConfigError, match=f"^{name} is malformed"):
        load_settings(deployed(**{name: value}))


def test_commands_ask_only_for_the_settings_they_use(database_url, tmp_path, db_conn):
    """No Spotify app registered yet: adding a user and importing their history work (they
    never talk to Spotify); polling says what it lacks."""
    env = {"DATABASE_URL": database_url, "SECRET_KEY": "s" * 40, "TOKEN_ENCRYPTION_KEY": GOOD_KEY,
           "AUDIOSPECTIVE_DATA_DIR": str(tmp_path)}
    added = cli("users", "add", "--spotify-id", "family", "--name", "Family", env=env)
    assert added.returncode == 0, added.stderr
    history = tmp_path / "StreamingHistory_music_0.json"
    history.write_text('[{"endTime": "2024-05-01 12:00", "artistName": "A", "trackName": "T", "msPlayed": 200000}]')
    imported = cli("import", "--user", "family", str(history), env=env)
    assert imported.returncode == 0, imported.stderr
    assert db_conn.execute("SELECT count(*) FROM plays").fetchone()[0] == 1
    listed = cli("users", "list", env=env)
    assert listed.returncode == 0 and "family" in listed.stdout
    polled = cli("archive", "--user", "family", env=env)
    assert polled.returncode == 2 and "configuration error: SPOTIFY_CLIENT_ID is not set" in polled.stderr


def test_smtp_settings_are_read_from_the_url_or_the_environment():
    settings = load_settings(deployed(SMTP_URL="smtps://me%40example.com:p%3Ass@mail.example.com",
                                      MAIL_FROM="Archive <archive@example.com>"))
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.tls) == ("mail.example.com", 465, "ssl")
    assert (settings.smtp.username, settings.smtp.password) == ("me@example.com", "p:ss")
    assert settings.mail_from == "Archive <archive@example.com>"
    other = load_settings(deployed(SMTP_URL="smtp://mail.example.com?starttls=required", SMTP_USERNAME="u",
                                   SMTP_PASSWORD="p"))
    assert (other.smtp.port, other.smtp.tls, other.smtp.username, other.smtp.password) == (587, "starttls", "u", "p")
    assert load_settings(deployed()).smtp is None
    assert load_settings(deployed(SPOTIFY_REDIRECT_URI="https://music.example.org/auth/callback")).public_url \
        == "https://music.example.org"


def test_a_platform_generated_secret_is_accepted_as_the_encryption_key_and_old_keys_stay_readable():
    """Heroku's app.json generator makes 64 hex digits, not a Fernet key: the key is derived
    from it, identically on every start (tokens written yesterday open today), and a
    Fernet key beside it still decrypts what it encrypted."""
    import secrets

    from app.crypto import TokenCipher, UndecryptableToken

    generated = secrets.token_hex(32)
    first = load_settings(deployed(TOKEN_ENCRYPTION_KEY=generated)).token_encryption_keys
    again = load_settings(deployed(TOKEN_ENCRYPTION_KEY=generated)).token_encryption_keys
    other = load_settings(deployed(TOKEN_ENCRYPTION_KEY=secrets.token_hex(32))).token_encryption_keys
    assert first == again and first != other and first[0] != generated
    old_token = TokenCipher((GOOD_KEY,)).encrypt("refresh-token")
    rotated = TokenCipher(load_settings(deployed(TOKEN_ENCRYPTION_KEY=f"{generated},{GOOD_KEY}")).token_encryption_keys)
    assert rotated.decrypt(old_token) == "refresh-token"
    assert TokenCipher(first).decrypt(rotated.encrypt("new")) == "new"  # the derived key encrypts
    with pytest.raises(UndecryptableToken):
        TokenCipher(other).decrypt(rotated.encrypt("new"))
    with pytest.raises(ConfigError, match="^TOKEN_ENCRYPTION_KEY is malformed"):
        load_settings(deployed(TOKEN_ENCRYPTION_KEY="a" * 31))  # too short to be a secret


def test_pool_sizes_come_from_the_settings():
    settings = load_settings(deployed(WEB_THREADS="6", WORKER_CONCURRENCY="3"))
    assert (settings.web_threads, settings.worker_concurrency) == (6, 3)
    assert load_settings(deployed()).web_threads == 3 and load_settings(deployed()).worker_concurrency == 2
    for name in ("WEB_THREADS", "WORKER_CONCURRENCY"):
        with pytest.raises(ConfigError, match=f"^{name} is malformed"):
            load_settings(deployed(**{name: "0"}))
