"""What a failed poll means for the user: when to try again, and when to give up.

Each failure class has a circuit rule (config.FailureRule: cooldown base, cap, and how
many consecutive failures deactivate the user). The cooldown doubles with each
consecutive failure of the same class, up to `max_cooldown_multiplier`× the base and
never beyond the cap.

Transient classes (network, Spotify 5xx) get one quick retry before the circuit opens:
most such failures are a blip. A second consecutive failure opens the circuit, but the
retry never waits longer than the user's safe poll interval (cadence.py): those failures
are Spotify's, not the user's, and while someone listens fast a long cooldown would let
plays scroll out of the 50-play window once Spotify recovers. Consecutive failures still
count towards deactivation.

Not here on purpose: rate limits (429) are the app's problem, never a user's, and
`invalid_grant` needs no cooldown: the user is marked `reauth_required` at once
(spotify/tokens.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..config import ArchivalSettings
from ..spotify.errors import FailureKind

TRANSIENT = {FailureKind.NETWORK, FailureKind.SERVER}
QUICK_RETRY = timedelta(minutes=1)


@dataclass(frozen=True)
class Verdict:
    retry_after: timedelta
    circuit_open: bool
    deactivate: bool


def consecutive(previous_kind: str | None, previous_count: int, kind: str) -> int:
    """Failures count consecutively per class: a different class starts a new run."""
    return previous_count + 1 if previous_kind == kind else 1


def judge(kind: str, count: int, settings: ArchivalSettings, *, safe_interval: timedelta | None = None) -> Verdict:
    """What to do after the `count`-th consecutive failure of class `kind`. `safe_interval`
    is the interval cadence.py would choose for the user after a success."""
    if kind == FailureKind.RATE_LIMIT:
        raise ValueError("rate limits pause the whole app; they are not a user's failure")
    rule = settings.failures.get(kind) or settings.failures[FailureKind.UNKNOWN]
    if count >= rule.deactivate_after:
        return Verdict(timedelta(seconds=rule.cap_s), circuit_open=True, deactivate=True)
    opening = count - 1 if kind in TRANSIENT else count  # the quick retry does not count as open
    if opening <= 0:
        return Verdict(QUICK_RETRY, circuit_open=False, deactivate=False)
    multiplier = min(2 ** (opening - 1), settings.max_cooldown_multiplier)
    cooldown = timedelta(seconds=min(rule.base_s * multiplier, rule.cap_s))
    if kind in TRANSIENT and safe_interval is not None:
        cooldown = min(cooldown, max(safe_interval, QUICK_RETRY))
    return Verdict(cooldown, circuit_open=True, deactivate=False)
