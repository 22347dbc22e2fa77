"""A recently-played page, from Spotify's JSON to what the archive stores.

Every field is treated as possibly absent, null or of the wrong type (docs/spotify.md). An
item we cannot archive (a local file without a Spotify id, a podcast episode, a broken
item) is skipped and counted by reason; only a body that is not a recently-played page
at all is a failure (`BadData`).

`played_at` keeps its milliseconds: it is part of a play's identity, and a timestamp
rounded to seconds would not match the same play fetched again.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..spotify.errors import BadData
from ..time import ms_to_datetime, played_at_ms

PAGE_LIMIT = 50
_SPOTIFY_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_INT32 = 2**31 - 1


@dataclass(frozen=True)
class PolledArtist:
    spotify_id: str
    name: str


@dataclass(frozen=True)
class PolledAlbum:
    spotify_id: str
    name: str
    album_type: str | None
    release_date: str | None
    release_date_precision: str | None
    total_tracks: int | None
    image_url: str | None


@dataclass(frozen=True)
class PolledTrack:
    spotify_id: str
    name: str
    duration_ms: int | None
    explicit: bool | None
    isrc: str | None
    album: PolledAlbum | None
    artists: tuple[PolledArtist, ...]


@dataclass(frozen=True)
class PolledPlay:
    played_at_ms: int
    track: PolledTrack

    @property
    def played_at(self) -> datetime:
        return ms_to_datetime(self.played_at_ms)


@dataclass
class Page:
    plays: list[PolledPlay]  # newest first
    item_count: int  # items Spotify returned, archivable or not
    oldest_ms: int | None  # oldest played_at among all items with a readable one
    skipped: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class Gap:
    starts_ms: int  # the newest play archived before this poll
    ends_ms: int  # the oldest play this poll could still see


def parse_page(body: Any) -> Page:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise BadData("recently-played answered without an items list")
    items = body["items"]
    plays: list[PolledPlay] = []
    skipped: Counter = Counter()
    oldest: int | None = None
    for item in items:
        played_ms = played_at_ms(item.get("played_at")) if isinstance(item, dict) else None
        if played_ms is None:
            skipped["malformed item"] += 1
            continue
        oldest = played_ms if oldest is None else min(oldest, played_ms)
        track = item.get("track")
        reason = _unarchivable(track)
        if reason:
            skipped[reason] += 1
            continue
        plays.append(PolledPlay(played_ms, parse_track(track)))
    if items and not plays and skipped["malformed item"] == len(items):
        raise BadData(f"none of the {len(items)} recently-played items could be read")
    plays.sort(key=lambda p: p.played_at_ms, reverse=True)
    return Page(plays=plays, item_count=len(items), oldest_ms=oldest, skipped=skipped)


def find_gap(item_count: int, oldest_ms: int | None, cursor_ms: int | None) -> Gap | None:
    """A full page whose oldest play is newer than what we had means plays between the
    two may have scrolled out of Spotify's window: record the interval."""
    if cursor_ms is None or oldest_ms is None or item_count < PAGE_LIMIT:
        return None
    return Gap(cursor_ms, oldest_ms) if oldest_ms > cursor_ms else None


def _unarchivable(track: Any) -> str | None:
    if not isinstance(track, dict):
        return "no track"
    if track.get("type") == "episode":
        return "podcast episode"
    if track.get("is_local") or track.get("id") is None:
        return "local file"
    if not isinstance(track.get("id"), str) or not _SPOTIFY_ID.match(track["id"]):
        return "malformed item"
    return None


# Fields of the Web API's JSON: only a real JSON string or integer is taken (the import's
# readers in imports/formats.py have their own rules, for the export files' quirks).
def _nonblank(value: Any, default: str | None = None) -> str | None:
    return value if isinstance(value, str) and value.strip() else default


def _int32(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT32 else None


def _image(images: Any) -> str | None:
    if not isinstance(images, list):
        return None
    usable = [i for i in images if isinstance(i, dict) and _nonblank(i.get("url"))]
    if not usable:
        return None
    return max(usable, key=lambda i: _int32(i.get("width")) or 0)["url"]


def _artists(value: Any) -> tuple[PolledArtist, ...]:
    if not isinstance(value, list):
        return ()
    artists = []
    for artist in value:
        if isinstance(artist, dict) and isinstance(artist.get("id"), str) and _SPOTIFY_ID.match(artist["id"]):
            artists.append(PolledArtist(artist["id"], _nonblank(artist.get("name"), "Unknown artist")))
    return tuple(artists)


def _album(value: Any) -> PolledAlbum | None:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not _SPOTIFY_ID.match(value["id"]):
        return None
    return PolledAlbum(
        spotify_id=value["id"],
        name=_nonblank(value.get("name"), "Unknown album"),
        album_type=_nonblank(value.get("album_type")),
        release_date=_nonblank(value.get("release_date")),
        release_date_precision=_nonblank(value.get("release_date_precision")),
        total_tracks=_int32(value.get("total_tracks")),
        image_url=_image(value.get("images")),
    )


def parse_track(track: dict) -> PolledTrack:
    """A full track object (recently-played items, /v1/tracks) as the catalogue stores it."""
    external_ids = track.get("external_ids")
    isrc = _nonblank(external_ids.get("isrc")) if isinstance(external_ids, dict) else None
    explicit = track.get("explicit")
    return PolledTrack(
        spotify_id=track["id"],
        name=_nonblank(track.get("name"), "Unknown track"),
        duration_ms=_int32(track.get("duration_ms")),
        explicit=explicit if isinstance(explicit, bool) else None,
        isrc=isrc,
        album=_album(track.get("album")),
        artists=_artists(track.get("artists")),
    )
