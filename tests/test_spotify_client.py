"""The HTTP client against canned responses (`responses`): every failure is classified."""

from __future__ import annotations

import pytest
import requests
import responses

from app.spotify.client import SpotifyClient, parse_retry_after
from app.spotify.errors import (
    AuthError,
    BadData,
    FailureKind,
    Forbidden,
    InvalidGrant,
    NetworkError,
    NotAllowListed,
    RateLimited,
    ServerError,
)

ACCOUNTS = "https://accounts.example"
API = "https://api.example"


@pytest.fixture
def client():
    return SpotifyClient(accounts_url=ACCOUNTS, api_url=API, client_id="cid", client_secret="csecret")


@responses.activate
def test_refresh_sends_basic_auth_and_parses_a_rotated_token(client):
    responses.post(f"{ACCOUNTS}/api/token", json={
        "access_token": "new-access", "expires_in": 3600, "refresh_token": "new-refresh", "scope": "s",
    })
    grant = client.refresh("old-refresh")
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Basic Y2lkOmNzZWNyZXQ="  # cid:csecret
    assert "grant_type=refresh_token" in request.body and "refresh_token=old-refresh" in request.body
    assert (grant.access_token, grant.expires_in, grant.refresh_token) == ("new-access", 3600, "new-refresh")


@responses.activate
def test_refresh_without_new_refresh_token(client):
    responses.post(f"{ACCOUNTS}/api/token", json={"access_token": "a", "expires_in": 3600})
    assert client.refresh("r").refresh_token is None


@responses.activate
def test_invalid_grant_is_an_auth_failure(client):
    responses.post(f"{ACCOUNTS}/api/token", status=400,
                   json={"error": "invalid_grant", "error_description": "Refresh token revoked"})
    with pytest.raises(InvalidGrant) as err:
        client.refresh("r")
    assert err.value.kind == FailureKind.AUTH
    assert "Refresh token revoked" in str(err.value)


@responses.activate
def test_token_response_without_access_token_is_bad_data(client):
    responses.post(f"{ACCOUNTS}/api/token", json={"token_type": "Bearer"})
    with pytest.raises(BadData):
        client.refresh("r")


@pytest.mark.parametrize(
    "status, body, headers, error, kind",
    [
        (401, {"error": {"status": 401, "message": "The access token expired"}}, {}, AuthError, FailureKind.AUTH),
        (403, {"error": {"status": 403, "message": "User not registered in the Developer Dashboard"}}, {},
         NotAllowListed, FailureKind.AUTH),
        (403, {"error": {"status": 403, "message": "Forbidden"}}, {}, Forbidden, FailureKind.UNKNOWN),
        (429, {"error": {"status": 429, "message": "API rate limit exceeded"}}, {"Retry-After": "86000"},
         RateLimited, FailureKind.RATE_LIMIT),
        (500, None, {}, ServerError, FailureKind.SERVER),
        (503, None, {}, ServerError, FailureKind.SERVER),
    ],
)
@responses.activate
def test_api_failures_are_classified(client, status, body, headers, error, kind):
    responses.get(f"{API}/v1/me", status=status, json=body, headers=headers)
    with pytest.raises(error) as err:
        client.me("token")
    assert err.value.kind == kind
    if error is RateLimited:
        assert err.value.retry_after == 86000


@responses.activate
def test_network_failures_are_classified(client):
    responses.get(f"{API}/v1/me", body=requests.ConnectTimeout("slow"))
    with pytest.raises(NetworkError) as err:
        client.me("token")
    assert err.value.kind == FailureKind.NETWORK
    responses.replace(responses.GET, f"{API}/v1/me", body=requests.ConnectionError("refused"))
    with pytest.raises(NetworkError):
        client.me("token")


@responses.activate
def test_malformed_bodies_are_bad_data(client):
    responses.get(f"{API}/v1/me/player/recently-played", body='{"items": [', content_type="application/json")
    with pytest.raises(BadData) as err:
        client.recently_played("token")
    assert err.value.kind == FailureKind.BAD_DATA
    responses.replace(responses.GET, f"{API}/v1/me/player/recently-played", json={"items": "nope"})
    with pytest.raises(BadData):
        client.recently_played("token")


@responses.activate
def test_recently_played_sends_cursor_and_bearer(client):
    responses.get(f"{API}/v1/me/player/recently-played", json={"items": [], "cursors": None, "next": None})
    client.recently_played("tok", after_ms=1700000000123)
    request = responses.calls[0].request
    assert request.headers["Authorization"] == "Bearer tok"
    assert "after=1700000000123" in request.url and "limit=50" in request.url
    with pytest.raises(ValueError):
        client.recently_played("tok", after_ms=1, before_ms=2)


def test_retry_after_parsing():
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) == 30
    assert parse_retry_after("garbage") == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a date in the past
