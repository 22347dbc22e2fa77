"""The simulator's state: accounts, their listening, tokens, clock, faults and counters.

The HTTP layer (app.py) is a thin translation of Spotify's wire format onto this object,
so tests and benchmarks can also drive a `World` directly (in virtual time) while the
product talks to it over real HTTP.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import random
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .catalogue import Catalogue
from .listening import DAY_MS, PROFILES, Listening, SimPlay

log = logging.getLogger(__name__)

SPOTIFY_SCOPES = {"user-read-recently-played", "user-top-read", "user-read-email", "user-read-private"}
MAX_LOOKBACK_DAYS = 120  # how far back to search for a quiet listener's last 50 plays
SIX_MONTHS_S = 183 * 86_400


@dataclass
class SimAccount:
    id: str  # Spotify's legacy user id
    display_name: str
    profile: str
    account_id: str | None  # new in 2026; absent for some accounts to exercise the fallback
    allow_listed: bool = True
    tz_offset_min: int = 0

    @property
    def key(self) -> str:
        return self.account_id or self.id

    def public(self) -> dict:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "display_name": self.display_name,
            "profile": self.profile,
            "allow_listed": self.allow_listed,
        }


def default_accounts() -> list[SimAccount]:
    """The accounts the consent page offers in demo mode and tests."""
    return [
        SimAccount("riley.demo", "Riley Demo", "commuter", "sim-acct-riley"),
        SimAccount("sam.binge", "Sam Binge", "binge", "sim-acct-sam"),
        SimAccount("jo.light", "Jo Light", "light", "sim-acct-jo", tz_offset_min=60),
        SimAccount("max.skips", "Max Skips", "skip_heavy", "sim-acct-max", tz_offset_min=-300),
        SimAccount("legacy.lee", "Lee Legacy", "light", None),  # /v1/me without account_id
        SimAccount("dana.outsider", "Dana Outsider", "commuter", "sim-acct-dana", allow_listed=False),
    ]


def generated_accounts(n: int, seed: int, profiles: tuple[str, ...] = PROFILES) -> list[SimAccount]:
    """n accounts with profiles in equal shares, for benchmarks."""
    rng = random.Random(f"accounts:{seed}")
    return [
        SimAccount(f"user{i:05d}", f"Listener {i}", profiles[i % len(profiles)], f"sim-acct-{i:05d}",
                   tz_offset_min=rng.choice((-480, -300, 0, 60, 120, 330, 540)))
        for i in range(n)
    ]


APP = "(app)"  # the account key of client-credentials grants
APP_ACCOUNT = SimAccount(id=APP, display_name="(app token)", profile="light", account_id=None)


class SimClock:
    """Real time by default; can be offset, frozen and advanced (virtual time)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._frozen_ms: int | None = None
        self._offset_ms = 0

    def now_ms(self) -> int:
        with self._lock:
            if self._frozen_ms is not None:
                return self._frozen_ms
            return int(time.time() * 1000) + self._offset_ms

    def set(self, when_ms: int, *, frozen: bool) -> None:
        with self._lock:
            if frozen:
                self._frozen_ms = when_ms
            else:
                self._frozen_ms = None
                self._offset_ms = when_ms - int(time.time() * 1000)

    def advance(self, ms: int) -> None:
        with self._lock:
            if self._frozen_ms is not None:
                self._frozen_ms += ms
            else:
                self._offset_ms += ms

    def reset(self) -> None:
        with self._lock:
            self._frozen_ms = None
            self._offset_ms = 0

    def describe(self) -> dict:
        now = self.now_ms()
        return {"now_ms": now, "now": iso_ms(now), "frozen": self._frozen_ms is not None}


@dataclass
class FaultRule:
    """One injected failure. `remaining=None` means every matching request, forever.

    kinds: rate_limit (429 + Retry-After), server_error (status, default 503),
    timeout (hold the request `delay_s`, then 504), slow (hold `delay_s`, then answer),
    malformed (200 with a broken body), unauthorized (401), revoked (refresh -> invalid_grant
    and API 401 from then on), late_plays (a `fraction` of the plays ending between
    `from_ms` and `to_ms`, or at any time if those are unset, appear up to `delay_s` late).
    """

    kind: str
    probability: float = 1.0
    remaining: int | None = None
    retry_after: int = 30
    status: int = 503
    delay_s: float = 0.0
    fraction: float = 1.0  # late_plays: the share of plays that arrive late
    from_ms: int | None = None  # late_plays: the incident's window
    to_ms: int | None = None
    endpoints: tuple[str, ...] = ()  # empty: every API endpoint; else names like "recently_played"

    KINDS = ("rate_limit", "server_error", "timeout", "slow", "malformed", "unauthorized", "revoked", "late_plays")

    @classmethod
    def from_json(cls, data: dict) -> FaultRule:
        if data.get("kind") not in cls.KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(cls.KINDS)}")
        allowed = {"kind", "probability", "remaining", "retry_after", "status", "delay_s", "fraction", "endpoints",
                   "from_ms", "to_ms"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        data = dict(data)
        if "endpoints" in data:
            data["endpoints"] = tuple(data["endpoints"])
        return cls(**data)


@dataclass
class SimConfig:
    client_id: str
    client_secret: str
    rotate_refresh_tokens: bool = False
    batch_endpoints: bool = True  # False: batch catalogue calls answer 403 like dev-mode apps
    dev_mode_fields: bool = False  # True: no genres/popularity/followers, as for dev-mode apps
    access_token_ttl_s: int = 3600
    refresh_token_lifetime_s: int = SIX_MONTHS_S  # Spotify: 6 months from authorisation
    latency_ms: int = 0  # added to every API and token response

    UPDATABLE = ("rotate_refresh_tokens", "batch_endpoints", "dev_mode_fields", "access_token_ttl_s",
                 "refresh_token_lifetime_s", "latency_ms")


@dataclass
class _Grant:
    account_key: str
    scope: str
    authorized_at_ms: int
    expires_at_ms: int = 0
    revoked: bool = False


class World:
    """With `state_path`, the tokens it has issued are kept in that file (written whenever
    they change, read at start): a restarted simulator still honours them, as Spotify
    would, so demo users archived before a restart go on being archived."""

    def __init__(self, *, seed: int = 42, accounts: list[SimAccount] | None = None,
                 client_id: str, client_secret: str, catalogue: Catalogue | None = None,
                 state_path: Path | None = None):
        self.seed = seed
        self.catalogue = catalogue or Catalogue.generate(seed)
        self.listening = Listening(self.catalogue, seed)
        self.accounts: dict[str, SimAccount] = {}
        self.accounts_by_id: dict[str, SimAccount] = {}
        for account in accounts or default_accounts():
            self.add_account(account)
        self.clock = SimClock()
        self.config = SimConfig(client_id=client_id, client_secret=client_secret)
        self.stats: Counter[str] = Counter()
        self.requests: deque[tuple[float, str]] = deque(maxlen=200_000)
        self._lock = threading.RLock()
        self._codes: dict[str, tuple[str, str, str, int]] = {}  # code -> (account, redirect_uri, scope, expiry)
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._faults: dict[str | None, list[FaultRule]] = {}  # None: every account
        self._fault_rng = random.Random(f"faults:{seed}")
        self._state_path = state_path
        self._load_tokens()

    # --- accounts & listening ------------------------------------------------------------

    def add_account(self, account: SimAccount) -> None:
        if account.profile not in PROFILES:
            raise ValueError(f"unknown profile {account.profile!r}")
        self.accounts[account.key] = account
        self.accounts_by_id[account.id] = account

    def account(self, key: str) -> SimAccount | None:
        return self.accounts.get(key) or self.accounts_by_id.get(key)

    def plays_between(self, account: SimAccount, start_ms: int, end_ms: int) -> list[SimPlay]:
        """Ground truth: every play ending in [start_ms, end_ms), reported or not, oldest first."""
        out: list[SimPlay] = []
        shift = account.tz_offset_min * 60_000
        for day in range((start_ms + shift) // DAY_MS, (end_ms + shift) // DAY_MS + 1):
            out.extend(p for p in self._day(account, day) if start_ms <= p.played_at_ms < end_ms)
        return out

    def recent_visible(self, account: SimAccount, now_ms: int, limit: int = 50) -> list[SimPlay]:
        """What recently-played can see at `now_ms`: the last `limit` reported plays, newest first."""
        late = self._late_rule(account)
        found: list[SimPlay] = []
        day = (now_ms + account.tz_offset_min * 60_000) // DAY_MS
        for _ in range(MAX_LOOKBACK_DAYS):
            plays, ends = self._visible_day(account, day)
            upto = bisect.bisect_right(ends, now_ms)
            if late is None:
                # Days never overlap, so the newest plays of this day precede all earlier days'.
                found.extend(reversed(plays[max(0, upto - (limit - len(found))):upto]))
            else:
                found.extend(p for p in reversed(plays[:upto]) if self.appears_at(p, late) <= now_ms)
            if len(found) >= limit:
                break  # every play of an earlier day is older than all of these
            day -= 1
        return found[:limit]

    def recently_played(self, account: SimAccount, now_ms: int, *, limit: int = 50, after: int | None = None,
                        before: int | None = None) -> list[SimPlay]:
        """Spotify's recently-played page: only the last 50 reported plays exist; `after`
        and `before` filter within them; newest first; at most `limit`."""
        items = self.recent_visible(account, now_ms)
        if after is not None:
            items = [p for p in items if p.played_at_ms > after]
        if before is not None:
            items = [p for p in items if p.played_at_ms < before]
        return items[:limit]

    def appears_at(self, play: SimPlay, late: FaultRule | None) -> int:
        if late is None:
            return play.played_at_ms
        if (late.from_ms is not None and play.played_at_ms < late.from_ms) or (
                late.to_ms is not None and play.played_at_ms >= late.to_ms):
            return play.played_at_ms
        digest = hashlib.blake2b(f"{play.played_at_ms}:{play.track_index}".encode(), digest_size=8).digest()
        roll, spread = digest[:4], digest[4:]
        if int.from_bytes(roll, "big") / 2**32 < late.fraction:
            # Delays spread over (0, delay_s]: incidents hold plays back by varying amounts.
            return play.played_at_ms + int(late.delay_s * 1000 * (0.1 + 0.9 * int.from_bytes(spread, "big") / 2**32))
        return play.played_at_ms

    def _day(self, account: SimAccount, day: int) -> tuple[SimPlay, ...]:
        return self.listening.day(account.key, account.profile, account.tz_offset_min, day)

    def _visible_day(self, account: SimAccount, day: int) -> tuple[tuple[SimPlay, ...], list[int]]:
        return self.listening.visible_day(account.key, account.profile, account.tz_offset_min, day)

    # --- OAuth -------------------------------------------------------------------------

    def issue_code(self, account: SimAccount, redirect_uri: str, scope: str) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = (account.key, redirect_uri, scope, self.clock.now_ms() + 600_000)
        return code

    def redeem_code(self, code: str, redirect_uri: str) -> tuple[dict, None] | tuple[None, str]:
        """Authorization codes are single-use and bound to the redirect URI."""
        with self._lock:
            entry = self._codes.pop(code, None)
        if entry is None:
            return None, "Invalid authorization code"
        account_key, bound_uri, scope, expiry = entry
        if bound_uri != redirect_uri:
            return None, "Invalid redirect URI"
        if expiry < self.clock.now_ms():
            return None, "Authorization code expired"
        now = self.clock.now_ms()
        grant = _Grant(account_key, scope, authorized_at_ms=now)
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[refresh] = grant
            return self._new_access(grant) | {"refresh_token": refresh}, None

    def refresh(self, refresh_token: str) -> tuple[dict, None] | tuple[None, str]:
        with self._lock:
            grant = self._refresh.get(refresh_token)
            if grant is not None:
                self.stats[f"token:refresh:{grant.account_key}"] += 1
            if grant is None or grant.revoked:
                return None, "Invalid refresh token"
            if self.clock.now_ms() - grant.authorized_at_ms > self.config.refresh_token_lifetime_s * 1000:
                return None, "Refresh token expired"
            if self._revoked_by_fault(grant.account_key):
                grant.revoked = True
                return None, "Refresh token revoked"
            body = self._new_access(grant)
            if self.config.rotate_refresh_tokens:
                grant.revoked = True  # the old one dies the moment the new one is issued
                new_refresh = secrets.token_urlsafe(32)
                self._refresh[new_refresh] = replace(grant, revoked=False)
                body["refresh_token"] = new_refresh
                self._save_tokens()
            return body, None

    def app_token(self) -> dict:
        """Client-credentials grant: an app token, good for catalogue endpoints only."""
        return self._new_access(_Grant(APP, "", authorized_at_ms=self.clock.now_ms()))

    def _new_access(self, grant: _Grant) -> dict:
        token = secrets.token_urlsafe(32)
        ttl = self.config.access_token_ttl_s
        with self._lock:
            self._access[token] = replace(grant, expires_at_ms=self.clock.now_ms() + ttl * 1000)
            if grant.account_key != APP:
                self._save_tokens()
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": grant.scope}

    def account_for_access_token(self, token: str) -> tuple[SimAccount | None, str | None, str]:
        """(account, error message, scope) for a bearer token; the account is APP_ACCOUNT
        for an app (client-credentials) token."""
        with self._lock:
            grant = self._access.get(token)
        if grant is None or grant.revoked:
            return None, "Invalid access token", ""
        if grant.expires_at_ms <= self.clock.now_ms():
            return None, "The access token expired", ""
        if grant.account_key == APP:
            return APP_ACCOUNT, None, ""
        if self._revoked_by_fault(grant.account_key):
            return None, "Invalid access token", ""
        return self.accounts.get(grant.account_key), None, grant.scope

    def revoke(self, account_key: str) -> int:
        """Revoke every token of an account (what a user removing the app does)."""
        revoked = 0
        with self._lock:
            for grant in list(self._refresh.values()) + list(self._access.values()):
                if grant.account_key == account_key and not grant.revoked:
                    grant.revoked = True
                    revoked += 1
            self._save_tokens()
        return revoked

    def _load_tokens(self) -> None:
        if self._state_path is None or not self._state_path.exists():
            return
        try:
            state = json.loads(self._state_path.read_text())
            self._refresh = {t: _Grant(**g) for t, g in state["refresh"].items()}
            self._access = {t: _Grant(**g) for t, g in state["access"].items()}
        except (ValueError, KeyError, TypeError) as exc:  # a damaged file: start afresh, as after a revocation
            log.warning("simulator: ignoring unreadable token state %s (%s)", self._state_path, exc)

    def _save_tokens(self) -> None:
        """Under self._lock. Expired access tokens and dead refresh tokens are dropped."""
        if self._state_path is None:
            return
        now = self.clock.now_ms()
        self._access = {t: g for t, g in self._access.items() if g.expires_at_ms > now and not g.revoked}
        self._refresh = {t: g for t, g in self._refresh.items() if not g.revoked}
        state = {"refresh": {t: asdict(g) for t, g in self._refresh.items() if g.account_key != APP},
                 "access": {t: asdict(g) for t, g in self._access.items() if g.account_key != APP}}
        temporary = self._state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(self._state_path)  # whole or not at all

    # --- faults --------------------------------------------------------------------------

    def set_faults(self, account_key: str | None, rules: list[FaultRule]) -> None:
        with self._lock:
            self._faults[account_key] = list(rules)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def fault_for(self, account_key: str | None, endpoint: str) -> FaultRule | None:
        """The fault (if any) to apply to this request; consumes a `remaining` count."""
        with self._lock:
            for key in (account_key, None):
                for rule in self._faults.get(key, []):
                    if rule.kind in ("late_plays", "revoked"):
                        continue
                    if rule.endpoints and endpoint not in rule.endpoints:
                        continue
                    if rule.remaining is not None and rule.remaining <= 0:
                        continue
                    if self._fault_rng.random() >= rule.probability:
                        continue
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    self.stats[f"fault:{rule.kind}"] += 1
                    return rule
        return None

    def _late_rule(self, account: SimAccount) -> FaultRule | None:
        with self._lock:
            for key in (account.key, None):
                for rule in self._faults.get(key, []):
                    if rule.kind == "late_plays":
                        return rule
        return None

    def _revoked_by_fault(self, account_key: str) -> bool:
        with self._lock:
            return any(rule.kind == "revoked" for key in (account_key, None) for rule in self._faults.get(key, []))

    def faults_json(self) -> dict:
        with self._lock:
            return {("*" if k is None else k): [r.__dict__ | {"endpoints": list(r.endpoints)} for r in rules]
                    for k, rules in self._faults.items()}

    # --- counters ------------------------------------------------------------------------

    def log_request(self, endpoint: str) -> None:
        """When each API request arrived (wall clock): tests check nothing reached Spotify
        during a rate-limit pause."""
        self.requests.append((time.time(), endpoint))

    def grant_for(self, account: SimAccount, scope: str = "user-read-recently-played") -> dict:
        """Tokens as if the account had just consented (a shortcut for tests and benchmarks)."""
        code = self.issue_code(account, "http://127.0.0.1/", scope)
        body, error = self.redeem_code(code, "http://127.0.0.1/")
        assert error is None
        return body

    def count(self, name: str, account_key: str | None = None) -> None:
        with self._lock:
            self.stats[name] += 1
            if account_key:
                self.stats[f"{name}:{account_key}"] += 1


def iso_ms(ms: int) -> str:
    """Spotify's played_at format: 2025-10-22T23:00:36.512Z."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
