"""When to poll a user next: often enough that fewer than 50 plays can happen in between.

Spotify shows only the last 50 plays, so what decides completeness is the *fastest* a user
may listen before we look again, not their average. Three facts shape the policy:

* Each page carries up to 50 `played_at` timestamps. The densest run of consecutive
  plays in it measures how fast this user really goes (skipping through a playlist is
  ~120 plays/hour, album listening ~15). We remember the highest such speed (the peak),
  decaying with a half-life of a week, and poll so that at that speed at most `SAFETY`
  × 50 plays accumulate between polls. The margin absorbs a failed poll's retry.
* A burst nobody has seen yet can start the minute after a poll. Reported plays last at
  least ~30 s, so no one exceeds 120 an hour; assuming at least `UNSEEN_BURST_PER_HOUR`
  while a user is active keeps even a first-ever binge inside the window.
* A user silent for three days is probably away: their interval grows by half each poll up
  to the plan's maximum, and snaps back with the first new play. It never grows past
  what their remembered peak allows (`IDLE_SAFETY` of the window), so a known binger
  coming back is still caught.

When plays arrive late (Spotify incidents: they can show up hours after they ended,
slotted in behind newer ones), the window churns unpredictably, so the interval halves
for a few hours after late arrivals are seen.

Bounds: the plan's (free/pro, configurable) and a global minimum. Intervals are
shortened by a random 0-10 %, never lengthened, so users spread over the cycle instead
of synchronising.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from ..config import ArchivalSettings

WINDOW = 50  # Spotify's recently-played horizon
SAFETY = 0.5  # share of the window we let fill between polls at the expected speed
RUN = 10  # consecutive plays over which listening speed is measured
UNSEEN_BURST_PER_HOUR = 70.0  # assumed for active users: 50 % of the window = 21 minutes
PEAK_HALF_LIFE = timedelta(days=7)
IDLE_AFTER = timedelta(days=3)
IDLE_GROWTH = 1.5
IDLE_SAFETY = 0.8
LATE_CAUTION = timedelta(hours=6)
FIRST_POLL_SPREAD = timedelta(seconds=30)


@dataclass(frozen=True)
class ListeningRate:
    """What archive_state remembers between polls."""

    peak_per_hour: float | None = None
    observed_at: datetime | None = None
    late_seen_at: datetime | None = None  # last time plays arrived behind ones we had

    def decayed(self, now: datetime) -> float | None:
        if self.peak_per_hour is None or self.observed_at is None:
            return None
        age = max(0.0, (now - self.observed_at).total_seconds())
        return self.peak_per_hour * 0.5 ** (age / PEAK_HALF_LIFE.total_seconds())


def burst_rate(played_at_ms: Sequence[int], run: int = RUN) -> float | None:
    """Plays per hour over the densest run of `run` consecutive plays (fewer if that is all
    there is, but at least 3), or None when a page is too thin to tell."""
    times = sorted(played_at_ms)
    n = min(run, len(times))
    if n < 3:
        return None
    fastest_ms = min(times[i + n - 1] - times[i] for i in range(len(times) - n + 1))
    return (n - 1) * 3_600_000 / max(fastest_ms, 1_000)


def observe(rate: ListeningRate, page_played_at_ms: Sequence[int], now: datetime, *,
            late_arrivals: bool = False) -> ListeningRate:
    """Fold one page into what we remember."""
    seen = burst_rate(page_played_at_ms)
    previous = rate.decayed(now)
    peak, observed_at = rate.peak_per_hour, rate.observed_at
    if seen is not None or previous is not None:
        peak, observed_at = max(seen or 0.0, previous or 0.0), now
    return ListeningRate(peak, observed_at, now if late_arrivals else rate.late_seen_at)


def bounds_for(plan: str, settings: ArchivalSettings) -> tuple[int, int]:
    low, high = settings.pro_interval_s if plan == "pro" else settings.free_interval_s
    low = max(low, settings.global_min_interval_s)
    return low, max(low, high)


def next_interval(rate: ListeningRate, plan: str, settings: ArchivalSettings, now: datetime, rng: random.Random,
                  *, last_play: datetime | None, previous: timedelta | None) -> timedelta:
    low, high = bounds_for(plan, settings)
    if last_play is None or now - last_play > IDLE_AFTER:
        start = SAFETY * WINDOW / UNSEEN_BURST_PER_HOUR * 3600
        interval_s = max(previous.total_seconds() if previous else 0.0, start) * IDLE_GROWTH
        peak = rate.decayed(now)
        if peak:
            interval_s = min(interval_s, max(start, IDLE_SAFETY * WINDOW / peak * 3600))
    else:
        speed = max(rate.decayed(now) or 0.0, UNSEEN_BURST_PER_HOUR)
        safety = SAFETY / 2 if rate.late_seen_at and now - rate.late_seen_at < LATE_CAUTION else SAFETY
        interval_s = safety * WINDOW / speed * 3600
    interval_s = min(max(interval_s, low), high) * rng.uniform(0.9, 1.0)
    return timedelta(seconds=max(interval_s, settings.global_min_interval_s))


def first_poll_delay(rng: random.Random) -> timedelta:
    """New users are polled soon (their dashboard fills at once) but not all in one instant."""
    return FIRST_POLL_SPREAD * rng.random()
