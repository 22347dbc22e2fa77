"""The pure parts of archival: cadence, failure policy, page parsing and the gap rule."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from app.archival import cadence, failures
from app.archival.page import Gap, find_gap, parse_page
from app.config import ArchivalSettings
from app.spotify.errors import BadData, FailureKind
from app.time import played_at_ms

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=timezone.utc)
MIN = 60_000


def interval(rate, plan="free", last_play=NOW - timedelta(minutes=5), previous=None, settings=None):
    return cadence.next_interval(rate, plan, settings or ArchivalSettings(), NOW, random.Random(1),
                                 last_play=last_play, previous=previous)


# --- cadence ---------------------------------------------------------------------------------


def test_burst_rate_measures_the_densest_run():
    album = [i * 4 * MIN for i in range(20)]  # a play every 4 minutes
    assert cadence.burst_rate(album) == pytest.approx(15.0)
    skipping = album + [100 * MIN + i * 30_000 for i in range(12)]  # then 12 plays 30 s apart
    assert cadence.burst_rate(skipping) == pytest.approx(120.0)
    assert cadence.burst_rate([1, 2]) is None


def test_peak_is_remembered_and_decays_with_a_half_life_of_a_week():
    fast = cadence.observe(cadence.ListeningRate(), [i * 30_000 for i in range(12)], NOW)
    assert fast.peak_per_hour == pytest.approx(120.0)
    slow_page = [i * 4 * MIN for i in range(12)]
    later = cadence.observe(fast, slow_page, NOW + timedelta(days=7))
    assert later.peak_per_hour == pytest.approx(60.0)  # half of 120: the remembered peak still wins
    assert cadence.observe(fast, [], NOW + timedelta(days=14)).peak_per_hour == pytest.approx(30.0)


def test_interval_keeps_the_window_half_full_at_the_peak():
    binge = cadence.ListeningRate(120.0, NOW)
    assert interval(binge) <= timedelta(minutes=12.5)  # 25 plays at 120/h
    assert interval(binge) >= timedelta(minutes=12.5 * 0.9)


def test_an_unseen_burst_is_assumed_possible_while_a_user_is_active():
    calm = cadence.ListeningRate(15.0, NOW)
    unseen = timedelta(hours=0.5 * 50 / cadence.UNSEEN_BURST_PER_HOUR)
    assert unseen * 0.9 <= interval(calm) <= unseen
    assert unseen < timedelta(minutes=25)  # a 120/h binge starting right after a poll loses nothing


def test_idle_users_back_off_to_the_plan_maximum_but_known_bingers_do_not():
    calm = cadence.ListeningRate(15.0, NOW)
    away = NOW - timedelta(days=5)
    steps, previous = [], None
    for _ in range(8):
        previous = interval(calm, last_play=away, previous=previous)
        steps.append(previous)
    assert steps[0] > timedelta(minutes=25) and steps == sorted(steps)
    assert timedelta(minutes=54) <= steps[-1] <= timedelta(minutes=60)  # free plan's maximum, less jitter

    binger = cadence.ListeningRate(110.0, NOW)
    assert interval(binger, last_play=away, previous=timedelta(minutes=60)) <= timedelta(minutes=0.8 * 50 / 110 * 60)


def test_late_arrivals_halve_the_interval_for_a_while():
    normal = interval(cadence.ListeningRate(60.0, NOW))
    cautious = interval(cadence.ListeningRate(60.0, NOW, late_seen_at=NOW - timedelta(hours=1)))
    assert cautious == pytest.approx(normal / 2, rel=0.01)
    over = interval(cadence.ListeningRate(60.0, NOW, late_seen_at=NOW - timedelta(hours=7)))
    assert over == normal


def test_plan_bounds_and_the_global_minimum():
    settings = ArchivalSettings(free_interval_s=(10 * 60, 15 * 60), pro_interval_s=(60, 5 * 60),
                                global_min_interval_s=3 * 60)
    calm = cadence.ListeningRate(10.0, NOW)
    assert interval(calm, settings=settings) <= timedelta(minutes=15)
    assert interval(calm, "pro", settings=settings) <= timedelta(minutes=5)
    frantic = cadence.ListeningRate(5000.0, NOW)
    assert interval(frantic, "pro", settings=settings) == timedelta(minutes=3)
    assert interval(frantic, settings=settings) >= timedelta(minutes=9)


class NoJitter(random.Random):
    """Jitter is a random factor: a factor of exactly one gives the interval the policy
    computes before jitter."""

    def uniform(self, a, b):
        return 1.0


def test_jitter_only_shortens_and_spreads_users():
    for rate, last_play, previous in ((cadence.ListeningRate(60.0, NOW), NOW, None),  # active
                                      (cadence.ListeningRate(None, None), NOW - timedelta(days=5),
                                       timedelta(minutes=40))):  # idle, backing off
        def interval(rng):
            return cadence.next_interval(rate, "free", ArchivalSettings(), NOW, rng, last_play=last_play,
                                         previous=previous)

        unjittered = interval(NoJitter())
        values = {interval(random.Random(seed)) for seed in range(20)}
        assert len(values) == 20  # spread
        assert all(0.9 * unjittered <= v < unjittered for v in values), (unjittered, sorted(values))
    assert unjittered > timedelta(minutes=25)  # the second case is not the first one again


# --- failures --------------------------------------------------------------------------------


def test_transient_failures_get_a_quick_retry_then_a_growing_cooldown():
    settings = ArchivalSettings()
    first = failures.judge(FailureKind.SERVER, 1, settings)
    assert first.retry_after == timedelta(minutes=1) and not first.circuit_open
    cooldowns = [failures.judge(FailureKind.SERVER, n, settings).retry_after for n in range(2, 8)]
    assert cooldowns == [timedelta(minutes=m) for m in (10, 20, 40, 60, 60, 60)]  # base 10 min, cap 1 h
    # While the user listens fast, retries never wait longer than their safe interval.
    capped = failures.judge(FailureKind.NETWORK, 4, settings, safe_interval=timedelta(minutes=12))
    assert capped.retry_after == timedelta(minutes=12) and capped.circuit_open


def test_cooldown_multiplier_is_capped_and_classes_deactivate_at_their_threshold():
    settings = ArchivalSettings()
    auth = [failures.judge(FailureKind.AUTH, n, settings) for n in (1, 2, 3)]
    assert [v.retry_after for v in auth[:2]] == [timedelta(minutes=30), timedelta(hours=1)]
    assert auth[2].deactivate
    unknown = [failures.judge(FailureKind.UNKNOWN, n, settings) for n in range(1, 8)]
    assert [v.retry_after for v in unknown[:5]] == [timedelta(minutes=m) for m in (20, 40, 80, 160, 160)]
    assert not unknown[5].deactivate and unknown[6].deactivate  # after 7
    assert failures.judge(FailureKind.SERVER, 15, settings).deactivate
    assert not failures.judge(FailureKind.SERVER, 14, settings).deactivate


def test_consecutive_counts_per_class_and_rate_limits_are_never_a_users_failure():
    assert failures.consecutive(None, 0, "network") == 1
    assert failures.consecutive("network", 3, "network") == 4
    assert failures.consecutive("network", 3, "auth") == 1
    with pytest.raises(ValueError):
        failures.judge(FailureKind.RATE_LIMIT, 1, ArchivalSettings())


# --- page ------------------------------------------------------------------------------------

TRACK = {
    "id": "4uLU6hMCjMI75M1A2tKUQC", "name": "Song", "duration_ms": 200_000, "explicit": False,
    "external_ids": {"isrc": "USX1"}, "is_local": False,
    "album": {"id": "1DFixLWuPkv3KT3TnV35m3", "name": "Album", "album_type": "album", "release_date": "1999",
              "release_date_precision": "year", "total_tracks": 9,
              "images": [{"url": "small", "width": 64}, {"url": "big", "width": 640}]},
    "artists": [{"id": "0OdUWJ0sBjDrqHygGUXeCF", "name": "Artist"}],
}


def test_page_parsing_skips_what_cannot_be_archived_with_reasons():
    items = [
        {"played_at": "2025-10-22T23:00:36.512Z", "track": TRACK},
        {"played_at": "2025-10-22T22:00:00Z", "track": TRACK | {"is_local": True, "id": None}},
        {"played_at": "2025-10-22T21:00:00Z", "track": TRACK | {"type": "episode"}},
        {"played_at": "garbage", "track": TRACK},
        {"played_at": "2025-10-22T20:00:00Z", "track": None},
        "not even an object",
    ]
    page = parse_page({"items": items})
    assert page.item_count == 6 and len(page.plays) == 1
    assert page.skipped == {"local file": 1, "podcast episode": 1, "malformed item": 2, "no track": 1}
    play = page.plays[0]
    assert play.played_at_ms == 1761174036512 and play.played_at.microsecond == 512_000
    assert play.track.album.image_url == "big" and play.track.artists[0].name == "Artist"
    assert page.oldest_ms == played_at_ms("2025-10-22T20:00:00Z")


def test_missing_and_wrongly_typed_fields_degrade_gracefully():
    page = parse_page({"items": [{"played_at": "2025-10-22T23:00:36Z", "track": {
        "id": "4uLU6hMCjMI75M1A2tKUQC", "name": None, "duration_ms": "long", "explicit": "yes",
        "album": {"id": 7}, "artists": "nobody"}}]})
    track = page.plays[0].track
    assert (track.name, track.duration_ms, track.explicit, track.album, track.artists) == (
        "Unknown track", None, None, None, ())


@pytest.mark.parametrize("body", [None, [], {"items": None}, {"items": [{"played_at": "x"}] * 3}])
def test_a_body_that_is_not_a_page_is_bad_data(body):
    with pytest.raises(BadData):
        parse_page(body)


def test_gap_rule():
    assert find_gap(50, oldest_ms=2000, cursor_ms=1000) == Gap(1000, 2000)
    assert find_gap(50, oldest_ms=1000, cursor_ms=1000) is None  # the page reaches back to what we had
    assert find_gap(49, oldest_ms=2000, cursor_ms=1000) is None  # Spotify showed everything it had
    assert find_gap(50, oldest_ms=2000, cursor_ms=None) is None  # first poll: history is the import's job
