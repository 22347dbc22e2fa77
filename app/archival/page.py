"""A recently-played page, from Spotify's JSON to what the archive stores.

Every field is treated as possibly absent, null or of the wrong type (SPOTIFY.md). An
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
from datetime import datetime, timezone
from typing import Any

from ..spotify.errors import BadData

PAGE_LIMIT = 50
_SPOTIFY_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_PLAYED_AT = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)$"
)
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
        played_ms = parse_played_at(item.get("played_at")) if isinstance(item, dict) else None
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


def parse_played_at(value: Any) -> int | None:
    """'2025-10-22T23:00:36.512Z' (or without the fraction, or with an offset) -> Unix ms."""
    if not isinstance(value, str):
        return None
    match = _PLAYED_AT.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)
    except ValueError:
        return None
    ms = int(moment.timestamp()) * 1000 + int((fraction or "0")[:3].ljust(3, "0"))
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        ms -= sign * (int(digits[:2]) * 60 + int(digits[2:])) * 60_000
    return ms


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).replace(microsecond=(ms % 1000) * 1000)


def datetime_to_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


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


def _text(value: Any, default: str | None = None) -> str | None:
    return value if isinstance(value, str) and value.strip() else default


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT32 else None


def _image(images: Any) -> str | None:
    if not isinstance(images, list):
        return None
    usable = [i for i in images if isinstance(i, dict) and _text(i.get("url"))]
    if not usable:
        return None
    return max(usable, key=lambda i: _int(i.get("width")) or 0)["url"]


def _artists(value: Any) -> tuple[PolledArtist, ...]:
    if not isinstance(value, list):
        return ()
    artists = []
    for artist in value:
        if isinstance(artist, dict) and isinstance(artist.get("id"), str) and _SPOTIFY_ID.match(artist["id"]):
            artists.append(PolledArtist(artist["id"], _text(artist.get("name"), "Unknown artist")))
    return tuple(artists)


def _album(value: Any) -> PolledAlbum | None:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not _SPOTIFY_ID.match(value["id"]):
        return None
    return PolledAlbum(
        spotify_id=value["id"],
        name=_text(value.get("name"), "Unknown album"),
        album_type=_text(value.get("album_type")),
        release_date=_text(value.get("release_date")),
        release_date_precision=_text(value.get("release_date_precision")),
        total_tracks=_int(value.get("total_tracks")),
        image_url=_image(value.get("images")),
    )


def parse_track(track: dict) -> PolledTrack:
    """A full track object (recently-played items, /v1/tracks) as the catalogue stores it."""
    external_ids = track.get("external_ids")
    isrc = _text(external_ids.get("isrc")) if isinstance(external_ids, dict) else None
    explicit = track.get("explicit")
    return PolledTrack(
        spotify_id=track["id"],
        name=_text(track.get("name"), "Unknown track"),
        duration_ms=_int(track.get("duration_ms")),
        explicit=explicit if isinstance(explicit, bool) else None,
        isrc=isrc,
        album=_album(track.get("album")),
        artists=_artists(track.get("artists")),
    )
