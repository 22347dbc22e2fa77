"""What a scrobble (a ListenBrainz-style listen) says about its track, wherever it comes
from: the API (app/api/submit.py) or a ListenBrainz export (app/imports/services.py).

A listen's `additional_info` may carry a Spotify link or id, an ISRC and the track's
length; each is taken only in a form that cannot be mistaken (a 22-character Spotify id,
a well-formed ISRC, a length between a millisecond and a day).
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_DURATION_MS = 86_400_000

_SPOTIFY_TRACK = re.compile(r"(?:open\.spotify\.com/(?:intl-[a-z-]+/)?track/|spotify:track:)([A-Za-z0-9]{22})"
                            r"(?![A-Za-z0-9])")
_BARE_SPOTIFY_ID = re.compile(r"[A-Za-z0-9]{22}")
_ISRC = re.compile(r"[A-Z]{2}[A-Z0-9]{3}[0-9]{7}")


def spotify_id(info: dict) -> str | None:
    """The Spotify track id in `spotify_id` (ListenBrainz sends a URL), `origin_url` or
    `spotify_track_id`."""
    for key in ("spotify_id", "origin_url", "spotify_track_id"):
        value = info.get(key)
        if not isinstance(value, str):
            continue
        found = _SPOTIFY_TRACK.search(value)
        if found:
            return found.group(1)
        if key != "origin_url" and _BARE_SPOTIFY_ID.fullmatch(value.strip()):
            return value.strip()
    return None


def isrc(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    code = re.sub(r"[\s-]", "", value).upper()
    return code if _ISRC.fullmatch(code) else None


def duration_ms(info: dict) -> int | None | bool:
    """The track's length from `duration_ms` (or `duration`, in seconds): an int, None when
    absent or out of range, False when present but not a non-negative number."""
    if "duration_ms" in info:
        value, scale = info["duration_ms"], 1
    elif "duration" in info:
        value, scale = info["duration"], 1000
    else:
        return None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return False
    ms = int(value * scale)
    return ms if 0 < ms <= MAX_DURATION_MS else None


def client(info: dict, max_length: int = 100) -> str | None:
    """The player that sent it: `submission_client`, else `media_player` or the service."""
    for key in ("submission_client", "media_player", "music_service_name"):
        value = info.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:max_length]
    return None
