"""Every way a Spotify call can fail, classified.

The class of a failure decides what happens next (app/archival/failures.py): an auth
failure may need the user to re-authorise, a rate limit is the whole app's problem and
pauses every worker, network and 5xx failures are transient, bad data is Spotify's bug
or ours.
`kind` is what gets recorded against a user and what the circuit breaker keys on.
"""

from __future__ import annotations


class FailureKind:
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    NETWORK = "network"
    SERVER = "spotify_5xx"
    BAD_DATA = "bad_data"
    UNKNOWN = "unknown"


class SpotifyError(Exception):
    kind = FailureKind.UNKNOWN

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class AuthError(SpotifyError):
    """401 from the API: the access token was rejected."""

    kind = FailureKind.AUTH


class InvalidGrant(AuthError):
    """The refresh token is expired or revoked: only the user can fix this, by signing in."""


class NotAllowListed(AuthError):
    """403 for an account missing from a development-mode app's allow-list."""


class Forbidden(SpotifyError):
    """Any other 403, e.g. batch catalogue endpoints for a development-mode app."""


class RateLimited(SpotifyError):
    kind = FailureKind.RATE_LIMIT

    def __init__(self, message: str, *, retry_after: float, reason: str | None = None):
        super().__init__(message, status=429)
        self.retry_after = retry_after
        self.reason = reason  # e.g. QUOTA_EXCEEDED, for the log


class NetworkError(SpotifyError):
    kind = FailureKind.NETWORK


class ServerError(SpotifyError):
    kind = FailureKind.SERVER


class BadData(SpotifyError):
    """A response that is not the JSON shape Spotify documents."""

    kind = FailureKind.BAD_DATA
