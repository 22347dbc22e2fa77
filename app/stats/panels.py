"""The dashboard's panels as data: computed from the rollups (`compute`), turned into JSON
and back (`freeze`, `thaw`: share snapshots keep what a panel showed, not a query), and
rendered with the same templates wherever they appear (`render`: the dashboard, a share
page, a PDF report).

A rendering is `frozen` when it is not the live dashboard: no rank toggle, no links to
the owner's private pages, nothing that asks the server for more.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import date, datetime
from typing import Any

from flask import render_template
from markupsafe import Markup
from sqlalchemy.engine import Connection

from ..account.preferences import counts_podcasts_of
from ..podcasts import queries as podcast_queries
from . import charts, queries
from .periods import Period

PANELS = ("totals", "top-tracks", "top-artists", "top-albums", "clock", "timeline", "discoveries", "habits", "genres",
          "podcasts")
TITLES = {"totals": "Totals", "top-tracks": "Top tracks", "top-artists": "Top artists", "top-albums": "Top albums",
          "clock": "Listening clock", "timeline": "Timeline", "discoveries": "Discoveries", "habits": "Habits",
          "genres": "Genres", "podcasts": "Podcasts and audiobooks"}


def compute(conn: Connection, uid: int, name: str, period: Period, rank_by: str, *,
            podcasts: bool | None = None) -> Any:
    """What panel `name` shows for the user and period: a queries.py value. `podcasts`:
    whether Totals counts podcast and audiobook episodes too (None: as the user chose)."""
    if name == "totals":
        totals = queries.totals(conn, uid, period)
        if podcasts is None:
            podcasts = counts_podcasts_of(conn, uid)
        if not podcasts:
            return totals
        plays, ms = podcast_queries.listening(conn, uid, period.start, period.end)
        return replace(totals, plays=totals.plays + plays, ms=totals.ms + ms, episode_plays=plays, episode_ms=ms)
    if name.startswith("top-"):
        return queries.top(conn, uid, period, name[4:], rank_by)
    if name == "clock":
        return queries.clock(conn, uid, period)
    if name == "timeline":
        return queries.timeline(conn, uid, period)
    if name == "discoveries":
        return queries.discoveries(conn, uid, period)
    if name == "habits":
        return queries.habits(conn, uid, period)
    if name == "genres":
        return queries.genres(conn, uid, period)
    if name == "podcasts":  # apart from music: never in the other panels' figures
        return podcast_queries.podcasts(conn, uid, period.start, period.end)
    raise ValueError(name)


def render(name: str, value: Any, period: Period, rank_by: str, *, frozen: bool = False) -> Markup:
    """The panel's HTML (already escaped by its template: safe to place in another page)."""
    context: dict[str, Any] = {"period": period, "rank_by": rank_by, "name": name, "charts": charts, "frozen": frozen}
    if name == "totals":
        context["totals"] = value
    elif name.startswith("top-"):
        context.update(kind=name[4:], items=value)
    elif name == "clock":
        context.update(figure=charts.heatmap(f"Plays by hour of day and weekday, {period.label.lower()}", value),
                       empty=not any(any(row) for row in value))
    elif name == "timeline":
        fmt = {"day": "%-d %b", "week": "%-d %b %Y", "month": "%b %Y"}[value.unit]
        context.update(unit=value.unit, empty=not any(v for _, v in value.points), figure=charts.columns(
            f"Plays per {value.unit}, {period.label.lower()}", [(d.strftime(fmt), v) for d, v in value.points]))
    elif name == "discoveries":
        context["found"] = value
    elif name == "habits":
        context["habits"] = value
    elif name == "genres":
        context["genres"] = value
    elif name == "podcasts":
        context["podcasts"] = value
    template = "top" if name.startswith("top-") else name
    return Markup(render_template(f"stats/_{template}.html", **context))


# --- JSON, for snapshots ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def freeze(name: str, value: Any) -> Any:
    """A JSON-able copy of a panel's value."""
    if name.startswith("top-"):
        return [_plain(asdict(item)) for item in value]
    if name == "clock":
        return value
    return _plain(asdict(value))


def _ranked(items: list[dict]) -> list[queries.Ranked]:
    return [queries.Ranked(**item) for item in items]


def thaw(name: str, data: Any) -> Any:
    """The panel's value again, from `freeze`'s JSON."""
    if name == "totals":
        return queries.Totals(**data)
    if name.startswith("top-"):
        return _ranked(data)
    if name == "clock":
        return [[int(v) for v in row] for row in data]
    if name == "timeline":
        return queries.Timeline(data["unit"], [(date.fromisoformat(d), v) for d, v in data["points"]])
    if name == "discoveries":
        return queries.Discoveries(data["tracks"], data["artists"], _ranked(data["top_tracks"]),
                                   _ranked(data["top_artists"]))
    if name == "habits":
        streak, busiest = data["longest_streak"], data["busiest_day"]
        return queries.Habits(
            longest_streak=(date.fromisoformat(streak[0]), date.fromisoformat(streak[1]), streak[2]) if streak else None,
            busiest_day=(date.fromisoformat(busiest[0]), busiest[1]) if busiest else None,
            sessions=[(datetime.fromisoformat(a), datetime.fromisoformat(b), plays, ms)
                      for a, b, plays, ms in data["sessions"]])
    if name == "genres":
        return queries.Genres(data["coverage"], [(g, n) for g, n in data["top"]])
    if name == "podcasts":
        return podcast_queries.Podcasts(data["ms"], data["plays"], data["episodes"],
                                        [podcast_queries.ShowTime(**show) for show in data["shows"]], data["ever"])
    raise ValueError(name)
