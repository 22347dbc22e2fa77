"""The HTTP client for Spotify's accounts service and Web API (or the simulator).

Base URLs are inputs, so the same client talks to Spotify, to the simulator over real
HTTP, or to `responses` in unit tests. Every failure surfaces as a classified
`SpotifyError` (errors.py); callers never see a raw `requests` exception.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from ..time import utcnow
from .errors import (
    AuthError,
    BadData,
    Forbidden,
    InvalidGrant,
    NetworkError,
    NotAllowListed,
    RateLimited,
    ServerError,
    SpotifyError,
)

log = logging.getLogger(__name__)

# What Spotify's 403 says for accounts missing from a development-mode app's allow-list.
NOT_ALLOW_LISTED_MARKER = "not registered"
DEFAULT_RETRY_AFTER_S = 30.0
TIMEOUT_S = (5, 20)  # connect, read


@dataclass(frozen=True)
class TokenGrant:
    access_token: str
    expires_in: int
    refresh_token: str | None  # absent when Spotify does not rotate it
    scope: str | None


class SpotifyClient:
    def __init__(
        self,
        *,
        accounts_url: str,
        api_url: str,
        client_id: str,
        client_secret: str,
        http: requests.Session | None = None,
        timeout: tuple[float, float] = TIMEOUT_S,
    ):
        self.accounts_url = accounts_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.http = http or requests.Session()
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings, http: requests.Session | None = None) -> SpotifyClient:
        return cls(
            accounts_url=settings.spotify_accounts_url,
            api_url=settings.spotify_api_url,
            client_id=settings.spotify_client_id,
            client_secret=settings.spotify_client_secret,
            http=http,
        )

    # --- accounts service ----------------------------------------------------------------

    def refresh(self, refresh_token: str) -> TokenGrant:
        """Exchange a refresh token. `InvalidGrant` when it is expired or revoked."""
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def app_token(self) -> TokenGrant:
        """An app access token (client-credentials grant): enough for the catalogue
        endpoints, so enrichment never spends a user's token."""
        return self._token_request({"grant_type": "client_credentials"})

    def _token_request(self, form: dict[str, str]) -> TokenGrant:
        basic = base64.b64encode(f"{self.client_id}:{self._client_secret}".encode()).decode()
        response = self._send("POST", f"{self.accounts_url}/api/token", data=form,
                              headers={"Authorization": f"Basic {basic}"})
        if response.status_code == 400:
            body = _json_or_none(response) or {}
            if body.get("error") == "invalid_grant":
                raise InvalidGrant(f"refresh token rejected: {body.get('error_description') or 'invalid_grant'}", status=400)
        self._raise_for_status(response)
        body = self._json_object(response)
        access_token = body.get("access_token")
        expires_in = body.get("expires_in")
        if not isinstance(access_token, str) or not access_token or not isinstance(expires_in, int):
            raise BadData("token response lacks access_token or expires_in", status=response.status_code)
        new_refresh = body.get("refresh_token")
        return TokenGrant(
            access_token=access_token,
            expires_in=expires_in,
            refresh_token=new_refresh if isinstance(new_refresh, str) and new_refresh else None,
            scope=body.get("scope") if isinstance(body.get("scope"), str) else None,
        )

    # --- Web API -------------------------------------------------------------------------

    def me(self, access_token: str) -> dict[str, Any]:
        body = self._get(access_token, "/v1/me")
        if not isinstance(body.get("id"), str):
            raise BadData("/v1/me answered without an id")
        return body

    def recently_played(
        self,
        access_token: str,
        *,
        after_ms: int | None = None,
        before_ms: int | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        """One page of recently-played; items newest first. Spotify takes `after` or `before`, never both."""
        if after_ms is not None and before_ms is not None:
            raise ValueError("Spotify accepts either after or before, not both")
        params: dict[str, Any] = {"limit": limit}
        if after_ms is not None:
            params["after"] = after_ms
        if before_ms is not None:
            params["before"] = before_ms
        body = self._get(access_token, "/v1/me/player/recently-played", params=params)
        if not isinstance(body.get("items"), list):
            raise BadData("recently-played answered without an items list")
        return body

    def catalogue_item(self, access_token: str, kind: str, spotify_id: str) -> dict[str, Any]:
        """Single item: kind is 'tracks', 'albums' or 'artists'."""
        return self._get(access_token, f"/v1/{kind}/{spotify_id}")

    def catalogue_batch(self, access_token: str, kind: str, spotify_ids: list[str]) -> list[dict | None]:
        """Batch lookup; raises `Forbidden` for development-mode apps, which lack it."""
        body = self._get(access_token, f"/v1/{kind}", params={"ids": ",".join(spotify_ids)})
        items = body.get(kind)
        if not isinstance(items, list):
            raise BadData(f"/v1/{kind} answered without a {kind} list")
        return items

    # --- plumbing ------------------------------------------------------------------------

    def _get(self, access_token: str, path: str, params: dict | None = None) -> dict[str, Any]:
        response = self._send(
            "GET", f"{self.api_url}{path}", params=params, headers={"Authorization": f"Bearer {access_token}"}
        )
        self._raise_for_status(response)
        return self._json_object(response)

    def _send(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            return self.http.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise NetworkError(f"timed out talking to Spotify ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise NetworkError(f"could not reach Spotify ({type(exc).__name__})") from None

    def _raise_for_status(self, response: requests.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = _error_message(response)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            reason = _rate_limit_reason(_json_or_none(response))
            # Spotify's 429 body says whether this is the rolling window or the app's quota.
            log.warning("Spotify rate limit: retry after %.0f s, reason %s, body %s", retry_after, reason, message)
            raise RateLimited(f"rate limited for {retry_after:.0f} s", retry_after=retry_after, reason=reason)
        if status == 401:
            raise AuthError(f"access token rejected: {message}", status=status)
        if status == 403:
            if NOT_ALLOW_LISTED_MARKER in message.lower():
                raise NotAllowListed(message, status=status)
            raise Forbidden(message, status=status)
        if status >= 500:
            raise ServerError(f"Spotify answered {status}", status=status)
        raise SpotifyError(f"Spotify answered {status}: {message}", status=status)

    @staticmethod
    def _json_object(response: requests.Response) -> dict[str, Any]:
        body = _json_or_none(response)
        if not isinstance(body, dict):
            raise BadData(f"expected a JSON object, got {response.headers.get('Content-Type', 'no content type')}",
                          status=response.status_code)
        return body


def parse_retry_after(value: str | None) -> float:
    """Seconds to wait: Retry-After is delta-seconds (Spotify) or, per HTTP, a date."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - utcnow()).total_seconds())


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _rate_limit_reason(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    reason = body.get("reason") or (error.get("reason") if isinstance(error, dict) else None)
    return reason if isinstance(reason, str) else None


def _error_message(response: requests.Response) -> str:
    """Spotify errors look like {"error": {"status": 403, "message": "..."}} (API) or
    {"error": "invalid_grant", "error_description": "..."} (accounts)."""
    body = _json_or_none(response)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return f"{error}: {body.get('error_description', '')}".strip(": ")
    return (response.text or "")[:200]
