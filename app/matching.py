"""When two stored plays of the same track are one play heard once.

Plays reach the archive from sources with different clocks and precision. Spotify's all
mark the END of a play (docs/spotify.md):

* poll: recently-played's `played_at`, to the millisecond;
* extended history: the export's `ts`, to the second;
* account data: `endTime`, to the minute, and not from the same clock: real files have
  it 1 to 3 minutes off the extended history's `ts` for the same play.

Scrobblers (the ListenBrainz API, app/api; Last.fm, ListenBrainz, Maloja and YouTube Music
histories, app/imports/services.py) mark its START (`listened_at`, to the second, from the
player's clock) and never say how much was heard. Apple Music's history marks the end,
to the millisecond, by the device's clock: ±10 s like the extended history. They are stored like every
play, by their end: the start plus the track's length (the listen's `duration_ms`, else
the catalogue's), with that length as `ms_played`.

Each play is read as two intervals: where its true end lies and where its true start
lies. Two plays of one track are the same play when both overlap.

* Spotify's sources know the end: poll exactly, the extended history ±10 s (its `ts` is
  logged by the client and can differ from the server's `played_at` by a few seconds;
  10 s stays well under the 30 s that separates two real plays of one track, as Spotify
  reports only plays of about 30 s or more), account data its minute widened by three
  minutes either way. Their start is not used (any time before the end): the end alone
  decides, as it always has. Account data's window is wider than two plays of one short
  track can be apart, but account data only ever meets plays known by a finer clock (a
  poll, the extended history): the finer one stands, and each of its plays absorbs the
  account rows near it.
* A listen knows its start, ±10 s (players' clocks drift). Its end lies between the
  start plus what a scrobbler must have heard before it may submit (half the track or
  4 minutes, whichever is less: ListenBrainz's and Last.fm's rule) and the start plus
  the whole track, plus the same 10 s. A listen whose length nobody knows ends between
  30 s and 20 minutes after its start.

So a polled play and the same play scrobbled (stamped a track length earlier) are one:
the poll's end lies in the listen's end interval. Two real repeats of a short track are
two: scrobbled, their starts are a track length apart (at least 30 s), so their start
intervals (20 s wide) cannot overlap; polled, their ends differ. The simulator's exports
(`/_sim/export`) shift `ts` by up to ±3 s from `played_at`, and the tests merge them with
polled plays from the same ground truth: nothing is counted twice and nothing is missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import PlaySource

# Where the true end lies, relative to the stored time, in milliseconds (end-stamped sources).
UNCERTAINTY_MS = {
    PlaySource.poll: (0, 0),
    PlaySource.extended_history: (-10_000, 10_000),
    PlaySource.account_data: (-190_000, 250_000),
    PlaySource.apple_music: (-10_000, 10_000),  # its Event End Timestamp, to the millisecond, from the device
}
END_STAMPED = tuple(UNCERTAINTY_MS)
START_STAMPED = tuple(s for s in PlaySource if s not in UNCERTAINTY_MS)  # scrobbles: the API, Last.fm, …
SQL_START_STAMPED = ", ".join(str(int(s)) for s in START_STAMPED)
CLOCK_SKEW_MS = 10_000  # a scrobbler's clock against Spotify's
HEARD_BEFORE_SUBMIT_MS = 240_000  # "half the track or 4 minutes, whichever is lower"
UNKNOWN_LENGTH_MS = (30_000, 1_200_000)  # a listen of unknown length ends this long after its start
DAY_MS = 86_400_000  # no play lasts longer: the "any time before the end" of a start interval


@dataclass(frozen=True)
class Bounds:
    """[end_lo, end_hi] and [start_lo, start_hi] of one play, in Unix milliseconds."""

    end_lo: int
    end_hi: int
    start_lo: int
    start_hi: int


def bounds(stored_ms: int, source: int, ms_played: int | None) -> Bounds:
    source = PlaySource(source)
    if source in UNCERTAINTY_MS:
        lo, hi = UNCERTAINTY_MS[source]
        return Bounds(stored_ms + lo, stored_ms + hi, stored_ms - DAY_MS, stored_ms + hi)
    start = stored_ms - (ms_played or 0)
    if ms_played is None:
        end_lo, end_hi = start + UNKNOWN_LENGTH_MS[0], start + UNKNOWN_LENGTH_MS[1]
    else:
        end_lo = start + min(ms_played // 2, HEARD_BEFORE_SUBMIT_MS)
        end_hi = start + ms_played
    return Bounds(end_lo - CLOCK_SKEW_MS, end_hi + CLOCK_SKEW_MS, start - CLOCK_SKEW_MS, start + CLOCK_SKEW_MS)


def same_play(a: Bounds, b: Bounds) -> bool:
    return (a.end_lo <= b.end_hi and b.end_lo <= a.end_hi
            and a.start_lo <= b.start_hi and b.start_lo <= a.start_hi)


def reach_ms(longest_listen_ms: int | None, unknown_length: bool) -> tuple[int, int]:
    """How far before and after a play's end interval the stored time of a play that could
    be the same one may lie, given the longest listen (and whether one of unknown length)
    the archive holds for the user: (before, after), for index ranges on `played_at`."""
    before = max(hi for _, hi in UNCERTAINTY_MS.values())
    after = -min(lo for lo, _ in UNCERTAINTY_MS.values())
    if longest_listen_ms is not None:
        spread = bounds(longest_listen_ms, PlaySource.listen, longest_listen_ms)
        after = max(after, longest_listen_ms - spread.end_lo)
    if unknown_length:
        before = max(before, UNKNOWN_LENGTH_MS[1] + CLOCK_SKEW_MS)
    return before, after


def farthest_ms(longest_ms: int) -> int:
    """How far from its row's time any bound of sql_bounds() lies, for rows played no
    longer than `longest_ms`: a span that far around a set of rows holds every play a
    row of them can be matched with (before reach_ms widens it)."""
    widest = max(abs(ms) for pair in UNCERTAINTY_MS.values() for ms in pair)
    return longest_ms + max(UNKNOWN_LENGTH_MS[1], widest) + CLOCK_SKEW_MS


def sql_bounds(time: str, source: str, ms: str) -> dict[str, str]:
    """bounds() as SQL expressions over a (timestamptz, source smallint, ms_played integer)
    triple: {"end_lo": …, "end_hi": …, "start_lo": …, "start_hi": …}."""
    def at(base: str, offset_ms: str) -> str:
        return f"{base} + make_interval(secs => ({offset_ms}) / 1000.0)"

    def per_source(index: int, listen: str) -> str:
        cases = " ".join(f"WHEN {int(s)} THEN {UNCERTAINTY_MS[s][index]}" for s in END_STAMPED)
        return f"(CASE {source} {cases} ELSE {listen} END)"

    # A listen's start, as an offset from its stored time.
    start = f"-coalesce({ms}, 0)"
    # Not coalesce(least(…)): least() skips a NULL, it does not return it.
    end_lo = (f"{start} + (CASE WHEN {ms} IS NULL THEN {UNKNOWN_LENGTH_MS[0]} "
              f"ELSE least({ms} / 2, {HEARD_BEFORE_SUBMIT_MS}) END) - {CLOCK_SKEW_MS}")
    end_hi = f"{start} + coalesce({ms}, {UNKNOWN_LENGTH_MS[1]}) + {CLOCK_SKEW_MS}"
    return {
        "end_lo": at(time, per_source(0, end_lo)),
        "end_hi": at(time, per_source(1, end_hi)),
        "start_lo": at(time, f"CASE WHEN {source} IN ({SQL_START_STAMPED}) THEN {start} - {CLOCK_SKEW_MS} "
                             f"ELSE {-DAY_MS} END"),
        "start_hi": at(time, f"CASE WHEN {source} IN ({SQL_START_STAMPED}) THEN {start} + {CLOCK_SKEW_MS} ELSE "
                             f"{per_source(1, '0')} END"),
    }


def sql_same_play(a: tuple[str, str, str], b: tuple[str, str, str], *, ends_only: bool = False) -> str:
    """same_play() as a SQL condition over two (timestamptz, source, ms_played) triples.
    `ends_only` when neither can be a start-stamped play: then the start intervals always
    overlap (they reach a day back from the end) and only the ends need comparing."""
    x, y = sql_bounds(*a), sql_bounds(*b)
    ends = f"{x['end_lo']} <= {y['end_hi']} AND {y['end_lo']} <= {x['end_hi']}"
    if ends_only:
        return f"({ends})"
    return f"({ends} AND {x['start_lo']} <= {y['start_hi']} AND {y['start_lo']} <= {x['start_hi']})"
