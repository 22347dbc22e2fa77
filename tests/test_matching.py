"""The matching rule (app/matching.py) has a Python form (polls) and a SQL form (merges):
they must agree on every pair, including the awkward ones (a listen of unknown length,
a play at the very edge of a window), and the rule must say what its documentation says."""

from __future__ import annotations

import itertools

from app.matching import bounds, farthest_ms, same_play, sql_same_play
from app.models import PlaySource

S = 1_750_000_000_000  # a listen's start, ms
POLL, EXTENDED, ACCOUNT, LISTEN, LASTFM, APPLE = (int(PlaySource.poll), int(PlaySource.extended_history),
                                                 int(PlaySource.account_data), int(PlaySource.listen),
                                                 int(PlaySource.lastfm), int(PlaySource.apple_music))
END = {POLL, EXTENDED, ACCOUNT, APPLE}


def plays() -> list[tuple[int, int, int | None]]:
    """(stored ms, source, ms_played) around one 3-minute play that started at S."""
    out = []
    for offset in (-400_000, -250_000, -11_000, -10_000, -1_000, 0, 1_000, 10_000, 11_000, 30_000, 200_000):
        end = S + 180_000 + offset
        out += [(end, POLL, None), (end, EXTENDED, 170_000), (end, ACCOUNT, 175_000), (end, APPLE, 180_000)]
        start = S + offset
        out += [(start + 180_000, LISTEN, 180_000), (start, LISTEN, None), (start + 40_000, LASTFM, 40_000),
                (start + 600_000, LISTEN, 600_000)]
    return out


def test_python_and_sql_agree_on_every_pair(db_conn):
    pairs = list(itertools.combinations(plays(), 2))
    condition = sql_same_play(("to_timestamp(a_t / 1000.0)", "a_s", "a_m"), ("to_timestamp(b_t / 1000.0)", "b_s", "b_m"))
    rows = db_conn.execute(f"""
        SELECT {condition} FROM unnest(%s::bigint[], %s::smallint[], %s::integer[], %s::bigint[], %s::smallint[],
                                       %s::integer[]) AS x(a_t, a_s, a_m, b_t, b_s, b_m)
    """, ([a[0] for a, _ in pairs], [a[1] for a, _ in pairs], [a[2] for a, _ in pairs],
          [b[0] for _, b in pairs], [b[1] for _, b in pairs], [b[2] for _, b in pairs])).fetchall()
    python = [same_play(bounds(*a), bounds(*b)) for a, b in pairs]
    assert len(rows) == len(pairs) > 1000
    disagreements = [(a, b, p) for (a, b), p, (sql,) in zip(pairs, python, rows) if p != sql]
    assert disagreements == []
    assert 0 < sum(python) < len(pairs)  # the grid holds matches and non-matches both

    # The shortcut for archives without scrobbles: the same verdicts where neither is one.
    spotify = [(a, b) for a, b in pairs if a[1] in END and b[1] in END]
    short = sql_same_play(("to_timestamp(a_t / 1000.0)", "a_s", "a_m"), ("to_timestamp(b_t / 1000.0)", "b_s", "b_m"),
                          ends_only=True)
    rows = db_conn.execute(f"""
        SELECT {short} FROM unnest(%s::bigint[], %s::smallint[], %s::integer[], %s::bigint[], %s::smallint[],
                                   %s::integer[]) AS x(a_t, a_s, a_m, b_t, b_s, b_m)
    """, ([a[0] for a, _ in spotify], [a[1] for a, _ in spotify], [a[2] for a, _ in spotify],
          [b[0] for _, b in spotify], [b[1] for _, b in spotify], [b[2] for _, b in spotify])).fetchall()
    assert len(spotify) > 100
    assert [sql for (sql,) in rows] == [same_play(bounds(*a), bounds(*b)) for a, b in spotify]


def test_the_rule_says_what_its_documentation_says():
    poll_end = S + 180_000
    scrobbled = bounds(S + 180_000, LISTEN, 180_000)  # stamped at S, a 3-minute track
    assert same_play(bounds(poll_end, POLL, None), scrobbled)
    assert same_play(bounds(S + 100_000, POLL, None), scrobbled)  # skipped after 100 s: more than half heard
    assert not same_play(bounds(S + 60_000, POLL, None), scrobbled)  # 60 s: a scrobbler would not have sent it
    # Two repeats of a 40-second track, scrobbled: two plays; each poll matches its own.
    first, second = bounds(S + 40_000, LISTEN, 40_000), bounds(S + 80_000, LISTEN, 40_000)
    assert not same_play(first, second)
    assert same_play(bounds(S + 40_000, POLL, None), first) and not same_play(bounds(S + 40_000, POLL, None), second)
    assert same_play(bounds(S + 80_000, POLL, None), second)
    # The same listen sent twice, by clocks 5 s apart and with different lengths: one.
    assert same_play(bounds(S + 180_000, LISTEN, 180_000), bounds(S + 5_000 + 181_000, LASTFM, 181_000))
    # A listen of unknown length, stored at its start, still meets the poll of its end.
    assert same_play(bounds(S, LISTEN, None), bounds(poll_end, POLL, None))
    # Spotify's own sources: as before (end only).
    assert same_play(bounds(poll_end, POLL, None), bounds(poll_end + 9_000, EXTENDED, 170_000))
    assert not same_play(bounds(poll_end, POLL, None), bounds(poll_end + 11_000, EXTENDED, 170_000))


def test_no_bound_lies_farther_than_farthest_ms():
    """The import skips matching when the user has no play within farthest_ms of its rows:
    every bound of every kind of row, of any length up to the longest, lies within it."""
    longest = 3_600_000
    for source in PlaySource:
        for ms_played in (None, 0, 1, 29_999, 480_000, longest):
            b = bounds(10**12, source, ms_played)
            reach = max(abs(edge - 10**12) for edge in (b.end_lo, b.end_hi))
            assert reach <= farthest_ms(longest), (source, ms_played, reach)
    assert farthest_ms(0) < 2 * 3_600_000  # and it is not so wide that it never skips
