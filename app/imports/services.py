"""Listening histories from other services (docs/imports.md has each layout and a sample).

| kind | file | a row | time |
|---|---|---|---|
| Last.fm CSV | lastfm.ghan.nl's export (`uts,utc_time,artist,artist_mbid,album,album_mbid,track,track_mbid`), or lastfm-to-csv's four columns without a header (`artist,album,track,31 Jan 2021 12:34`) | a scrobble | start, UTC |
| Last.fm JSON | lastfm.ghan.nl's JSON export: the API's `recenttracks` pages (`[{"track": [...]}, …]`), or a flat list of their tracks | a scrobble | `date.uts`, start |
| ListenBrainz | its user export zip (`listens/<year>/<month>.jsonl`), or the older JSON list of listens | a listen | `listened_at`, start |
| Maloja | `maloja_export_*.json` (`{"scrobbles": [...]}`) | a scrobble | `time`, start |
| Apple Music | `Apple Music Play Activity.csv` from Apple's privacy export | a play event | `Event End Timestamp`, end |
| YouTube Music | Google Takeout's `watch-history.json` (only the entries YouTube Music played; titles in any language's wording, see title_wording) | a watch | `time`, start |

Scrobbles are stamped when a play STARTS (matching.py); their length is the track's, when
anyone knows it. A row becomes a Play (imports/formats.py) or a skip reason, as a Spotify
row does: the same per-row report, the same merge and the same "nothing counted twice".
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .. import scrobbles
from ..models import PlaySource
from .formats import MALFORMED, MIN_MS, NOT_FINISHED, NOT_MUSIC, SHORT, Play, _clean, _storable

LASTFM_CSV = "lastfm_csv"
LASTFM_JSON = "lastfm_json"
LISTENBRAINZ = "listenbrainz"
MALOJA = "maloja"
APPLE_MUSIC = "apple_music"
YOUTUBE_MUSIC = "youtube_music"
KINDS = (LASTFM_CSV, LASTFM_JSON, LISTENBRAINZ, MALOJA, APPLE_MUSIC, YOUTUBE_MUSIC)
NAMES = {LASTFM_CSV: "Last.fm (CSV)", LASTFM_JSON: "Last.fm (JSON)", LISTENBRAINZ: "ListenBrainz", MALOJA: "Maloja",
         APPLE_MUSIC: "Apple Music", YOUTUBE_MUSIC: "YouTube Music"}

# How a kind's file is laid out: JSON items at an ijson prefix, JSON lines, or CSV.
JSON, JSONL, CSV = "json", "jsonl", "csv"
LAYOUT = {LASTFM_CSV: (CSV, None), LASTFM_JSON: (JSON, "item"), LISTENBRAINZ: (JSON, "item"),
          MALOJA: (JSON, "scrobbles.item"), APPLE_MUSIC: (CSV, None), YOUTUBE_MUSIC: (JSON, "item")}

# By name, wherever the file sits in a zip. Others are recognised by their first row (sniff).
PATTERNS = [
    (re.compile(r"^\d{1,2}\.jsonl$", re.I), LISTENBRAINZ),  # listens/<year>/<month>.jsonl
    (re.compile(r"^maloja_export.*\.json$", re.I), MALOJA),
    (re.compile(r"^apple music play activity\.csv$", re.I), APPLE_MUSIC),
    (re.compile(r"^watch-history\.json$", re.I), YOUTUBE_MUSIC),
]

LASTFM_HEADER = ("uts", "utc_time", "artist", "artist_mbid", "album", "album_mbid", "track", "track_mbid")
_LASTFM_DATE = re.compile(r"^\s*(\d{1,2}) ([A-Za-z]{3}) (\d{4}),? (\d{1,2}):(\d{2})\s*$")
_MONTHS = {m: n for n, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov",
                                       "dec"), start=1)}
_SCROBBLED = PlaySource.lastfm
EARLIEST_S = 946_684_800  # 2000-01-01: no service's history starts before it
LATEST_S = 4_102_444_800  # 2100-01-01


def classify(name: str) -> str | None:
    base = re.split(r"[\\/]", name)[-1]
    if base.lower().endswith(".jsonl") and not re.search(r"(^|[\\/])listens[\\/]", name, re.I):
        return None  # ListenBrainz's feedback.jsonl, pinned_recording.jsonl: not listens
    for pattern, kind in PATTERNS:
        if pattern.match(base):
            return kind
    return None


def sniff_json(first: Any) -> str | None:
    """The kind of a JSON file from its first item (or, for an object, its keys)."""
    if isinstance(first, dict):
        if isinstance(first.get("track"), list):
            return LASTFM_JSON  # a recenttracks page
        if "listened_at" in first and isinstance(first.get("track_metadata"), dict):
            return LISTENBRAINZ
        if isinstance(first.get("artist"), dict) and "name" in first and isinstance(first.get("date"), dict):
            return LASTFM_JSON  # a flat list of the API's tracks
        if first.get("header") in ("YouTube Music", "YouTube") and "time" in first and "title" in first:
            return YOUTUBE_MUSIC
    return None


def sniff_csv(header: list[str]) -> str | None:
    """The kind of a CSV file from its first row."""
    cells = [c.strip().lower() for c in header]
    if {"uts", "artist", "track"} <= set(cells):
        return LASTFM_CSV
    if {"song name", "event end timestamp", "play duration milliseconds"} <= {c for c in cells}:
        return APPLE_MUSIC
    if len(cells) == 4 and _LASTFM_DATE.match(header[3] or ""):
        return LASTFM_CSV  # lastfm-to-csv: no header at all
    return None


def lastfm_prefix(first: Any) -> str:
    """Where a Last.fm JSON file's tracks are: in its pages (`[{"track": [...]}]`) or at the top."""
    return "item.track.item" if isinstance(first, dict) and isinstance(first.get("track"), list) else "item"


class CsvRows:
    """Turns a CSV file's rows (lists of cells) into dicts by its header; a headerless
    lastfm-to-csv file gets that tool's four names."""

    def __init__(self, kind: str):
        self.kind = kind
        self.columns: list[str] | None = None

    def __call__(self, cells: list[str]) -> dict | None:
        if self.columns is None:
            lowered = [c.strip().lower() for c in cells]
            if self.kind == LASTFM_CSV and not {"uts", "track"} <= set(lowered):
                self.columns = ["artist", "album", "track", "date"]
            else:
                self.columns = lowered
                return None  # the header itself
        return dict(zip(self.columns, cells))


def read_lastfm_csv(row: Any, rule: str) -> Play | str:
    if not isinstance(row, dict):
        return MALFORMED
    start_s = _whole(row.get("uts")) if row.get("uts") not in (None, "") else _lastfm_date(row.get("date"))
    return _scrobble(start_s, row.get("track"), row.get("artist"), row.get("album"), None, _SCROBBLED)


def read_lastfm_json(row: Any, rule: str) -> Play | str:
    """A track of the API's recenttracks: `{"artist": {"#text": …}, "name": …, "album":
    {"#text": …}, "date": {"uts": "…"}}` (the one playing now has no date: not a play)."""
    if not isinstance(row, dict):
        return MALFORMED
    date = row.get("date")
    start_s = _whole(date.get("uts")) if isinstance(date, dict) else None
    return _scrobble(start_s, row.get("name"), _text(row.get("artist")), _text(row.get("album")), None, _SCROBBLED)


def read_listenbrainz(row: Any, rule: str) -> Play | str:
    if not isinstance(row, dict) or not isinstance(row.get("track_metadata"), dict):
        return MALFORMED
    metadata = row["track_metadata"]
    info = metadata.get("additional_info") if isinstance(metadata.get("additional_info"), dict) else {}
    length = scrobbles.duration_ms(_plain(info))
    play = _scrobble(_whole(row.get("listened_at")), metadata.get("track_name"), metadata.get("artist_name"),
                     metadata.get("release_name"), length or None, PlaySource.listenbrainz)
    if isinstance(play, str):
        return play
    return play._replace(spotify_id=scrobbles.spotify_id(info), isrc=scrobbles.isrc(info.get("isrc")))


def read_maloja(row: Any, rule: str) -> Play | str:
    """`{"time": …, "track": {"artists": [...], "title": …, "album": {"albumtitle": …},
    "length": s}, "duration": s}`."""
    if not isinstance(row, dict) or not isinstance(row.get("track"), dict):
        return MALFORMED
    track = row["track"]
    artists = track.get("artists")
    artist = ", ".join(a for a in artists if isinstance(a, str)) if isinstance(artists, list) else None
    album = track.get("album")
    album_name = album.get("albumtitle") if isinstance(album, dict) else None
    length = _whole(track.get("length"))
    return _scrobble(_whole(row.get("time")), track.get("title"), artist, album_name,
                     length * 1000 if length and length < 86_400 else None, PlaySource.maloja)


def read_apple_music(row: Any, rule: str) -> Play | str:
    """A row of Apple's play activity: music plays (`Media Type` AUDIO) with a song, an end
    and a play duration; the end stamps it, the duration is what was heard. Recent files
    name no artist: such plays are matched by track and album name (imports/merge.py)."""
    if not isinstance(row, dict):
        return MALFORMED
    media = (row.get("media type") or "").strip().upper()
    if media and media != "AUDIO":
        return NOT_MUSIC
    song, end = row.get("song name") or row.get("content name"), _iso_ms(row.get("event end timestamp"))
    played = _whole(row.get("play duration milliseconds"))
    if not song or not song.strip():
        return MALFORMED if end is None else NOT_MUSIC  # lyrics views and other events name no song
    if end is None or played is None or played >= 2**31 or not _storable(song):
        return MALFORMED
    if rule == "finished":
        if (row.get("end reason type") or "").strip().upper() != "NATURAL_END_OF_TRACK":
            return NOT_FINISHED
    elif played < MIN_MS:
        return SHORT
    artist = row.get("artist name") or row.get("container artist name") or ""
    album = row.get("album name") or row.get("container album name")
    if not _storable(artist) or (album and not _storable(album)):
        return MALFORMED
    return Play(end, int(PlaySource.apple_music), None, _clean(song), _clean(artist) or "", _clean(album), played)


# How Takeout words a watch, in English: "Watched <title>". Other languages word it their
# own way; title_wording() learns it from the file.
ENGLISH_WORDING = ("Watched ", "")
WORDING_SAMPLE = 5000  # entries read to learn it (videos and all) …
WORDING_MAX_TITLES = 500  # … or until this many different titles
WORDING_MIN_TITLES = 20  # different titles it takes: fewer, and a shared first word of theirs could pass for it
MUSIC_LINK, VIDEO_LINK = "https://music.youtube.com/", "https://www.youtube.com/"


def _youtube_music(row: dict) -> bool:
    """Music is what YouTube Music played: its header says so (many Takeouts link those
    songs on www.youtube.com), or the link is on music.youtube.com."""
    url = row.get("titleUrl")
    return row.get("header") == "YouTube Music" or (isinstance(url, str) and url.startswith(MUSIC_LINK))


def title_wording(entries) -> tuple[str, str]:
    """(the words before, the words after) that a Takeout's titles wrap each song's name in,
    in the account's language: what every one of the music entries' different titles
    starts and ends with, in whole words. English's when they all start with its words, or
    when fewer than WORDING_MIN_TITLES different titles say too little (a few songs may
    share their first word). In another language, titles that all share their first word
    (chapters of one book, say) lose it too."""
    titles: set[str] = set()
    for row in entries:
        title = row.get("title") if isinstance(row, dict) else None
        if isinstance(title, str) and len(title) <= 1000 and _youtube_music(row):  # memory stays small
            titles.add(title)
            if len(titles) == WORDING_MAX_TITLES:
                break
    if len(titles) < WORDING_MIN_TITLES or all(title.startswith(ENGLISH_WORDING[0]) for title in titles):
        return ENGLISH_WORDING  # (in English, a run of titles sharing a first word must keep it)
    before = os.path.commonprefix(list(titles))  # character by character, as it says
    before = before[:before.rfind(" ") + 1]
    after = os.path.commonprefix([title[::-1] for title in titles])[::-1]
    after = after[after.find(" "):] if " " in after else ""
    return before, after


def read_youtube_music(row: Any, rule: str, wording: tuple[str, str] = ENGLISH_WORDING) -> Play | str:
    """A Takeout watch: `{"header": "YouTube Music", "title": "Watched <song>", "titleUrl":
    "https://music.youtube.com/watch?v=…", "subtitles": [{"name": "<artist> - Topic"}],
    "time": "<ISO start>"}`, the title worded as `wording` says (title_wording). Everything
    that is not music (_youtube_music) is skipped; a song YouTube has since removed has no
    link and no title left to know it by."""
    if not isinstance(row, dict):
        return MALFORMED
    if not _youtube_music(row):
        return NOT_MUSIC
    url = row.get("titleUrl")
    if not (isinstance(url, str) and url.startswith((MUSIC_LINK, VIDEO_LINK))):
        return MALFORMED
    title, subtitles = row.get("title"), row.get("subtitles")
    before, after = wording
    if isinstance(title, str) and len(title) > len(before) + len(after) and title.startswith(before) \
            and title.endswith(after):
        title = title[len(before):len(title) - len(after)]
    artist = subtitles[0].get("name") if isinstance(subtitles, list) and subtitles and \
        isinstance(subtitles[0], dict) else None
    if isinstance(artist, str) and artist.endswith(" - Topic"):
        artist = artist[:-len(" - Topic")]
    start_ms = _iso_ms(row.get("time"))
    return _scrobble(start_ms // 1000 if start_ms is not None else None, title, artist or "", None, None,
                     PlaySource.youtube_music)


READERS = {LASTFM_CSV: read_lastfm_csv, LASTFM_JSON: read_lastfm_json, LISTENBRAINZ: read_listenbrainz,
           MALOJA: read_maloja, APPLE_MUSIC: read_apple_music, YOUTUBE_MUSIC: read_youtube_music}


def _scrobble(start_s: int | None, track: Any, artist: Any, album: Any, length_ms: int | None,
              source: PlaySource) -> Play | str:
    """A start-stamped play: `played_at_ms` holds its START until the merge knows its length."""
    if start_s is None or not EARLIEST_S <= start_s < LATEST_S:
        return MALFORMED
    for value in (track, artist, album):
        if value is not None and (not isinstance(value, str) or not _storable(value)):
            return MALFORMED
    track_name = _clean(track)
    if track_name is None or artist is None:
        return MALFORMED
    return Play(start_s * 1000, int(source), None, track_name, _clean(artist) or "", _clean(album), length_ms)


def _whole(value: Any) -> int | None:
    """A non-negative whole number (seconds, or Apple's milliseconds) from an int, a decimal
    (ijson), a float or a string of digits."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, (Decimal, float)):
        try:
            number = int(value)
        except (ValueError, OverflowError, ArithmeticError):
            return None
        return number if number >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and len(text) <= 15:
            return int(text)
    return None


def _lastfm_date(value: Any) -> int | None:
    """lastfm-to-csv's "31 Jan 2021 12:34" (UTC)."""
    match = _LASTFM_DATE.match(value) if isinstance(value, str) else None
    if not match or match.group(2).lower() not in _MONTHS:
        return None
    day, month, year = int(match.group(1)), _MONTHS[match.group(2).lower()], int(match.group(3))
    try:
        moment = datetime(year, month, day, int(match.group(4)), int(match.group(5)), tzinfo=timezone.utc)
    except ValueError:
        return None
    return int(moment.timestamp())


def _iso_ms(value: Any) -> int | None:
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, ValueError):
        return None


def _text(value: Any) -> Any:
    """Last.fm's `{"#text": …}` objects, or a plain string."""
    return value.get("#text") if isinstance(value, dict) else value


def _plain(info: dict) -> dict:
    """ijson reads numbers with a fraction as Decimal; scrobbles reads int and float."""
    return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in info.items()
            if k in ("duration_ms", "duration")}
