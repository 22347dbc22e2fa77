"""The files in a Spotify data export, and how one of their rows becomes a play or a reason.

Two kinds carry music plays (docs/spotify.md, "Data export files"):

* extended streaming history: `Streaming_History_Audio_*.json` (older: `endsong_*.json`),
  rows with `ts` (end, UTC, to the second), `ms_played`, names, `spotify_track_uri`, the
  reasons a play started and ended, `offline`/`offline_timestamp`, `incognito_mode`.
  Files from 2020 and before have no `spotify_track_uri` at all: their plays are known
  by names, as account data's are;
* account data: `StreamingHistory_music_*.json` (older: `StreamingHistory<N>.json`),
  rows `{endTime: "2020-12-22 16:43", artistName, trackName, msPlayed}`: the past year
  only, names only, to the minute. The older files mix podcast episodes in, with the
  show as `artistName`: the service files those as episodes when the upload's extended
  history names the show.

Podcast episodes and audiobook chapters are kept apart from music (`EpisodePlay`, merged
into `episode_plays`): the extended history's episode and audiobook rows, and account
data's `StreamingHistory_podcast_N.json` (`{endTime, podcastName, episodeName,
msPlayed}`). Their counting rule is music's (30 seconds or more, or played to the end;
private sessions skipped); a row that names no show or episode is skipped as before.

Audiospective's own JSON export (`audiospective-*.json`, or any JSON object whose
`format` is "audiospective") is read by native.py: its plays are the archive's as they
were, and no counting rule applies to them.

Everything else (video histories, account data's audiobook files, `Userdata.json`,
`Payments.json`, …) is never opened: it is listed in the report as ignored. A JSON file
with a name we do not know is read only if its first row has the fields of a play.

The counting rule is explicit and chosen per import. Every row gets exactly one verdict:
a play, or the first of these reasons that applies: malformed row, podcast episode,
audiobook, private session, no track id (neither an id nor a name), then the rule's own
(short play: under 30 s; or not finished: `reason_end` other than `trackdone`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, NamedTuple

from ..models import PlaySource
from ..time import end_time_ms, ts_ms

EXTENDED = "extended"
ACCOUNT = "account"
NATIVE = "audiospective"  # this app's own JSON export (imports/native.py)
ACCOUNT_PODCAST = "account_podcast"  # StreamingHistory_podcast_N.json
IGNORED = "ignored"
NATIVE_FORMAT = "audiospective"  # its top-level "format"

RULES = {
    "default": "plays of 30 seconds or more, outside private sessions",
    "finished": "plays that ran to the end (reason_end = trackdone), outside private sessions",
}
MIN_MS = 30_000

# Skip reasons, in the order they are checked.
MALFORMED = "malformed_row"
EPISODE = "podcast_episode"
AUDIOBOOK = "audiobook"
PRIVATE = "private_session"
NO_TRACK_ID = "no_track_id"
SHORT = "short_play"
NOT_FINISHED = "not_finished"
NOT_MUSIC = "not_music"  # other services' videos and non-music entries (imports/services.py)
SKIP_REASONS = (MALFORMED, EPISODE, AUDIOBOOK, PRIVATE, NO_TRACK_ID, SHORT, NOT_FINISHED, NOT_MUSIC)

_PATTERNS = [
    (re.compile(r"^streaming_history_audio_.*\.json$", re.I), EXTENDED, None),
    (re.compile(r"^endsong(_\d+)?\.json$", re.I), EXTENDED, None),
    (re.compile(r"^streaminghistory_music_\d+\.json$", re.I), ACCOUNT, None),
    (re.compile(r"^streaminghistory\d*\.json$", re.I), ACCOUNT, None),
    (re.compile(r"^audiospective-.*\.json$", re.I), NATIVE, None),
    (re.compile(r"^streaming_?history_video_.*\.json$", re.I), IGNORED, "video streams are not music plays"),
    (re.compile(r"^streaminghistory_podcast_\d+\.json$", re.I), ACCOUNT_PODCAST, None),
    (re.compile(r"^streaming_?history_?audiobook.*\.json$", re.I), IGNORED, "audiobook history is not music plays"),
]
_BAD_TEXT = str.maketrans("", "", "\x00")  # Postgres text cannot hold NUL
_EXTENDED_SOURCE = int(PlaySource.extended_history)


PODCAST, AUDIOBOOK_KIND = 1, 2  # EpisodePlay.kind, as staged (import_stage.episode_kind)


class EpisodePlay(NamedTuple):
    """Listening to a podcast episode or an audiobook chapter: kept, apart from music
    (app/podcasts). The counting rule is music's: 30 seconds or more (or, under the
    "finished" rule, played to the end), outside private sessions."""

    played_at_ms: int  # end of the play
    source: int
    kind: int  # PODCAST or AUDIOBOOK_KIND
    show: str
    episode: str
    spotify_id: str | None  # the episode's or chapter's
    ms_played: int


class Play(NamedTuple):  # a NamedTuple, not a dataclass: one is built per row, and this is cheaper
    played_at_ms: int  # end of the play (its START for scrobbles: matching.START_STAMPED)
    source: int  # PlaySource
    spotify_id: str | None  # extended rows
    track_name: str
    artist_name: str  # the album artist for extended rows, not the track's
    album_name: str | None
    ms_played: int | None  # what was heard; for scrobbles (stamped at the start), the track's length if known
    isrc: str | None = None


def classify(name: str) -> tuple[str, str | None]:
    """(kind, why it is ignored) from a file's name, wherever it sits in a zip."""
    base = re.split(r"[\\/]", name)[-1]
    for pattern, kind, reason in _PATTERNS:
        if pattern.match(base):
            return kind, reason
    return IGNORED, "not a streaming-history file (never read)"


def sniff(first_row: Any) -> str | None:
    """The kind of a JSON file with an unfamiliar name, from its first row: only the fields
    of a music play will do (an audiobook or podcast history has endTime and msPlayed too)."""
    if isinstance(first_row, dict):
        if "ts" in first_row and "ms_played" in first_row and (
                "master_metadata_track_name" in first_row or "spotify_track_uri" in first_row):
            return EXTENDED
        if "endTime" in first_row and "msPlayed" in first_row and "trackName" in first_row:
            return ACCOUNT
        if "endTime" in first_row and "msPlayed" in first_row and "podcastName" in first_row:
            return ACCOUNT_PODCAST
    return None


def read_extended(row: Any, rule: str) -> Play | str:
    # Runs once per row of histories with hundreds of thousands of rows: kept lean.
    if type(row) is not dict:
        return MALFORMED
    get = row.get
    ts = ts_ms(get("ts"))
    ms_played = _count(get("ms_played"))
    track, artist, album, uri, reason_end = (get("master_metadata_track_name"), get("master_metadata_album_artist_name"),
                                             get("master_metadata_album_album_name"), get("spotify_track_uri"),
                                             get("reason_end"))
    if ts is None or ms_played is None or ms_played >= 2**31:
        return MALFORMED
    for value in (track, artist, album, uri, reason_end):
        if value is not None and (type(value) is not str or not _storable(value)):
            return MALFORMED
    if get("spotify_episode_uri") or get("episode_name") or get("episode_show_name"):
        return _episode(row, ts, ms_played, rule, PODCAST, "episode_show_name", "episode_name", "spotify_episode_uri",
                        "spotify:episode:", EPISODE)
    if get("audiobook_uri") or get("audiobook_chapter_uri") or get("audiobook_title"):
        return _episode(row, ts, ms_played, rule, AUDIOBOOK_KIND, "audiobook_title", "audiobook_chapter_title",
                        "audiobook_chapter_uri", "spotify:chapter:", AUDIOBOOK)
    if get("incognito_mode") is True:
        return PRIVATE
    track_id = uri[14:] if uri and len(uri) == 36 and uri.startswith("spotify:track:") else ""
    if not (track_id.isalnum() and track_id.isascii()):
        if uri is not None or not _clean(track):  # a local file, a removed track: nothing to go by
            return NO_TRACK_ID
        track_id = None  # older files have no URIs: a play known by its names
    if rule == "finished":
        if reason_end != "trackdone":
            return NOT_FINISHED
    elif ms_played < MIN_MS:
        return SHORT
    return Play(
        played_at_ms=_offline_end(row, ts, ms_played) if get("offline") is True else ts,
        source=_EXTENDED_SOURCE,
        spotify_id=track_id,
        track_name=_clean(track) or "Unknown track",
        artist_name=_clean(artist) or "",
        album_name=_clean(album),
        ms_played=ms_played,
    )


def _episode(row: dict, ts: int, ms_played: int, rule: str, kind: int, show_key: str, name_key: str, uri_key: str,
             uri_prefix: str, unnamed: str) -> EpisodePlay | str:
    """An extended row of an episode or chapter: kept when it names its show and itself."""
    show, name, uri = row.get(show_key), row.get(name_key), row.get(uri_key)
    for value in (show, name, uri):
        if value is not None and (type(value) is not str or not _storable(value)):
            return MALFORMED
    if not _clean(show) or not _clean(name):
        return unnamed  # nothing to file it under
    if row.get("incognito_mode") is True:
        return PRIVATE
    if rule == "finished":
        if row.get("reason_end") != "trackdone":
            return NOT_FINISHED
    elif ms_played < MIN_MS:
        return SHORT
    spotify_id = uri[len(uri_prefix):] if uri and uri.startswith(uri_prefix) else None
    if spotify_id is not None and not (spotify_id.isalnum() and spotify_id.isascii() and len(spotify_id) <= 64):
        spotify_id = None
    return EpisodePlay(ts, _EXTENDED_SOURCE, kind, _clean(show), _clean(name), spotify_id, ms_played)


def read_account_podcast(row: Any, rule: str) -> EpisodePlay | str:
    """StreamingHistory_podcast_N.json: `{endTime, podcastName, episodeName, msPlayed}`."""
    if not isinstance(row, dict):
        return MALFORMED
    end, ms_played = end_time_ms(row.get("endTime")), _count(row.get("msPlayed"))
    show, name = row.get("podcastName"), row.get("episodeName")
    if end is None or ms_played is None or ms_played >= 2**31 or not isinstance(show, str) or \
            not isinstance(name, str) or not _storable(show) or not _storable(name) or not _clean(show) \
            or not _clean(name):
        return MALFORMED
    if ms_played < MIN_MS:
        return SHORT
    return EpisodePlay(end, int(PlaySource.account_data), PODCAST, _clean(show), _clean(name), None, ms_played)


def as_episode(play: Play) -> EpisodePlay:
    """An older account-data row that listed an episode as music, the show as its artist."""
    return EpisodePlay(play.played_at_ms, play.source, PODCAST, play.artist_name, play.track_name, None,
                       play.ms_played or 0)


def show_of(row: Any) -> str | None:
    """The podcast show an extended-history row names (lower case), if it is an episode."""
    if type(row) is dict:
        show = row.get("episode_show_name")
        if type(show) is str and _storable(show) and show.strip():
            return show.strip().lower()
    return None


def identify(row: dict) -> tuple[int, str] | None:
    """(end ms, track name) of an extended row that was skipped, when both are readable:
    an account-data row of the same play must be skipped with it, not imported instead."""
    ts, name = ts_ms(row.get("ts")), row.get("master_metadata_track_name")
    if ts is None or type(name) is not str or not name.strip() or not _storable(name):
        return None
    return ts, _clean(name)


def read_account(row: Any, rule: str) -> Play | str:
    """Account-data rows carry no end reason: the 30 s rule applies to them under either rule
    (the report says so)."""
    if not isinstance(row, dict):
        return MALFORMED
    end = end_time_ms(row.get("endTime"))
    ms_played = _count(row.get("msPlayed"))
    if ms_played is not None and ms_played >= 2**31:
        ms_played = None
    track, artist = row.get("trackName"), row.get("artistName")
    if end is None or ms_played is None or not isinstance(track, str) or not isinstance(artist, str) \
            or not track.strip() or not _storable(track) or not _storable(artist):
        return MALFORMED
    if ms_played < MIN_MS:
        return SHORT
    return Play(end, int(PlaySource.account_data), None, _clean(track), _clean(artist) or "", None, ms_played)


def _offline_end(row: dict, synced_ms: int, ms_played: int) -> int:
    """Offline plays synced later can share one `ts` (the sync); `offline_timestamp` is when
    the play really started, in seconds in recent rows and milliseconds in some older ones."""
    started = _count(row.get("offline_timestamp"))
    if not started:
        return synced_ms
    started_ms = started if started > 100_000_000_000 else started * 1000
    end = started_ms + ms_played
    # Only believable if it ends before the sync that reported it (and not absurdly early).
    return end if synced_ms - 366 * 86_400_000 <= end <= synced_ms + 1000 else synced_ms


# Fields of the export files, as ijson reads them (the Web API's JSON has its own rules, in
# archival/page.py).
def _count(value: Any) -> int | None:
    """A non-negative whole number (ijson gives Decimal for numbers written with a fraction)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value() and value >= 0:
        return int(value)
    return None


def _storable(text: str) -> bool:
    """False for text that is not Unicode a database can store. JSON's escapes can spell a
    lone surrogate ("\\ud800"), which no UTF-8 encoder accepts; sources.py rewrites those
    to U+FFFF, a noncharacter no real name holds, before parsing."""
    if text.isascii():
        return True
    if "\uffff" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean(value: str | None) -> str | None:
    """Text as stored: without NUL (Postgres text cannot hold it), trimmed, None if blank."""
    if not value:
        return None
    if "\x00" in value:
        value = value.translate(_BAD_TEXT)
    value = value.strip()
    return value or None
