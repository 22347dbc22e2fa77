"""Token freshness against the real database and the simulator over HTTP."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests

from app.spotify.client import SpotifyClient
from app.spotify.errors import NetworkError
from app.spotify.tokens import ReauthRequired, TokenService
from app.time import utcnow
from conftest import free_port, sign_in


@pytest.fixture
def user_id(client, simulator, db_conn):
    assert sign_in(client, "sim-acct-riley").status_code == 302
    return db_conn.execute("SELECT id FROM users WHERE spotify_id = 'sim-acct-riley'").fetchone()[0]


@pytest.fixture
def tokens(app) -> TokenService:
    return app.extensions["tokens"]


def stored(db_conn, user_id):
    return db_conn.execute(
        "SELECT access_token_enc, refresh_token_enc, expires_at FROM spotify_tokens WHERE user_id = %s", (user_id,)
    ).fetchone()


def expire_soon(db_conn, user_id, minutes=4):
    db_conn.execute("UPDATE spotify_tokens SET expires_at = now() + %s WHERE user_id = %s",
                    (timedelta(minutes=minutes), user_id))


def refreshes(simulator) -> int:
    return simulator.stats().get("token:refresh", 0)


def works(simulator, access_token) -> bool:
    return requests.get(f"{simulator.url}/v1/me", headers={"Authorization": f"Bearer {access_token}"},
                        timeout=10).status_code == 200


def test_tokens_are_encrypted_at_rest(app, db_conn, user_id, simulator):
    access_raw, refresh_raw, _ = stored(db_conn, user_id)
    cipher = app.extensions["token_cipher"]
    access, refresh = cipher.decrypt(access_raw), cipher.decrypt(refresh_raw)
    assert works(simulator, access)  # the stored token is the real one...
    for raw, plain in ((access_raw, access), (refresh_raw, refresh)):
        raw = bytes(raw)
        assert plain.encode() not in raw  # ...and is not readable in the column
        assert raw.startswith(b"gAAAA")  # Fernet
    row = db_conn.execute("SELECT row_to_json(t)::text FROM spotify_tokens t WHERE user_id = %s", (user_id,)).fetchone()
    assert access not in row[0] and refresh not in row[0]


def test_a_fresh_token_is_used_without_calling_spotify(tokens, user_id, simulator, app, db_conn):
    before = refreshes(simulator)
    token = tokens.fresh_access_token(user_id)
    assert token == app.extensions["token_cipher"].decrypt(stored(db_conn, user_id)[0])
    assert refreshes(simulator) == before


def test_refresh_when_under_five_minutes_remain(tokens, user_id, simulator, db_conn):
    expire_soon(db_conn, user_id, minutes=4)
    old_access = tokens.cipher.decrypt(stored(db_conn, user_id)[0])
    token = tokens.fresh_access_token(user_id)
    assert token != old_access and works(simulator, token)
    assert refreshes(simulator) == 1
    remaining = stored(db_conn, user_id)[2] - utcnow()
    assert timedelta(minutes=59) < remaining <= timedelta(hours=1)


def test_rotated_refresh_token_is_persisted_before_use(tokens, user_id, simulator, db_conn, app):
    cipher = app.extensions["token_cipher"]
    simulator.world.config.rotate_refresh_tokens = True
    original_refresh = cipher.decrypt(stored(db_conn, user_id)[1])
    expire_soon(db_conn, user_id)
    tokens.fresh_access_token(user_id)
    rotated = cipher.decrypt(stored(db_conn, user_id)[1])
    assert rotated != original_refresh
    # The old one is dead at Spotify; the stored one keeps working, refresh after refresh.
    dead = requests.post(f"{simulator.url}/api/token", timeout=10, auth=(app.extensions["spotify"].client_id,
                         app.config["SETTINGS"].spotify_client_secret),
                         data={"grant_type": "refresh_token", "refresh_token": original_refresh})
    assert dead.json()["error"] == "invalid_grant"
    for _ in range(3):
        expire_soon(db_conn, user_id)
        assert works(simulator, tokens.fresh_access_token(user_id))
    assert refreshes(simulator) == 5


def test_refresh_token_is_kept_when_spotify_does_not_rotate(tokens, user_id, simulator, db_conn, app):
    cipher = app.extensions["token_cipher"]
    refresh_before = cipher.decrypt(stored(db_conn, user_id)[1])
    expire_soon(db_conn, user_id)
    tokens.fresh_access_token(user_id)
    assert refreshes(simulator) == 1
    assert cipher.decrypt(stored(db_conn, user_id)[1]) == refresh_before


def test_concurrent_refreshes_wait_for_each_other_and_share_the_result(tokens, user_id, simulator, db_conn):
    # Rotation makes a second refresh with the same token fatal (invalid_grant); latency
    # keeps the first refresh in flight while the others arrive.
    simulator.world.config.rotate_refresh_tokens = True
    simulator.world.config.latency_ms = 400
    expire_soon(db_conn, user_id)
    results, errors = [], []
    barrier = threading.Barrier(4)

    def refresh():
        barrier.wait()
        try:
            results.append(tokens.fresh_access_token(user_id))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1
    assert refreshes(simulator) == 1
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (user_id,)).fetchone()[0] == "active"


def test_invalid_grant_marks_reauth_required_and_stops_calling(tokens, user_id, simulator, db_conn):
    simulator.call("POST", "/_sim/accounts/sim-acct-riley/revoke")
    expire_soon(db_conn, user_id)
    with pytest.raises(ReauthRequired):
        tokens.fresh_access_token(user_id)
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (user_id,)).fetchone()[0] == "reauth_required"
    calls = dict(simulator.stats())
    assert calls["token:refresh"] == 1
    for _ in range(3):
        with pytest.raises(ReauthRequired):
            tokens.fresh_access_token(user_id)
    assert simulator.stats() == calls  # not one more request of any kind


def test_network_failure_during_refresh_changes_nothing(app, user_id, db_conn):
    expire_soon(db_conn, user_id)
    before = stored(db_conn, user_id)
    dead = f"http://127.0.0.1:{free_port()}"
    service = TokenService(
        database=app.extensions["database"],
        client=SpotifyClient(accounts_url=dead, api_url=dead, client_id="x", client_secret="y"),
        cipher=app.extensions["token_cipher"],
    )
    with pytest.raises(NetworkError):
        service.fresh_access_token(user_id)
    assert stored(db_conn, user_id) == before
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (user_id,)).fetchone()[0] == "active"


def test_a_user_without_tokens_needs_to_sign_in(tokens, db_conn):
    user_id = db_conn.execute(
        "INSERT INTO users (spotify_id, display_name) VALUES ('pre-made', 'Pre Made') RETURNING id").fetchone()[0]
    with pytest.raises(ReauthRequired, match="no Spotify tokens"):
        tokens.fresh_access_token(user_id)


def test_tokens_sealed_with_a_lost_key_mean_reauthorisation(app, user_id, db_conn, simulator):
    from cryptography.fernet import Fernet

    from app.crypto import TokenCipher

    other_key = TokenService(database=app.extensions["database"], client=app.extensions["spotify"],
                             cipher=TokenCipher((Fernet.generate_key().decode(),)))
    with pytest.raises(ReauthRequired, match="TOKEN_ENCRYPTION_KEY"):
        other_key.fresh_access_token(user_id)
    assert db_conn.execute("SELECT status FROM users WHERE id = %s", (user_id,)).fetchone()[0] == "reauth_required"
