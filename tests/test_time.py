"""app/time.py: Spotify's three timestamp formats, with the odd shapes real files carry, and
exact conversion between Unix milliseconds and datetimes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app import create_app
from app.stats.history import Cursor
from app.time import datetime_to_ms, end_time_ms, iso_from_ms, ms_to_datetime, now, played_at_ms, ts_ms, utcnow

MS = 1761174036512  # 2025-10-22T23:00:36.512Z
SECOND = 1761174036000  # the same, to the second
MINUTE = 1761174000000  # 2025-10-22T23:00Z


@pytest.mark.parametrize("text, ms", [
    ("2025-10-22T23:00:36.512Z", MS),
    ("2025-10-22T23:00:36Z", SECOND),  # no fraction
    ("2025-10-22T23:00:36.5Z", SECOND + 500),  # 1 digit
    ("2025-10-22T23:00:36.51Z", SECOND + 510),
    ("2025-10-22T23:00:36.512987Z", MS),  # 6 digits: microseconds are cut, not rounded
    ("2025-10-22T23:00:36.512987654Z", MS),  # 9 digits
    ("2025-10-23T01:00:36.512+02:00", MS),  # an offset instead of Z
    ("2025-10-22T18:00:36.512-0500", MS),  # an offset without a colon
    ("2025-10-22T23:00:36.512+00", MS),  # hours only
    ("2025-10-22 23:00:36.512Z", MS),  # a space instead of T
])
def test_played_at_keeps_milliseconds(text, ms):
    assert played_at_ms(text) == ms


@pytest.mark.parametrize("bad", [
    None, 12, 1761174036.5, [], "", "yesterday", "2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z",
    "2025-10-22T24:00:00Z", "2025-10-22T23:60:00Z", "2025-10-22T23:00:36+25:00",
    "2025-10-22 23:00:36",  # an API answer without a zone is refused, not guessed
    "２０２５-10-22T23:00:36Z",  # full-width digits are digits to Python, not to Spotify
    "2025-10-22T23:00:36.Z", "2025-10-22T23:00:36Z trailing", "2025-10-22T23:00:36\x00Z",
    "2025-10-22T23:00:36." + "1" * 100 + "Z",
])
def test_unreadable_played_at(bad):
    assert played_at_ms(bad) is None


@pytest.mark.parametrize("text, ms", [
    ("2025-10-22T23:00:36Z", SECOND),  # what Spotify writes today (the fast path)
    ("2025-10-22T23:00:36.512Z", MS),  # a fraction
    ("2025-10-22T23:00:36.5Z", SECOND + 500),
    ("2025-10-22T23:00:36", SECOND),  # no zone: the export is UTC
    ("2025-10-22 23:00:36", SECOND),  # a space instead of T
    ("2025-10-22T23:00:36+00:00", SECOND),
    ("2025-10-23T01:00:36+02:00", SECOND),
    ("2000-01-01T00:00:00Z", 946684800000),
])
def test_extended_history_ts(text, ms):
    assert ts_ms(text) == ms


@pytest.mark.parametrize("bad", [
    None, 0, "", "2025-10-22", "2025-10-22T23:00Zx", "2025-10-22T25:00:36Z", "2025-10-22T23:00:60Z",
    "2025-02-29T23:00:36Z", "2025-1O-22T23:00:36Z", "2025-10-22T2３:00:36Z", "abcd-ef-ghTij:kl:mnZ",
])
def test_unreadable_ts(bad):
    assert ts_ms(bad) is None


@pytest.mark.parametrize("text, ms", [
    ("2025-10-22 23:00", MINUTE),  # what account data holds: to the minute
    ("2025-10-22 23:00:36", SECOND),  # some files carry seconds
    ("2025-10-22T23:00", MINUTE),
    ("2024-02-29 00:00", 1709164800000),
])
def test_account_data_end_time(text, ms):
    assert end_time_ms(text) == ms


@pytest.mark.parametrize("bad", [
    None, "", "2025-10-22", "2025-10-22 23", "22/10/2025 23:00", "2023-02-29 00:00",
    # the fast path's shape with something wrong in it
    "2025-10-22 24:00", "2025-10-22 23:60", "2025-10-22 2３:00", "2025-1O-22 23:00", "2025-10-22 23-00",
])
def test_unreadable_end_time(bad):
    assert end_time_ms(bad) is None


@pytest.mark.parametrize("ms", [0, 1, 999, MS, 253402300799999, -1, -86_400_001])
def test_milliseconds_round_trip_exactly(ms):
    moment = ms_to_datetime(ms)
    assert moment.tzinfo is not None and datetime_to_ms(moment) == ms
    assert moment.microsecond == (ms % 1000) * 1000


def test_iso_and_history_cursors_use_the_same_milliseconds():
    assert iso_from_ms(MS) == "2025-10-22T23:00:36.512000+00:00" and iso_from_ms(None) is None
    cursor = Cursor(ms_to_datetime(MS), 42)
    assert cursor.encode() == f"{MS}.42" and Cursor.decode(cursor.encode()) == cursor
    for bad in ("", "12", "a.b", "99999999999999999999.1", "-99999999999999999.1"):
        assert Cursor.decode(bad) is None


def test_now_is_the_apps_clock_inside_the_app_and_the_wall_clock_outside(settings):
    fixed = datetime(2030, 6, 1, 12, tzinfo=timezone.utc)
    app = create_app(settings=settings, clock=lambda: fixed)
    try:
        with app.app_context():
            assert now() == fixed
        wall = now()
        assert wall.tzinfo is not None and abs((wall - utcnow()).total_seconds()) < 5
    finally:
        app.extensions["database"].dispose()
