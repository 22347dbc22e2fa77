"""Completeness of archival policies: a simulated week, many listeners, faults injected.

    python -m bench.completeness [--users 500] [--days 7] [--seed 7]

Three policies poll the *same* generated listening under the *same* faults:

* adaptive: ours (app/archival/cadence.py + failures.py);
* fixed_60m: every 60 minutes (the seed design);
* fixed_2m: every 2 minutes (your_spotify).

What runs is the product's own logic: the simulator's recently-played window (the code
behind its HTTP endpoint: the last 50 reported plays, late arrivals included), the
cadence policy, the failure policy (quick retry, then circuit cooldowns) and the gap
rule, in virtual time, with an in-memory archive keyed exactly as `plays` is (track,
played_at to the millisecond). The HTTP and Postgres path of a poll is measured by the
tests and by bench.poll_throughput; a week of 2-minute polling for 500 users is 2.5
million polls, which only virtual time makes affordable.

Faults (deterministic from the seed, defined on time so every policy meets the same):
1.5 % of calls fail transiently (5xx, timeouts, malformed bodies); 2 % of users suffer a
45-minute outage; four app-wide 429s with Retry-After of 1 to 15 minutes pause every
policy; 10 % of users go through a 3-hour incident in which 30 % of their plays appear
up to 2 hours late.

"API-visible" plays: those ending in the week that the API could have returned: in
Spotify's 50-play window at some moment when Spotify was answering for that user. That is
every reported play, except a late one that arrived behind 50 newer plays and one whose
whole time in the window fell inside that user's outage or an app-wide 429.
API calls count recently-played requests (failed ones too) and token refreshes.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from app.archival import cadence, failures
from app.archival.page import find_gap
from app.config import ArchivalSettings
from app.simulator.listening import PROFILES
from app.simulator.world import FaultRule, SimAccount, World, generated_accounts
from app.spotify.errors import FailureKind

T0_MS = int(datetime(2026, 3, 2, tzinfo=timezone.utc).timestamp() * 1000)  # a Monday
MINUTE_MS = 60_000
TOKEN_REFRESH_AFTER_MS = 55 * MINUTE_MS  # tokens live 60 min; refreshed with < 5 min left


def _unit(*parts) -> float:
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Faults:
    seed: int
    transient_rate: float = 0.015
    outages: dict[str, tuple[int, int]] = field(default_factory=dict)  # user -> (start, end)
    rate_limits: list[tuple[int, int]] = field(default_factory=list)  # app-wide (start, end)

    @classmethod
    def generate(cls, seed: int, accounts: list[SimAccount], start_ms: int, end_ms: int) -> Faults:
        rng = random.Random(f"faults:{seed}")
        faults = cls(seed)
        span = end_ms - start_ms
        for account in rng.sample(accounts, max(1, len(accounts) // 50)):
            begin = start_ms + int(rng.random() * span)
            faults.outages[account.key] = (begin, begin + 45 * MINUTE_MS)
        for _ in range(4):
            begin = start_ms + int(rng.random() * span)
            faults.rate_limits.append((begin, begin + rng.randint(60, 900) * 1000))
        return faults

    def rate_limited_until(self, t: int) -> int | None:
        for begin, end in self.rate_limits:
            if begin <= t < end:
                return end
        return None

    def failure(self, user: str, t: int) -> str | None:
        outage = self.outages.get(user)
        if outage and outage[0] <= t < outage[1]:
            return FailureKind.SERVER
        roll = _unit(self.seed, user, t // 1000)
        if roll < self.transient_rate * 0.6:
            return FailureKind.SERVER
        if roll < self.transient_rate * 0.9:
            return FailureKind.NETWORK  # timeout
        if roll < self.transient_rate:
            return FailureKind.BAD_DATA  # malformed body
        return None


@dataclass
class UserState:
    account: SimAccount
    cursor: int | None = None
    rate: cadence.ListeningRate = field(default_factory=cadence.ListeningRate)
    failure_kind: str | None = None
    failures: int = 0
    token_at: int | None = None
    archive: set = field(default_factory=set)
    gaps: int = 0
    late: bool = False
    interval_ms: int | None = None


class Policy:
    name = "?"

    def first_delay_ms(self, rng: random.Random) -> int:
        raise NotImplementedError

    def after_success(self, user: UserState, t: int, rng: random.Random) -> int:
        raise NotImplementedError

    def after_failure(self, user: UserState, kind: str, t: int) -> int:
        raise NotImplementedError


class Adaptive(Policy):
    name = "adaptive"

    def __init__(self, settings: ArchivalSettings):
        self.settings = settings

    def first_delay_ms(self, rng):
        return int(cadence.first_poll_delay(rng).total_seconds() * 1000)

    def _interval(self, user, t, rng) -> timedelta:
        now = datetime.fromtimestamp(t / 1000, tz=timezone.utc)
        last_play = datetime.fromtimestamp(user.cursor / 1000, tz=timezone.utc) if user.cursor else None
        previous = timedelta(milliseconds=user.interval_ms) if user.interval_ms else None
        return cadence.next_interval(user.rate, "free", self.settings, now, rng, last_play=last_play,
                                     previous=previous)

    def after_success(self, user, t, rng):
        user.interval_ms = int(self._interval(user, t, rng).total_seconds() * 1000)
        return user.interval_ms

    def after_failure(self, user, kind, t):
        safe = self._interval(user, t, random.Random(t))
        verdict = failures.judge(kind, user.failures, self.settings, safe_interval=safe)
        return int(verdict.retry_after.total_seconds() * 1000)


class Fixed(Policy):
    def __init__(self, minutes: int):
        self.interval_ms = minutes * MINUTE_MS
        self.name = f"fixed_{minutes}m"

    def first_delay_ms(self, rng):
        return int(rng.random() * self.interval_ms)

    def after_success(self, user, t, rng):
        return self.interval_ms

    def after_failure(self, user, kind, t):
        return self.interval_ms


def simulate(world: World, accounts: list[SimAccount], late_users: set[str], policy: Policy, faults: Faults,
             start_ms: int, end_ms: int, seed: int) -> dict:
    rng = random.Random(f"policy:{seed}")
    users = {a.key: UserState(a, late=a.key in late_users) for a in accounts}
    queue = [(start_ms + policy.first_delay_ms(rng), key) for key in users]
    heapq.heapify(queue)
    calls = refreshes = 0
    paused_until = 0

    def poll(user: UserState, t: int) -> int | None:
        """One poll at t; returns the delay to the next one (None: the drain poll)."""
        nonlocal calls, refreshes, paused_until
        if user.token_at is None or t - user.token_at >= TOKEN_REFRESH_AFTER_MS:
            refreshes += 1
            user.token_at = t
        calls += 1
        limited = faults.rate_limited_until(t)
        if limited is not None:  # app-wide pause; never counts against the user
            paused_until = max(paused_until, limited)
            return limited - t
        kind = faults.failure(user.account.key, t)
        if kind is not None:
            user.failures = failures.consecutive(user.failure_kind, user.failures, kind)
            user.failure_kind = kind
            return policy.after_failure(user, kind, t)
        user.failures, user.failure_kind = 0, None
        window = world.recently_played(user.account, t, limit=50)
        if window:
            played = [p.played_at_ms for p in window]
            if find_gap(len(window), played[-1], user.cursor):
                user.gaps += 1
            # The product inserts the whole page with ON CONFLICT DO NOTHING. Without late
            # arrivals everything at or before the cursor is already archived, so only
            # newer items can add anything; with them, every item is considered.
            floor = user.cursor if (user.cursor is not None and not user.late) else -1
            new = {(p.track_index, p.played_at_ms) for p in window if p.played_at_ms > floor} - user.archive
            late_arrivals = user.cursor is not None and any(k[1] < user.cursor for k in new)
            user.archive |= new
            user.cursor = max(user.cursor or 0, played[0])
            if isinstance(policy, Adaptive):
                user.rate = cadence.observe(user.rate, played, datetime.fromtimestamp(t / 1000, tz=timezone.utc),
                                            late_arrivals=late_arrivals)
        return policy.after_success(user, t, rng)

    while queue:
        t, key = heapq.heappop(queue)
        if t >= end_ms:
            continue
        if t < paused_until:  # spread the backlog over the minute after the pause
            heapq.heappush(queue, (paused_until + int(rng.random() * MINUTE_MS), key))
            continue
        heapq.heappush(queue, (t + max(poll(users[key], t), 1), key))
    for user in users.values():  # everyone is polled once more as the week ends, until it works
        t = end_ms
        while (user.failures or t == end_ms) and t < end_ms + 30 * MINUTE_MS:
            poll(user, t)
            t += MINUTE_MS
    return {"api_calls": calls + refreshes, "polls": calls, "refreshes": refreshes, "users": users,
            "gaps": sum(u.gaps for u in users.values())}


def api_visible(world: World, account: SimAccount, late: FaultRule | None, faults: Faults, start_ms: int,
                end_ms: int) -> set:
    """(track, played_at) of every reported play ending in [start, end] that the API could
    have returned: it was in the 50-play window at some moment when Spotify was answering
    for this user (not inside their outage, nor an app-wide 429)."""
    plays = [p for p in world.plays_between(account, start_ms - 2 * 86_400_000, end_ms + 1) if p.visible]
    appears = [world.appears_at(p, late) for p in plays]
    blackouts = sorted(faults.rate_limits + ([faults.outages[account.key]] if account.key in faults.outages else []))
    shown = set()
    for i, p in enumerate(plays):
        if p.played_at_ms < start_ms or appears[i] > end_ms:
            continue
        # In the window from its arrival until 50 newer plays have arrived. Plays that
        # arrived no later than this one can only have ended before it arrived.
        if late is None:  # arrival order is end order: it leaves when the 50th newer play ends
            leaves = plays[i + 50].played_at_ms if i + 50 < len(plays) else end_ms + 1
        else:
            newer = sorted(appears[j] for j in range(i + 1, len(plays)))
            if sum(1 for a in newer if a <= appears[i]) >= 50:
                continue  # arrived behind 50 newer plays: never shown
            leaves = newer[49] if len(newer) >= 50 else end_ms + 1
        if not _covered(appears[i], min(leaves, end_ms + 1), blackouts):
            shown.add((p.track_index, p.played_at_ms))
    return shown


def _covered(begin: int, end: int, blackouts: list[tuple[int, int]]) -> bool:
    """Is [begin, end) entirely inside the union of the blackout windows?"""
    for b, e in blackouts:
        if b <= begin < e:
            begin = e
            if begin >= end:
                return True
    return begin >= end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--policies", default="adaptive,fixed_60m,fixed_2m")
    args = parser.parse_args()

    started = time.monotonic()
    accounts = generated_accounts(args.users, args.seed)
    world = World(seed=args.seed, accounts=accounts, client_id="bench", client_secret="bench")
    start_ms, end_ms = T0_MS, T0_MS + int(args.days * 86_400_000)
    rng = random.Random(f"late:{args.seed}")
    late_rules = {}
    for account in rng.sample(accounts, max(1, len(accounts) // 10)):
        begin = start_ms + int(rng.random() * (end_ms - start_ms - 4 * 3_600_000))
        late_rules[account.key] = FaultRule(kind="late_plays", delay_s=2 * 3600, fraction=0.3,
                                            from_ms=begin, to_ms=begin + 3 * 3_600_000)
        world.set_faults(account.key, [late_rules[account.key]])
    late_users = set(late_rules)
    faults = Faults.generate(args.seed, accounts, start_ms, end_ms)

    truth = {a.key: api_visible(world, a, late_rules.get(a.key), faults, start_ms, end_ms) for a in accounts}
    print(f"listening generated: {sum(map(len, truth.values()))} API-visible plays "
          f"({time.monotonic() - started:.1f} s)", file=sys.stderr)

    policies = {"adaptive": Adaptive(ArchivalSettings()), "fixed_60m": Fixed(60), "fixed_2m": Fixed(2)}
    results = {}
    for name in args.policies.split(","):
        t = time.monotonic()
        run = simulate(world, accounts, late_users, policies[name], faults, start_ms, end_ms, args.seed)
        visible: Counter = Counter()
        archived: Counter = Counter()
        duplicates = 0
        for key, user in run["users"].items():
            profile = user.account.profile
            shown = truth[key]
            in_week = {k for k in user.archive if start_ms <= k[1] <= end_ms}
            visible[profile] += len(shown)
            archived[profile] += len(in_week & shown)
            if user.archive:
                earliest = min(k[1] for k in user.archive)
                true_plays = {(p.track_index, p.played_at_ms)
                              for p in world.plays_between(user.account, earliest, end_ms + 1)}
                duplicates += len(user.archive - true_plays)  # entries that are not exactly one real play
        results[name] = {
            "api_calls": run["api_calls"],
            "polls": run["polls"],
            "token_refreshes": run["refreshes"],
            "duplicates": duplicates,
            "gaps_recorded": run["gaps"],
            "profiles": {p: {"visible": visible[p], "archived": archived[p],
                             "ratio": round(archived[p] / visible[p], 6) if visible[p] else None}
                         for p in PROFILES},
        }
        print(f"{name}: {run['api_calls']} API calls, ratio by profile "
              f"{ {p: v['ratio'] for p, v in results[name]['profiles'].items()} } ({time.monotonic() - t:.1f} s)",
              file=sys.stderr)

    summary: dict = {"users": args.users, "days": args.days, "seed": args.seed, "policies": results}
    if "adaptive" in results and "fixed_2m" in results:
        summary["adaptive_calls_vs_fixed_2m"] = round(results["adaptive"]["api_calls"] /
                                                      results["fixed_2m"]["api_calls"], 4)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
