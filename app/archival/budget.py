"""The app-wide Spotify request budget, shared by every worker process through Postgres.

Spotify rate-limits per app over a rolling 30 s window, so the budget is one token bucket
in one row (`api_budget`): capacity SPOTIFY_REQUESTS_PER_30S, refilled continuously at that
many per 30 s. Each Web API request takes a token in a single atomic statement, timed by
the database's clock, so processes on different machines agree without talking.

Polling comes first: enrichment may only take a token while more than
SPOTIFY_POLLING_RESERVE of the bucket is left, so it can never starve a poll.

A 429 is the whole app's problem: `pause()` stops every process's requests until the
`Retry-After` has passed (it can be a day in development mode); nothing counts it
against a user.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from ..config import ArchivalSettings
from ..db import Database

log = logging.getLogger(__name__)

WINDOW_S = 30.0


class Priority(enum.Enum):
    POLL = "poll"
    ENRICH = "enrich"


class Paused(Exception):
    """Spotify told us to stop (429); nothing may be requested before `until`."""

    def __init__(self, until: datetime, reason: str | None):
        super().__init__(f"Spotify requests paused until {until:%Y-%m-%d %H:%M:%S} UTC ({reason or 'rate limited'})")
        self.until = until
        self.reason = reason


class Exhausted(Exception):
    """No token within the time we were willing to wait."""

    def __init__(self, wait_s: float):
        super().__init__(f"request budget exhausted; next token in {wait_s:.1f} s")
        self.wait_s = wait_s


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait_s: float  # when not granted: how long until a token is free
    paused_until: datetime | None


_TAKE = sa.text("""
    WITH state AS (
        SELECT least(:capacity, tokens + extract(epoch FROM clock_timestamp() - updated_at) * :refill) AS available,
               paused_until,
               paused_until > clock_timestamp() AS paused
          FROM api_budget WHERE id = 1 FOR UPDATE
    ), taken AS (
        UPDATE api_budget SET tokens = state.available - 1, updated_at = clock_timestamp(),
                              requests_total = requests_total + 1
          FROM state
         WHERE id = 1 AND NOT coalesce(state.paused, false) AND state.available >= 1 + :reserve
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM taken) AS granted, available, CASE WHEN paused THEN paused_until END AS paused_until
      FROM state
""")


class Budget:
    def __init__(self, database: Database, settings: ArchivalSettings):
        self.database = database
        self.capacity = float(settings.requests_per_30s)
        self.refill_per_s = settings.requests_per_30s / WINDOW_S
        self.reserve = settings.requests_per_30s * settings.polling_reserve

    def try_take(self, priority: Priority) -> Grant:
        reserve = self.reserve if priority is Priority.ENRICH else 0.0
        with self.database.engine.connect() as conn:
            row = conn.execute(_TAKE, {"capacity": self.capacity, "refill": self.refill_per_s,
                                       "reserve": reserve}).one()
            conn.commit()
        if row.granted:
            return Grant(True, 0.0, None)
        if row.paused_until is not None:
            return Grant(False, 0.0, row.paused_until)
        return Grant(False, max(0.05, (1 + reserve - float(row.available)) / self.refill_per_s), None)

    def take(self, priority: Priority, *, max_wait_s: float = 10.0) -> None:
        """Take a token, waiting up to `max_wait_s` for one (or for a short pause to end).
        Raises Paused when a pause lasts longer, Exhausted when tokens stay short."""
        deadline = time.monotonic() + max_wait_s
        while True:
            grant = self.try_take(priority)
            if grant.granted:
                return
            if grant.paused_until is not None:
                wait_s = (grant.paused_until - self._now()).total_seconds()
                if time.monotonic() + wait_s > deadline:
                    raise Paused(grant.paused_until, self.pause_reason())
                time.sleep(max(wait_s, 0.05))
                continue
            if time.monotonic() + grant.wait_s > deadline:
                raise Exhausted(grant.wait_s)
            time.sleep(grant.wait_s)

    def _now(self) -> datetime:
        with self.database.engine.connect() as conn:
            return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()

    def pause(self, retry_after_s: float, reason: str | None) -> datetime:
        """Stop every process's Spotify requests for `retry_after_s` (extends, never shortens)."""
        with self.database.engine.begin() as conn:
            until = conn.execute(sa.text("""
                UPDATE api_budget
                   SET paused_until = greatest(coalesce(paused_until, clock_timestamp()),
                                               clock_timestamp() + make_interval(secs => :seconds)),
                       pause_reason = :reason, rate_limited_total = rate_limited_total + 1
                 WHERE id = 1 RETURNING paused_until"""), {"seconds": retry_after_s, "reason": reason}).scalar_one()
        log.warning("Spotify rate limit: all requests paused until %s (%s)", until, reason or "no reason given")
        return until

    def paused_until(self) -> datetime | None:
        with self.database.engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT paused_until FROM api_budget WHERE id = 1 AND paused_until > clock_timestamp()")).scalar()

    def pause_reason(self) -> str | None:
        with self.database.engine.connect() as conn:
            return conn.execute(sa.text("SELECT pause_reason FROM api_budget WHERE id = 1")).scalar()

