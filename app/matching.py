"""When two stored plays of the same track are one play heard once.

Plays reach the archive from three sources with different clocks and precision, all
marking the END of a play (docs/spotify.md):

* poll: recently-played's `played_at`, to the millisecond;
* extended history: the export's `ts`, to the second;
* account data: `endTime`, to the minute, and not from the same clock: real files have
  it 1 to 3 minutes off the extended history's `ts` for the same play.

Each source's stored time is read as an interval in which the true end lies; two plays
of one track whose intervals overlap are the same play. The extended-history interval is
±10 s: its `ts` is logged by the client and can differ from the server's `played_at` by
a few seconds, and 10 s stays well under the 30 s that separates two real plays of one
track (Spotify reports only plays of about 30 s or more). Account data's is its minute
widened by three minutes either way. That is wider than two plays of one short track
can be apart, but account data only ever meets plays that are known by a finer clock (a
poll, the extended history): the finer one stands, and each of its plays absorbs the
account rows near it.
The simulator's exports (`/_sim/export`) shift `ts` by up to ±3 s from `played_at`, and
the tests merge them with polled plays from the same ground truth: nothing is counted
twice and nothing is missed.
"""

from __future__ import annotations

from .models import PlaySource

# Where the true end lies, relative to the stored time, in milliseconds.
UNCERTAINTY_MS = {
    PlaySource.poll: (0, 0),
    PlaySource.extended_history: (-10_000, 10_000),
    PlaySource.account_data: (-190_000, 250_000),
}
WIDEST_MS = max(hi for _, hi in UNCERTAINTY_MS.values()) - min(lo for lo, _ in UNCERTAINTY_MS.values())


def same_play(a_ms: int, a_source: int, b_ms: int, b_source: int) -> bool:
    a_lo, a_hi = UNCERTAINTY_MS[PlaySource(a_source)]
    b_lo, b_hi = UNCERTAINTY_MS[PlaySource(b_source)]
    return a_ms + a_lo <= b_ms + b_hi and b_ms + b_lo <= a_ms + a_hi


def sql_same_play(a_time: str, a_source: str, b_time: str, b_source: str) -> str:
    """The same rule as a SQL condition over two (timestamptz, source smallint) pairs."""
    def bound(source: str, index: int) -> str:
        cases = " ".join(f"WHEN {int(s)} THEN {UNCERTAINTY_MS[s][index]}" for s in PlaySource)
        return f"make_interval(secs => (CASE {source} {cases} END) / 1000.0)"

    return (f"({a_time} + {bound(a_source, 0)} <= {b_time} + {bound(b_source, 1)} AND "
            f"{b_time} + {bound(b_source, 0)} <= {a_time} + {bound(a_source, 1)})")
