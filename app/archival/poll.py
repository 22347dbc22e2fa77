"""One poll of one user, and a batch of them. This is "how a poll works".

    lock the user (app/archive_lock.py: no two polls of a user, nor a poll and an
       import's merge, at once, in any process)
    -> take a token from the shared request budget (waits; a 429 pause stops here)
    -> fresh access token (spotify/tokens.py: refresh under a row lock, rotation-safe)
    -> GET recently-played?limit=50 (no `after`: the last 50 always overlap what we have,
       which is what catches plays that arrive late, and does not depend on how Spotify
       pages with a cursor)
    -> parse -> ONE transaction: upsert catalogue, insert plays ON CONFLICT DO NOTHING,
       record a gap, advance the cursor, remember the listening speed, schedule the next
       poll -> commit.

A crash anywhere before the commit leaves nothing; a poll repeated at the same moment
adds nothing. Failures are classified (spotify/errors.py) and recorded against the user
in their own transaction; one user's failure, of any kind, never stops a batch.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import Flask

from .. import archive_lock
from ..config import ArchivalSettings
from ..db import Database
from ..models import ArchiveState, User, UserStatus
from ..spotify.client import SpotifyClient
from ..spotify.errors import AuthError, FailureKind, RateLimited, SpotifyError
from ..spotify.tokens import ReauthRequired, TokenService
from ..time import Clock, datetime_to_ms, ms_to_datetime, utcnow
from . import cadence, failures
from .budget import Budget, Exhausted, Paused, Priority
from .page import Gap, find_gap, parse_page
from .store import record_gap, store_plays, uncovered

log = logging.getLogger(__name__)

BUDGET_RETRY = timedelta(seconds=30)
LOCKED_RETRY = timedelta(seconds=20)


@dataclass
class Archivist:
    """What polling needs, built once per process (`from_app`) or by a test."""

    database: Database
    tokens: TokenService
    spotify: SpotifyClient
    budget: Budget
    settings: ArchivalSettings
    clock: Clock = utcnow
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_app(cls, app: Flask) -> Archivist:
        settings = app.config["SETTINGS"].archival
        database = app.extensions["database"]
        return cls(database=database, tokens=app.extensions["tokens"], spotify=app.extensions["spotify"],
                   budget=Budget(database, settings), settings=settings, clock=app.extensions["clock"])


@dataclass
class PollResult:
    user_id: int
    outcome: str  # archived | failed | reauth_required | paused | deferred | skipped
    items: int = 0
    new_plays: int = 0
    newest: datetime | None = None
    gap: Gap | None = None
    skipped_items: dict[str, int] = field(default_factory=dict)
    failure_kind: str | None = None
    message: str | None = None
    next_poll_at: datetime | None = None

    def to_json(self) -> dict:
        return {
            "user_id": self.user_id, "outcome": self.outcome, "items": self.items, "new_plays": self.new_plays,
            "newest_play": self.newest.isoformat() if self.newest else None,
            "gap": {"from": ms_to_datetime(self.gap.starts_ms).isoformat(),
                    "to": ms_to_datetime(self.gap.ends_ms).isoformat()} if self.gap else None,
            "skipped_items": self.skipped_items, "failure_kind": self.failure_kind, "message": self.message,
            "next_poll_at": self.next_poll_at.isoformat() if self.next_poll_at else None,
        }


def poll_batch(archivist: Archivist, user_ids: list[int], dispatched_at: datetime | None = None) -> list[PollResult]:
    """Poll each user in turn. Nothing one user does can stop the others."""
    results = []
    for user_id in user_ids:
        try:
            results.append(poll_user(archivist, user_id, dispatched_at=dispatched_at))
        except Exception as exc:  # noqa: BLE001 - the batch must go on; poll_user records what it can
            log.exception("user %s: poll crashed outside its own error handling", user_id)
            results.append(PollResult(user_id, "failed", failure_kind=FailureKind.UNKNOWN, message=str(exc)))
    return results


def poll_user(archivist: Archivist, user_id: int, *, dispatched_at: datetime | None = None,
              wait_for_lock: bool = False) -> PollResult:
    with archive_lock.held(archivist.database, user_id, wait=wait_for_lock) as locked:
        if not locked:  # another poll, or an import merging: try again soon, not after the lease
            return _reschedule(archivist, user_id, archivist.clock() + LOCKED_RETRY, 0, "skipped",
                               "another poll or an import of this user is running")
        state = _load(archivist.database, user_id)
        if state is None:
            return PollResult(user_id, "skipped", message="no such user")
        user, archive = state
        if user.status != UserStatus.active.value:
            return PollResult(user_id, "skipped", message=f"user is {user.status}")
        if dispatched_at is not None and archive.last_poll_at is not None and archive.last_poll_at >= dispatched_at:
            return PollResult(user_id, "skipped", message="already polled since this job was queued")
        try:
            return _poll(archivist, user, archive)
        except ReauthRequired as exc:  # the token service has marked the user already
            return _record_failure(archivist, user_id, FailureKind.AUTH, str(exc), reauth=True)
        except RateLimited as exc:
            until = archivist.budget.pause(exc.retry_after, exc.reason)
            return _reschedule(archivist, user_id, until, exc.retry_after, "paused", f"Spotify rate limit: {exc}")
        except Paused as exc:
            spread = (exc.until - archivist.clock()).total_seconds()
            return _reschedule(archivist, user_id, exc.until, spread, "paused", str(exc))
        except Exhausted as exc:
            return _reschedule(archivist, user_id, archivist.clock() + BUDGET_RETRY, BUDGET_RETRY.total_seconds(),
                               "deferred", str(exc))
        except SpotifyError as exc:
            if isinstance(exc, AuthError):
                _expire_access_token(archivist, user_id)  # the next attempt refreshes it
            return _record_failure(archivist, user_id, exc.kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - a poison pill is this user's failure, not the batch's
            log.exception("user %s: poll failed unexpectedly", user_id)
            return _record_failure(archivist, user_id, FailureKind.UNKNOWN, f"{type(exc).__name__}: {exc}")


def _poll(archivist: Archivist, user: User, archive: ArchiveState) -> PollResult:
    archivist.budget.take(Priority.POLL)
    access_token = archivist.tokens.fresh_access_token(user.id)
    page = parse_page(archivist.spotify.recently_played(access_token, limit=50))
    now = archivist.clock()

    with archivist.database.session() as session:
        state = session.execute(
            sa.select(ArchiveState).where(ArchiveState.user_id == user.id).with_for_update()).scalar_one()
        cursor_ms = datetime_to_ms(state.cursor_played_at) if state.cursor_played_at else None
        stored = store_plays(session, user.id, page.plays)
        gap = find_gap(page.item_count, page.oldest_ms, cursor_ms)
        if gap:  # an import may have filled what the cursor says is missing
            gap = uncovered(session, user.id, gap)
        if gap:
            record_gap(session, user.id, gap)
        played = [p.played_at_ms for p in page.plays]
        newest = max(played + ([cursor_ms] if cursor_ms else []), default=None)
        late = cursor_ms is not None and any(ms < cursor_ms for ms in stored.new_played_at_ms)
        rate = cadence.observe(_rate_of(state), played, now, late_arrivals=late)
        interval = cadence.next_interval(
            rate, user.plan, archivist.settings, now, archivist.rng,
            last_play=ms_to_datetime(newest) if newest else None,
            previous=timedelta(seconds=state.poll_interval_s) if state.poll_interval_s else None)
        state.cursor_played_at = ms_to_datetime(newest) if newest else None
        state.peak_per_hour, state.peak_observed_at, state.late_seen_at = (
            rate.peak_per_hour, rate.observed_at, rate.late_seen_at)
        state.poll_interval_s = int(interval.total_seconds())
        state.next_poll_at = now + interval
        state.last_poll_at = state.last_success_at = now
        state.consecutive_failures = 0
        state.last_failure_kind = state.last_failure_message = state.circuit_open_until = None
        state.dispatched_at = None
        next_poll_at = state.next_poll_at

    if page.skipped:
        log.info("user %s: skipped items %s", user.id, dict(page.skipped))
    return PollResult(user.id, "archived", items=page.item_count, new_plays=stored.new_plays,
                      newest=ms_to_datetime(newest) if newest else None, gap=gap,
                      skipped_items=dict(page.skipped), next_poll_at=next_poll_at)


def _record_failure(archivist: Archivist, user_id: int, kind: str, message: str, *, reauth: bool = False) -> PollResult:
    now = archivist.clock()
    with archivist.database.session() as session:
        state = session.execute(
            sa.select(ArchiveState).where(ArchiveState.user_id == user_id).with_for_update()).scalar_one()
        user = session.get(User, user_id)
        count = failures.consecutive(state.last_failure_kind, state.consecutive_failures, kind)
        safe = cadence.next_interval(_rate_of(state), user.plan, archivist.settings, now, archivist.rng,
                                     last_play=state.cursor_played_at,
                                     previous=timedelta(seconds=state.poll_interval_s) if state.poll_interval_s else None)
        verdict = failures.judge(kind, count, archivist.settings, safe_interval=safe)
        state.consecutive_failures = count
        state.last_failure_kind = kind
        state.last_failure_at = state.last_poll_at = now
        state.last_failure_message = message[:500]
        state.next_poll_at = now + verdict.retry_after
        state.circuit_open_until = state.next_poll_at if verdict.circuit_open else None
        state.dispatched_at = None
        if verdict.deactivate and not reauth:
            user.status = UserStatus.deactivated.value
            log.warning("user %s: deactivated after %s consecutive %s failures", user_id, count, kind)
        next_poll_at = state.next_poll_at
    outcome = "reauth_required" if reauth else "failed"
    log.info("user %s: poll %s (%s, %s in a row): %s", user_id, outcome, kind, count, message)
    return PollResult(user_id, outcome, failure_kind=kind, message=message, next_poll_at=next_poll_at)


def _reschedule(archivist: Archivist, user_id: int, when: datetime, spread_s: float, outcome: str,
                message: str) -> PollResult:
    """Not the user's fault (the app is paused or out of budget): try again then, count nothing."""
    # Spread over a window as long as the wait (at most a minute), so a lifted pause does
    # not release everyone at the same instant.
    when = when + timedelta(seconds=archivist.rng.uniform(0, min(max(spread_s, 1.0), 60.0)))
    with archivist.database.session() as session:
        session.execute(sa.update(ArchiveState).where(ArchiveState.user_id == user_id)
                        .values(next_poll_at=when, dispatched_at=None))
    return PollResult(user_id, outcome, message=message, next_poll_at=when)


def _expire_access_token(archivist: Archivist, user_id: int) -> None:
    with archivist.database.session() as session:
        session.execute(sa.text("UPDATE spotify_tokens SET expires_at = :now WHERE user_id = :id"),
                        {"now": archivist.clock(), "id": user_id})


def _rate_of(state: ArchiveState) -> cadence.ListeningRate:
    return cadence.ListeningRate(state.peak_per_hour, state.peak_observed_at, state.late_seen_at)


def _load(database: Database, user_id: int) -> tuple[User, ArchiveState] | None:
    with database.sessionmaker() as session:
        row = session.execute(sa.select(User, ArchiveState).join(ArchiveState, ArchiveState.user_id == User.id)
                              .where(User.id == user_id)).one_or_none()
        return (row[0], row[1]) if row else None

