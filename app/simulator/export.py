"""Spotify data exports of a simulated account, made from its ground truth.

Shaped like the real thing (docs/spotify.md, "Data export files"): every play the listener made, reported or not
(short plays, private sessions), plus a podcast episode now and then; `ts` is the end
of the stream to the second, off from the API's `played_at` by up to ±3 s (the client
and the server log separately); some plays were offline and share their sync time as
`ts`, with `offline_timestamp` (seconds, or milliseconds in older rows) giving the real
start; files repeat the row at their boundary, as Spotify's do. Account data is the
names-only, minute-precision summary.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timezone

from .listening import SimPlay
from .world import SimAccount, World

ROWS_PER_FILE = 1500


def _unit(*parts) -> float:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _iso_seconds(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def extended_rows(world: World, account: SimAccount, start_ms: int, end_ms: int) -> list[dict]:
    plays = world.plays_between(account, start_ms, end_ms)
    rows: list[dict] = []
    sync_ts = None
    for play in plays:
        jitter_ms = int((_unit("ts", account.key, play.played_at_ms) - 0.5) * 6000)
        ts_ms = play.played_at_ms + jitter_ms
        offline = _unit("offline", account.key, play.played_at_ms) < 0.05
        if offline:
            # Synced an hour later, all at once; a run of offline plays longer than that is
            # synced again (a sync never reports a play that has not ended yet).
            if sync_ts is None or sync_ts < ts_ms:
                sync_ts = ts_ms + 3_600_000
        else:
            sync_ts = None
        rows.append(_extended_row(world, play, ts_ms if not offline else sync_ts, offline))
        if _unit("episode", account.key, play.played_at_ms) < 0.02:
            rows.append(_episode_row(ts_ms + 600_000))
    return rows


def _extended_row(world: World, play: SimPlay, ts_ms: int, offline: bool) -> dict:
    track = world.catalogue.tracks[play.track_index]
    album = world.catalogue.albums[track.album_index]
    artist = world.catalogue.artists[album.artist_index]
    start_ms = play.played_at_ms - play.ms_played
    old_style = play.played_at_ms % 2 == 0  # some rows carry milliseconds in offline_timestamp
    return {
        "ts": _iso_seconds(ts_ms),
        "platform": "android",
        "ms_played": play.ms_played,
        "conn_country": "DE",
        "ip_addr": "192.0.2.1",
        "master_metadata_track_name": track.name,
        "master_metadata_album_artist_name": artist.name,
        "master_metadata_album_album_name": album.name,
        "spotify_track_uri": f"spotify:track:{track.id}",
        "episode_name": None,
        "episode_show_name": None,
        "spotify_episode_uri": None,
        "audiobook_title": None,
        "audiobook_uri": None,
        "audiobook_chapter_uri": None,
        "audiobook_chapter_title": None,
        "reason_start": "trackdone",
        "reason_end": "trackdone" if play.ms_played >= track.duration_ms else "fwdbtn",
        "shuffle": False,
        "skipped": play.ms_played < track.duration_ms,
        "offline": offline,
        "offline_timestamp": (start_ms if old_style else start_ms // 1000) if offline else 0,
        "incognito_mode": not play.visible and play.ms_played >= 30_000,
    }


def _episode_row(ts_ms: int) -> dict:
    return {
        "ts": _iso_seconds(ts_ms), "platform": "android", "ms_played": 1_200_000, "conn_country": "DE",
        "master_metadata_track_name": None, "master_metadata_album_artist_name": None,
        "master_metadata_album_album_name": None, "spotify_track_uri": None,
        "episode_name": "Episode 12: Simulated Things", "episode_show_name": "The Simulator Show",
        "spotify_episode_uri": "spotify:episode:0123456789abcdefghijkl", "reason_start": "clickrow",
        "reason_end": "endplay", "shuffle": False, "skipped": None, "offline": False, "offline_timestamp": 0,
        "incognito_mode": False,
    }


def account_rows(world: World, account: SimAccount, start_ms: int, end_ms: int) -> list[dict]:
    rows = []
    for play in world.plays_between(account, start_ms, end_ms):
        track = world.catalogue.tracks[play.track_index]
        artist = world.catalogue.artists[track.artist_indexes[0]]
        end = datetime.fromtimestamp(play.played_at_ms // 1000, tz=timezone.utc)
        rows.append({"endTime": end.strftime("%Y-%m-%d %H:%M"), "artistName": artist.name,
                     "trackName": track.name, "msPlayed": play.ms_played})
    return rows


def export_zip(world: World, account: SimAccount, start_ms: int, end_ms: int, kind: str = "extended") -> bytes:
    """my_spotify_data.zip as Spotify would send it, with the other files people find inside."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if kind == "extended":
            folder = "Spotify Extended Streaming History"
            rows = extended_rows(world, account, start_ms, end_ms)
            for n, part in enumerate(_split(rows)):
                archive.writestr(f"{folder}/Streaming_History_Audio_{n}.json", json.dumps(part))
            archive.writestr(f"{folder}/Streaming_History_Video_2026.json", "[]")
            archive.writestr(f"{folder}/ReadMeFirst_ExtendedStreamingHistory.pdf", b"%PDF-1.4 simulated")
        else:
            folder = "Spotify Account Data"
            for n, part in enumerate(_split(account_rows(world, account, start_ms, end_ms))):
                archive.writestr(f"{folder}/StreamingHistory_music_{n}.json", json.dumps(part))
            archive.writestr(f"{folder}/StreamingHistory_podcast_0.json", "[]")
            archive.writestr(f"{folder}/Userdata.json", json.dumps({"username": account.id}))
            archive.writestr(f"{folder}/Payments.json", json.dumps({"payment_method": "simulated"}))
    return buffer.getvalue()


def _split(rows: list[dict]) -> list[list[dict]]:
    """Files of ROWS_PER_FILE rows; each file after the first repeats its predecessor's last
    row, as Spotify's exports do at file boundaries."""
    parts = [rows[i:i + ROWS_PER_FILE] for i in range(0, len(rows), ROWS_PER_FILE)] or [[]]
    return [parts[0]] + [[parts[i - 1][-1]] + parts[i] for i in range(1, len(parts))]


def synthetic_history(rows: int, *, years: float = 8, tracks: int = 40_000, artists: int = 8_000, seed: int = 1,
                      end_ms: int = 1_767_225_600_000, rows_per_file: int = 16_000) -> list[list[dict]]:
    """A large, realistic extended streaming history (for benchmarks and load tests): files
    of about 12 MB like Spotify's, Zipf-popular tracks, and the awkward rows real exports
    have: short plays, podcast episodes, private sessions, offline plays sharing a sync
    `ts`, local files without a track URI, and rows repeated across file boundaries."""
    import random
    from itertools import accumulate

    from .catalogue import _ADJECTIVES, _NOUNS, spotify_id

    rng = random.Random(f"synthetic:{seed}")
    artist_names = [f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {i}" for i in range(artists)]
    catalogue = []
    for i in range(tracks):
        artist = int(artists * rng.random() ** 2)  # some artists have many tracks
        catalogue.append((spotify_id(seed, "synthetic-track", i), f"{rng.choice(_NOUNS)} {rng.choice(_NOUNS).lower()} {i}",
                          artist_names[artist], f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} ({artist})",
                          rng.randint(120_000, 330_000)))
    weights = list(accumulate(1.0 / (rank + 1) for rank in range(tracks)))
    start_ms = end_ms - int(years * 365.25 * 86_400_000)
    # People listen in sessions: runs of plays back to back, then hours of nothing. The
    # sessions' starts are spread evenly over the span so the history fills it.
    per_session = 12
    session_gap = (end_ms - start_ms) // max(1, rows // per_session)
    history, t, sync, in_session = [], start_ms, None, 0
    while len(history) < rows:
        if in_session == 0:
            t = max(t, start_ms + (len(history) // per_session) * session_gap) + rng.randint(0, session_gap // 2)
            in_session = rng.randint(3, 2 * per_session - 3)
        in_session -= 1
        roll = rng.random()
        if roll < 0.03:
            t += 1_200_000
            history.append(_episode_row(t))
            continue
        track_id, name, artist, album, duration = catalogue[_pick(rng, weights)]
        played = rng.randint(1_000, 29_000) if roll < 0.18 else duration if roll < 0.85 else rng.randint(30_000, duration)
        t += played + rng.randint(0, 3_000)  # ts is the END of the play
        offline = rng.random() < 0.03
        sync = (sync or t + 7_200_000) if offline else None
        row = {
            "ts": _iso_seconds(sync if offline else t), "platform": "ios", "ms_played": played,
            "conn_country": "NL", "ip_addr": "198.51.100.7", "master_metadata_track_name": name,
            "master_metadata_album_artist_name": artist, "master_metadata_album_album_name": album,
            "spotify_track_uri": f"spotify:track:{track_id}" if rng.random() > 0.005 else None,
            "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
            "reason_start": "trackdone", "reason_end": "trackdone" if played == duration else "fwdbtn",
            "shuffle": rng.random() < 0.4, "skipped": played < duration, "offline": offline,
            "offline_timestamp": (t - played) // 1000 if offline else 0,
            "incognito_mode": rng.random() < 0.02,
        }
        history.append(row)
        if rng.random() < 0.002:
            history.append(dict(row))  # Spotify sometimes logs a play twice
    files = [history[i:i + rows_per_file] for i in range(0, rows, rows_per_file)]
    # Each file after the first repeats its predecessor's last row, as Spotify's do; the
    # total stays `rows`.
    for i in range(1, len(files)):
        files[i] = [files[i - 1][-1]] + files[i][:-1]
    return files


def as_account_data(files: list[list[dict]]) -> list[list[dict]]:
    """The same listening as account data sees it: music only, names, to the minute."""
    return [[{"endTime": row["ts"][:10] + " " + row["ts"][11:16], "artistName": row["master_metadata_album_artist_name"],
              "trackName": row["master_metadata_track_name"], "msPlayed": row["ms_played"]}
             for row in part if row.get("master_metadata_track_name")] for part in files]


def synthetic_zip(path, files: list[list[dict]], *, kind: str = "extended") -> None:
    """my_spotify_data.zip holding `files` as extended history, or as account data."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for n, part in enumerate(files):
            name = (f"Spotify Extended Streaming History/Streaming_History_Audio_{2018 + n // 2}_{n}.json"
                    if kind == "extended" else f"Spotify Account Data/StreamingHistory_music_{n}.json")
            archive.writestr(name, json.dumps(part))
        archive.writestr("Spotify Extended Streaming History/Streaming_History_Video_2018-2026.json", "[]")
        archive.writestr("Spotify Account Data/Userdata.json", json.dumps({"username": "synthetic"}))


def _pick(rng, cumulative: list[float]) -> int:
    import bisect

    return min(bisect.bisect_left(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)
