"""Where images may come from: pages (the Content Security Policy, app/security.py) and
PDF reports (their fetcher, app/reports) allow the same hosts."""

from __future__ import annotations

from urllib.parse import urlsplit

from .config import Settings

# Spotify serves cover art and artist images from these hosts.
SPOTIFY_IMAGE_HOSTS = ("i.scdn.co", "*.scdn.co", "*.spotifycdn.com")


def image_origins(settings: Settings) -> list[str]:
    """Where pages (the CSP) and PDF reports (their fetcher) may load images from."""
    origins = [f"https://{host}" for host in SPOTIFY_IMAGE_HOSTS]
    if settings.demo_mode:
        api = urlsplit(settings.spotify_api_url)
        origins.append(f"{api.scheme}://{api.netloc}")  # the simulator's generated covers
    return origins


def image_allowed(url: str, settings: Settings) -> bool:
    """Whether `url` is on one of image_origins (as a CSP source would match it)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        return False
    for origin in image_origins(settings):
        allowed = urlsplit(origin)
        if parts.scheme != allowed.scheme or (allowed.port and port != allowed.port) or \
                (not allowed.port and port not in (None, 443 if allowed.scheme == "https" else 80)):
            continue
        pattern = allowed.hostname or ""
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False
