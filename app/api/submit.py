"""Reading a submit-listens request as ListenBrainz does: the same limits, the same checks
and the same error messages, so scrobblers written for ListenBrainz behave the same here.
A request is checked whole before anything is written: one bad listen refuses them all.

What a listen says is reduced to what the archive keeps (names, a Spotify id or ISRC to
find the track by, its length, the client that sent it); nothing else of it is stored.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from .. import scrobbles

SINGLE, IMPORT, PLAYING_NOW = "single", "import", "playing_now"
MAX_LISTEN_SIZE = 10240  # bytes per listen, on average over a request (ListenBrainz's)
MAX_LISTENS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = MAX_LISTEN_SIZE * MAX_LISTENS_PER_REQUEST
LISTEN_MINIMUM_TS = 1033430400  # 2002-10-01: ListenBrainz refuses anything older
ALLOWED_SKEW_S = 3600  # a listen may be stamped up to an hour ahead of the server's clock
MAX_TAGS, MAX_TAG_LENGTH = 50, 64
MAX_CLIENT_NAME = 100
PLAYING_NOW_DEFAULT_S = 600  # how long "playing now" lasts when the player gives no length

_MBID_KEYS = ("release_mbid", "recording_mbid", "release_group_mbid", "track_mbid")
_MBIDS_KEYS = ("artist_mbids", "work_mbids")


class SubmitError(ValueError):
    """A request ListenBrainz would refuse with 400; the message is ListenBrainz's."""


@dataclass(frozen=True)
class Listen:
    listened_at: int | None  # Unix seconds (None for playing_now)
    track_name: str
    artist_name: str
    release_name: str | None
    spotify_id: str | None
    isrc: str | None
    duration_ms: int | None
    client: str | None


@dataclass(frozen=True)
class Submission:
    listen_type: str
    listens: list[Listen]


def parse(raw: bytes, *, now_s: int) -> Submission:
    """The request body, checked; SubmitError says what is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"), parse_int=_parse_int)
    except UnicodeDecodeError as exc:
        raise SubmitError(f"Cannot parse JSON document: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # json.JSONDecodeError, and numbers too long to read
        raise SubmitError(f"Cannot parse JSON document: {exc}") from None
    except RecursionError:
        raise SubmitError("Cannot parse JSON document: it is nested too deeply") from None
    if not isinstance(data, dict) or "payload" not in data or "listen_type" not in data:
        raise SubmitError("Invalid JSON document submitted.")
    payload = data["payload"]
    if not isinstance(payload, list):
        raise SubmitError("Invalid JSON document submitted.")
    if not payload:
        raise SubmitError("JSON document does not contain any listens")
    if len(raw) > len(payload) * MAX_LISTEN_SIZE:
        raise SubmitError("JSON document is too large. In aggregate, listens may not be larger than "
                          f"{MAX_LISTEN_SIZE} characters.")
    listen_type = data["listen_type"]
    if listen_type not in (SINGLE, IMPORT, PLAYING_NOW):
        raise SubmitError("JSON document requires a valid listen_type key.")
    if listen_type in (SINGLE, PLAYING_NOW) and len(payload) > 1:
        raise SubmitError("JSON document contains more than listen for a single/playing_now. "
                          "It should contain only one.")
    if len(payload) > MAX_LISTENS_PER_REQUEST:
        raise SubmitError(f"Too many listens. You may not submit more than {MAX_LISTENS_PER_REQUEST} listens at once.")
    return Submission(listen_type, [_listen(item, listen_type, now_s) for item in payload])


def _parse_int(digits: str) -> int | float:
    """No field needs more than a few digits: longer numbers are read as infinite (refused
    where they matter) instead of costing a quadratic conversion or Python's own error."""
    return int(digits) if len(digits) <= 40 else (-math.inf if digits.startswith("-") else math.inf)


def _listen(item: Any, listen_type: str, now_s: int) -> Listen:
    if not isinstance(item, dict):
        raise SubmitError("Listen is empty and cannot be validated.")
    if listen_type == PLAYING_NOW:
        if "listened_at" in item:
            raise SubmitError("JSON document must not contain listened_at while submitting playing_now.")
        if set(item) - {"track_metadata"}:
            raise SubmitError("JSON document may only contain track_metadata as top level key when submitting "
                              "playing_now.")
        listened_at = None
    else:
        if "listened_at" not in item:
            raise SubmitError("JSON document must contain the key listened_at at the top level.")
        if set(item) - {"listened_at", "track_metadata"}:
            raise SubmitError("JSON document may only contain listened_at and track_metadata top level keys")
        listened_at = _timestamp(item["listened_at"])
        if listened_at < LISTEN_MINIMUM_TS:
            raise SubmitError(f"Value for key listened_at is too low. listened_at timestamp should be greater than "
                              f"{LISTEN_MINIMUM_TS} (2002-10-01 00:00:00 UTC).")
        if listened_at > now_s + ALLOWED_SKEW_S:
            raise SubmitError("Value for key listened_at is too high.")
    metadata = item.get("track_metadata")
    if not isinstance(metadata, dict):
        raise SubmitError("JSON document does not contain a valid metadata.track_name and/or "
                          "track_metadata.artist_name.")
    track, artist = metadata.get("track_name"), metadata.get("artist_name")
    if not isinstance(track, str) or not track.strip():
        raise SubmitError("JSON document does not contain required track_metadata.track_name.")
    if not isinstance(artist, str):
        raise SubmitError("artist_name must be a single string.")
    if not artist.strip():
        raise SubmitError("JSON document does not contain required track_metadata.artist_name.")
    release = metadata.get("release_name")
    if release is not None and not isinstance(release, str):
        raise SubmitError("release_name must be a single string.")
    info = metadata.get("additional_info") or {}
    if not isinstance(info, dict):
        raise SubmitError("additional_info must be a JSON object.")
    _check_additional_info(info)
    for text in (track, artist, release or ""):
        _check_text(text)
    client = scrobbles.client(info, MAX_CLIENT_NAME)
    if client is not None:
        _check_text(client)
    duration = scrobbles.duration_ms(info)
    if duration is False:
        raise SubmitError(f"Value for {'duration_ms' if 'duration_ms' in info else 'duration'} is invalid, "
                          "should be a positive integer.")
    return Listen(listened_at=listened_at, track_name=track.strip(), artist_name=artist.strip(),
                  release_name=(release.strip() or None) if release else None,
                  spotify_id=scrobbles.spotify_id(info), isrc=scrobbles.isrc(info.get("isrc")), duration_ms=duration,
                  client=client)


def _timestamp(value: Any) -> int:
    """listened_at as ListenBrainz reads it (int(), so "1700000000" and 1.7e9 pass)."""
    if isinstance(value, bool):
        raise SubmitError("JSON document must contain an int value for listened_at.")
    if isinstance(value, float) and not math.isfinite(value):
        raise SubmitError("JSON document must contain an int value for listened_at.")
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        raise SubmitError("JSON document must contain an int value for listened_at.") from None
    return max(min(number, 2**62), -(2**62))  # huge values then fail the range checks, with their message


def _check_additional_info(info: dict) -> None:
    tags = info.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise SubmitError("track_metadata.additional_info.tags must be a list of strings.")
        if len(tags) > MAX_TAGS:
            raise SubmitError(f"JSON document may not contain more than {MAX_TAGS} items in "
                              "track_metadata.additional_info.tags.")
        if any(len(t) > MAX_TAG_LENGTH for t in tags):
            raise SubmitError(f"JSON document may not contain track_metadata.additional_info.tags longer than "
                              f"{MAX_TAG_LENGTH} characters.")
    for key in _MBID_KEYS:
        if info.get(key) and not _is_uuid(info[key]):
            raise SubmitError(f"{key} MBID format invalid.")
    for key in _MBIDS_KEYS:
        values = info.get(key) or []
        if not isinstance(values, list) or not all(_is_uuid(v) for v in values):
            raise SubmitError(f"{key} MBID format invalid.")
    if "duration" in info and "duration_ms" in info:
        raise SubmitError("JSON document should not contain both duration and duration_ms.")


def _check_text(text: str) -> None:
    """What Postgres cannot store (NUL) or UTF-8 cannot encode (a lone surrogate, which a
    JSON escape like \\ud800 produces) is refused, not stored mangled."""
    if len(text) > MAX_LISTEN_SIZE:
        raise SubmitError(f"track_metadata values may not be longer than {MAX_LISTEN_SIZE} characters.")
    if "\x00" in text:
        raise SubmitError("JSON document may not contain NUL characters in its text.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SubmitError("JSON document contains text that is not valid Unicode (a lone surrogate).") from None


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


def playing_now_seconds(listen: Listen) -> int:
    return max(1, listen.duration_ms // 1000) if listen.duration_ms else PLAYING_NOW_DEFAULT_S
