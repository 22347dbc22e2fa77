"""The shared request budget: one token bucket in Postgres for every process."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from app.archival.budget import Budget, Exhausted, Paused, Priority
from app.config import ArchivalSettings
from app.db import Database


@pytest.fixture
def make_budget(database_url):
    made = []

    def make(per_30s=6, reserve=0.5):
        database = Database(database_url, pool_size=4)  # its own engine: as good as another process
        made.append(database)
        return Budget(database, ArchivalSettings(requests_per_30s=per_30s, polling_reserve=reserve))

    yield make
    for database in made:
        database.dispose()


def test_capacity_then_refill_rate(make_budget):
    budget = make_budget(per_30s=6)
    grants = [budget.try_take(Priority.POLL) for _ in range(7)]
    assert [g.granted for g in grants] == [True] * 6 + [False]
    assert 4.0 < grants[-1].wait_s <= 5.1  # one token every 5 s
    with pytest.raises(Exhausted):
        budget.take(Priority.POLL, max_wait_s=1)


def test_polling_gets_the_budget_before_enrichment(make_budget):
    budget = make_budget(per_30s=6, reserve=0.5)
    # Enrichment stops while half the bucket (3 of 6) is left: that half is the polls'.
    assert [budget.try_take(Priority.ENRICH).granted for _ in range(4)] == [True, True, True, False]
    assert [budget.try_take(Priority.POLL).granted for _ in range(3)] == [True, True, True]
    assert not budget.try_take(Priority.POLL).granted


def test_processes_share_one_bucket_and_never_exceed_it(make_budget):
    budgets = [make_budget(per_30s=20) for _ in range(4)]
    granted = []

    def hammer(budget):
        for _ in range(15):
            if budget.try_take(Priority.POLL).granted:
                granted.append(1)

    threads = [threading.Thread(target=hammer, args=(b,)) for b in budgets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 20 <= len(granted) <= 21  # 20 in the bucket, perhaps one refilled meanwhile


def test_a_pause_stops_everyone_and_short_ones_are_waited_out(make_budget):
    first, second = make_budget(per_30s=100), make_budget(per_30s=100)
    until = first.pause(1.5, "QUOTA_EXCEEDED")
    grant = second.try_take(Priority.POLL)
    assert not grant.granted and grant.paused_until == until
    with pytest.raises(Paused, match="QUOTA_EXCEEDED"):
        second.take(Priority.POLL, max_wait_s=0.5)
    started = time.monotonic()
    second.take(Priority.POLL, max_wait_s=5)  # waits for the pause to end
    assert 0.5 < time.monotonic() - started < 3
    assert first.paused_until() is None


def test_a_pause_is_extended_never_shortened(make_budget):
    budget = make_budget()
    long = budget.pause(3600, "window")
    assert budget.pause(10, "window") == long
    assert budget.paused_until() - long == timedelta(0)
