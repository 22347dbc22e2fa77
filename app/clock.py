"""Time as an input. Domain code takes a `clock` callable instead of calling `now()`, so
scheduling and polling can run in virtual time (benchmarks) and tests control time."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
