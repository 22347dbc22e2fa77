"""Time, in one place: the injectable clock, and every timestamp Spotify writes.

**Now.** Domain code never calls `datetime.now()`. It takes a `clock` (a callable that
returns an aware UTC datetime) or, inside a Flask app context, calls `now()`, which asks
the app's clock (`create_app(clock=...)`). Production uses the wall clock; tests hand the
app the simulator's clock, so "today", "the last 7 days" and token expiry follow the
simulated world, whatever the date the suite runs on; benchmarks run polling in virtual
time the same way.

**Instants** that identify plays are Unix milliseconds (`int`): a play's `played_at` is
part of its identity, and a float or a datetime rounded to the second would not match the
same play fetched again. `ms_to_datetime` / `datetime_to_ms` convert exactly.

**Spotify's timestamps** (see docs/spotify.md), all UTC:

    played_at   Web API recently-played   2025-10-22T23:00:36.512Z   the END of a play
    ts          extended streaming history 2025-10-22T23:00:36Z       the end, to the second
    endTime     account-data history      2020-12-22 16:43           the end, to the minute

Real files also carry: no fraction or 1-9 fraction digits, an offset (`+00:00`, `+0000`)
instead of `Z`, a space instead of `T`, seconds in `endTime`. The export formats are UTC
by definition, so a missing zone there means UTC; an API answer always carries one, and
one without is refused rather than guessed.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock: the default `Clock`."""
    return datetime.now(timezone.utc)


def now() -> datetime:
    """The current app's clock inside an app context (requests, jobs, commands), else the
    wall clock."""
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app.extensions.get("clock", utcnow)()
    return utcnow()


# --- time zones ----------------------------------------------------------------------------------


def zone(name: str | None) -> ZoneInfo:
    """The zone called `name`, or UTC for none or an unknown one (a page still renders)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_zone(name: str) -> bool:
    return name in zone_names()


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


# --- instants as Unix milliseconds --------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def ms_to_datetime(ms: int) -> datetime:
    """Exact (integer arithmetic, no float); OverflowError outside years 1-9999."""
    return _EPOCH + ms * _MS


def datetime_to_ms(moment: datetime) -> int:
    """Exact; sub-millisecond digits are cut, never rounded up (a play's identity)."""
    return (moment - _EPOCH) // _MS


def iso_from_ms(ms: int | None) -> str | None:
    return ms_to_datetime(ms).isoformat() if ms is not None else None


# --- Spotify's timestamps -------------------------------------------------------------------------

_INSTANT = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?"
    r"(Z|[+-]\d\d(?::?\d\d)?)?",
    re.ASCII,
)


def played_at_ms(value: Any) -> int | None:
    """The Web API's `played_at` -> Unix ms; None if unreadable or without a zone."""
    return _instant_ms(value, zone_required=True)


def ts_ms(value: Any) -> int | None:
    """Extended streaming history's `ts` -> Unix ms; None if unreadable."""
    if type(value) is str and len(value) == 20 and value[10] == "T" and value[19] == "Z":
        ms = _sliced_ms(value[:19])
        if ms is not None:
            return ms
    return _instant_ms(value, zone_required=False)


def end_time_ms(value: Any) -> int | None:
    """Account data's `endTime` ("2020-12-22 16:43", UTC) -> Unix ms; None if unreadable."""
    if type(value) is str and len(value) == 16 and value[10] == " ":
        ms = _sliced_ms(value + ":00")
        if ms is not None:
            return ms
    return _instant_ms(value, zone_required=False)


def _sliced_ms(value: str) -> int | None:
    """"YYYY-MM-DD?HH:MM:SS" (UTC) -> Unix ms by slicing; None for anything else, which
    the regex then reads (or refuses). Export files hold hundreds of thousands of rows in
    the shapes Spotify writes today, and the regex and datetime per row cost a second."""
    clock = value[11:13] + value[14:16] + value[17:19]
    if value[13] != ":" or value[16] != ":" or not (clock.isdigit() and clock.isascii()):
        return None
    day = _day_ms(value[:10])  # the day from a cache, the time of day by arithmetic
    hours, minutes, seconds = int(clock[:2]), int(clock[2:4]), int(clock[4:])
    if day is None or hours > 23 or minutes > 59 or seconds > 59:
        return None
    return day + hours * 3_600_000 + minutes * 60_000 + seconds * 1000


def _instant_ms(value: Any, *, zone_required: bool) -> int | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    match = _INSTANT.fullmatch(value)
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone is None and zone_required:
        return None
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                          tzinfo=timezone.utc)
    except ValueError:
        return None
    ms = int(moment.timestamp()) * 1000 + int((fraction or "0")[:3].ljust(3, "0"))
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "").ljust(4, "0")
        offset_min = int(digits[:2]) * 60 + int(digits[2:])
        if int(digits[:2]) > 23 or int(digits[2:]) > 59:
            return None
        ms -= (1 if zone[0] == "+" else -1) * offset_min * 60_000
    return ms


@lru_cache(maxsize=8192)
def _day_ms(day: str) -> int | None:
    digits = day[:4] + day[5:7] + day[8:]
    if day[4] != "-" or day[7] != "-" or not (digits.isdigit() and digits.isascii()):
        return None
    try:
        return int(datetime(int(day[:4]), int(day[5:7]), int(day[8:10]), tzinfo=timezone.utc).timestamp()) * 1000
    except ValueError:
        return None
