"""Periods as a person means them (in their time zone) turned into exact UTC instants.

Every boundary is a local midnight, so every period is a whole number of local days: the
unit `listening_hours` is kept in (in the user's zone). DST changes are handled by
zoneinfo: a local day can last 23 or 25 hours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

PERIODS = {
    "today": "Today",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "this_year": "This year",
    "last_year": "Last year",
    "all": "All time",
    "custom": "Custom range",
}
DEFAULT_PERIOD = "30d"
DAYS = {"today": 1, "7d": 7, "30d": 30, "90d": 90}
EARLIEST = date(2000, 1, 1)  # nothing Spotify reports is older


class PeriodError(ValueError):
    """A period that cannot be shown; the message says why."""


@dataclass(frozen=True)
class Period:
    key: str
    start: datetime | None  # UTC; None: from the beginning
    end: datetime  # UTC, exclusive
    first_day: date | None  # local, inclusive
    last_day: date  # local, inclusive
    tz: ZoneInfo

    @property
    def label(self) -> str:
        if self.key != "custom":
            return PERIODS[self.key]
        if self.first_day == self.last_day:
            return f"{self.first_day:%-d %b %Y}"
        return f"{self.first_day:%-d %b %Y} – {self.last_day:%-d %b %Y}"

    @property
    def days(self) -> int | None:
        return None if self.first_day is None else (self.last_day - self.first_day).days + 1

    def previous(self) -> Period | None:
        """The period of equal length just before, for 'movement' (none for all time)."""
        if self.first_day is None:
            return None
        days = self.days
        return between(self.first_day - timedelta(days=days), self.first_day - timedelta(days=1), self.tz,
                       key="previous")

    def query(self) -> dict[str, str]:
        """URL parameters that reproduce this period."""
        if self.key == "custom":
            return {"period": "custom", "from": self.first_day.isoformat(), "to": self.last_day.isoformat()}
        return {"period": self.key}


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant a local day begins (the first existing instant, if DST skips midnight)."""
    moment = datetime.combine(day, time(0), tzinfo=tz)
    utc = moment.astimezone(timezone.utc)
    if utc.astimezone(tz).date() != day:  # midnight does not exist: the day starts later
        utc = datetime.combine(day, time(1), tzinfo=tz).astimezone(timezone.utc)
    return utc


def between(first_day: date, last_day: date, tz: ZoneInfo, key: str = "custom") -> Period:
    return Period(key, local_midnight(first_day, tz), local_midnight(last_day + timedelta(days=1), tz),
                  first_day, last_day, tz)


def parse_dates(raw_from: str | None, raw_to: str | None) -> tuple[date | None, date | None]:
    """Two dates from a form or the command line ("YYYY-MM-DD", blank = unbounded), in
    order; PeriodError with a message otherwise."""
    def one(raw: str | None, label: str) -> date | None:
        raw = (raw or "").strip() if isinstance(raw, str) else ""
        if not raw:
            return None
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw, re.ASCII):
            raise PeriodError(f"The {label} date must look like 2024-01-31.")
        try:
            value = date.fromisoformat(raw)
        except ValueError:
            raise PeriodError(f"The {label} date ({raw}) is not a real date.") from None
        if not 1900 <= value.year <= 9998:
            raise PeriodError(f"The {label} date must be between the years 1900 and 9998.")
        return value

    first, last = one(raw_from, "start"), one(raw_to, "end")
    if first and last and first > last:
        raise PeriodError("The start date is after the end date.")
    return first, last


def spanning(first_day: date | None, last_day: date, tz: ZoneInfo) -> Period:
    """Fixed dates (first_day None: from the first play), as kept by shares and reports."""
    if first_day is None:
        return Period("all", None, local_midnight(last_day + timedelta(days=1), tz), None, last_day, tz)
    return between(first_day, last_day, tz)


def resolve(key: str | None, tz: ZoneInfo, now: datetime, *, start: str | None = None,
            end: str | None = None) -> Period:
    """The period a request asks for. Raises PeriodError with a message for bad custom ranges."""
    key = key if key in PERIODS else DEFAULT_PERIOD
    today = now.astimezone(tz).date()
    if key in DAYS:
        return between(today - timedelta(days=DAYS[key] - 1), today, tz, key)
    if key == "this_year":
        return between(date(today.year, 1, 1), today, tz, key)
    if key == "last_year":
        return between(date(today.year - 1, 1, 1), date(today.year - 1, 12, 31), tz, key)
    if key == "all":
        return Period("all", None, local_midnight(today + timedelta(days=1), tz), None, today, tz)
    try:
        first, last = date.fromisoformat(start or ""), date.fromisoformat(end or "")
    except ValueError:
        raise PeriodError("Choose a start and an end date.") from None
    if first > last:
        first, last = last, first
    if last > today:
        last = today
    if first < EARLIEST or first > today:
        raise PeriodError(f"Choose dates between {EARLIEST:%-d %B %Y} and today.")
    return between(first, last, tz)

