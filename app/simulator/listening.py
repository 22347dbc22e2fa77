"""Deterministic listeners: who plays what, when, for how long.

A listener's day is generated from (seed, listener key, day number) alone, so any window
of history can be produced on demand, in any order, by any process, and always comes
out the same. Plays never cross local midnight and sessions never overlap, which keeps
days independent (and is how one account can only play one thing at a time).

Profiles (the archival issue's benchmark mixes them):

* light: a couple of short sessions most days, mostly evenings.
* commuter: weekday sessions around 08:00 and 17:30, lighter weekends.
* binge: every other day or so a burst of 1–3 hours of skipping through tracks at
  90–120 plays per hour (the case that loses plays when polled hourly), plus normal listening.
* skip_heavy: many sessions where nearly half the plays are abandoned under 30 s
  (which Spotify does not report) and many more last 30–60 s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from .catalogue import Catalogue

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_VISIBLE_MS = 30_000  # Spotify reports plays of about 30 s or more

PROFILES = ("light", "commuter", "binge", "skip_heavy")


@dataclass(frozen=True)
class SimPlay:
    played_at_ms: int  # END of the play, Unix ms (what Spotify calls played_at)
    track_index: int
    ms_played: int
    visible: bool  # would Spotify report it at all (long enough, not a private session)
    context: str  # "album" or "playlist"


@dataclass(frozen=True)
class Session:
    start_ms: int
    tracks: int
    play_length: Callable[[random.Random, int], int]  # (rng, track duration) -> ms played
    private: bool = False


def _full_or_skip(skip_rate: float) -> Callable[[random.Random, int], int]:
    def length(rng: random.Random, duration: int) -> int:
        if rng.random() < skip_rate:
            return rng.randint(5_000, max(5_001, duration // 2))
        return duration
    return length


def _skip_through(rng: random.Random, duration: int) -> int:
    # Binge bursts: skipping through a playlist, each play just over Spotify's 30 s bar.
    return min(duration, rng.randint(30_500, 38_000))


def _skip_heavy(rng: random.Random, duration: int) -> int:
    roll = rng.random()
    if roll < 0.45:
        return rng.randint(3_000, 29_000)  # abandoned: never reported
    if roll < 0.75:
        return min(duration, rng.randint(30_000, 60_000))
    return duration


def _sessions_for(profile: str, rng: random.Random, day_start: int, weekday: int) -> list[Session]:
    def at(hour: float, jitter_min: int = 45) -> int:
        return day_start + int(hour * HOUR_MS) + rng.randint(-jitter_min, jitter_min) * 60_000

    private = rng.random() < 0.03
    sessions: list[Session] = []
    if profile == "light":
        for _ in range(rng.choices((0, 1, 2), (0.2, 0.5, 0.3))[0]):
            sessions.append(Session(at(rng.choice((12.5, 19, 20.5, 22))), rng.randint(3, 12), _full_or_skip(0.1)))
    elif profile == "commuter":
        if weekday < 5:
            sessions.append(Session(at(7.75, 20), rng.randint(9, 16), _full_or_skip(0.12), private))
            sessions.append(Session(at(17.5, 30), rng.randint(10, 18), _full_or_skip(0.12)))
            if rng.random() < 0.4:
                sessions.append(Session(at(21), rng.randint(4, 10), _full_or_skip(0.1)))
        else:
            for _ in range(rng.randint(0, 2)):
                sessions.append(Session(at(rng.choice((11, 15, 20))), rng.randint(5, 15), _full_or_skip(0.1)))
    elif profile == "binge":
        if rng.random() < 0.6:
            hours = rng.uniform(1.0, 3.0)
            plays_per_hour = rng.randint(92, 118)
            sessions.append(Session(at(rng.choice((10, 14, 20, 22)), 60), int(hours * plays_per_hour), _skip_through))
        sessions.append(Session(at(rng.choice((8, 13, 17))), rng.randint(8, 20), _full_or_skip(0.15), private))
    elif profile == "skip_heavy":
        for hour in rng.sample((8, 11, 13, 16, 19, 21, 23), rng.randint(2, 4)):
            sessions.append(Session(at(hour), rng.randint(15, 40), _skip_heavy))
    else:
        raise ValueError(f"unknown listener profile {profile!r}")
    return sorted(sessions, key=lambda s: s.start_ms)


class Listening:
    """Generates plays for listeners over one catalogue. Thread-safe (pure + cache)."""

    def __init__(self, catalogue: Catalogue, seed: int):
        self.catalogue = catalogue
        self.seed = seed

    @lru_cache(maxsize=50_000)
    def day(self, listener_key: str, profile: str, tz_offset_min: int, day: int) -> tuple[SimPlay, ...]:
        """All plays (reported or not) ending within local day `day` (days since epoch)."""
        rng = random.Random(f"{self.seed}:{listener_key}:{day}")
        day_start = day * DAY_MS - tz_offset_min * 60_000
        day_end = day_start + DAY_MS
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        favourites = self._favourites(listener_key)

        plays: list[SimPlay] = []
        t = day_start
        for session in _sessions_for(profile, rng, day_start, weekday):
            t = max(t, session.start_ms, day_start)
            album_run = rng.random() < 0.2
            track = self._pick(rng, favourites)
            context = "album" if album_run else "playlist"
            for _ in range(session.tracks):
                duration = self.catalogue.tracks[track].duration_ms
                played = session.play_length(rng, duration)
                end = t + played
                if end >= day_end:
                    break
                plays.append(SimPlay(
                    played_at_ms=end,
                    track_index=track,
                    ms_played=played,
                    visible=played >= MIN_VISIBLE_MS and not session.private,
                    context=context,
                ))
                t = end + rng.randint(50, 2_500)  # the gap before the next track starts
                track = self._next_track(rng, track, album_run, favourites)
        return tuple(plays)

    @lru_cache(maxsize=50_000)
    def visible_day(self, listener_key: str, profile: str, tz_offset_min: int,
                    day: int) -> tuple[tuple[SimPlay, ...], list[int]]:
        """The reported plays of a day, oldest first, with their end times for bisecting."""
        plays = tuple(p for p in self.day(listener_key, profile, tz_offset_min, day) if p.visible)
        return plays, [p.played_at_ms for p in plays]

    def _favourites(self, listener_key: str) -> tuple[int, ...]:
        rng = random.Random(f"{self.seed}:favourites:{listener_key}")
        return tuple(self.catalogue.popular_track(rng) for _ in range(60))

    def _pick(self, rng: random.Random, favourites: tuple[int, ...]) -> int:
        if rng.random() < 0.45:
            return rng.choice(favourites)
        return self.catalogue.popular_track(rng)

    def _next_track(self, rng: random.Random, track: int, album_run: bool, favourites: tuple[int, ...]) -> int:
        if album_run:
            album = self.catalogue.albums[self.catalogue.tracks[track].album_index]
            position = album.track_indexes.index(track)
            if position + 1 < len(album.track_indexes):
                return album.track_indexes[position + 1]
        return self._pick(rng, favourites)
