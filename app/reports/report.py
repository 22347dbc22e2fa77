"""A listening report for one period ("Year in review", or any dates), as HTML and as PDF.

The numbers are the dashboard's (stats/panels.py `compute`), rendered by the dashboard's
own panel templates and server-side SVG charts, in a frozen rendering (no toggles, no
links to private pages), inside templates/reports/report.html. The same HTML is the
preview in a browser and, through WeasyPrint, the PDF.

A PDF never waits on the network for long: the fetcher WeasyPrint is given reads this
app's static files from disk, fetches images only from the hosts pages may show images
from (security.image_origins), each within FETCH_TIMEOUT_S and all within
FETCH_BUDGET_S, and refuses everything else; an image it cannot get is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Callable

from flask import current_app, g, render_template
from markupsafe import Markup
from sqlalchemy.engine import Connection

from ..db import Database
from ..stats import panels as stats_panels
from ..stats.periods import EARLIEST, Period, spanning
from ..time import zone

FETCH_TIMEOUT_S = 2.0
FETCH_BUDGET_S = 6.0
BASE_URL = "http://report.invalid/"  # what relative URLs in the report resolve against (never fetched)
COVER = ("totals", "top-artists")
SECTIONS = (("Top of the period", ("top-albums", "top-tracks")),
            ("When you listened", ("clock", "timeline")),
            ("New and habitual", ("discoveries", "habits", "genres")))


@dataclass
class Report:
    title: str
    owner: str
    period: Period
    generated_at: datetime
    values: dict[str, Any]  # panel name -> its value

    def panel(self, name: str) -> Markup:
        return stats_panels.render(name, self.values[name], self.period, "plays", frozen=True)


def report_period(first_day: date | None, last_day: date | None, timezone_name: str, today: date) -> Period:
    """The dates asked for, kept between the earliest day anything can have been played
    and today (a report of the year 9000 is an empty report of today, not 84,000 months
    of timeline)."""
    last = min(last_day or today, today)
    first = None if first_day is None else min(max(first_day, EARLIEST), last)
    return spanning(first, last, zone(timezone_name))


def title_for(period: Period) -> str:
    first, last = period.first_day, period.last_day
    if first and first == date(first.year, 1, 1) and last == date(first.year, 12, 31):
        return f"{first.year} in review"
    if first is None:
        return "All your listening"
    return "Your listening"


def gather(conn: Connection, user_id: int, owner: str, period: Period, *, now: datetime,
           progress: Callable[[float], None] = lambda share: None) -> Report:
    values = {}
    for n, name in enumerate(stats_panels.PANELS):
        values[name] = stats_panels.compute(conn, user_id, name, period, "plays")
        progress((n + 1) / len(stats_panels.PANELS))
    return Report(title_for(period), owner, period, now, values)


def write_report(database: Database, user_id: int, period: Period, out: IO[bytes], progress: Callable[[int], None],
                 *, owner: str, now: datetime) -> int:
    """The PDF (the Export page's "PDF report" format); returns the number of plays it
    covers. Progress is told in plays, as for the other formats."""
    with database.reading() as conn:
        plays = stats_panels.compute(conn, user_id, "totals", period, "plays").plays
        report = gather(conn, user_id, owner, period, now=now, progress=lambda share: progress(int(plays * share)))
    write_pdf(render_html(report, for_print=True), out)
    return report.values["totals"].plays


def render_html(report: Report, *, for_print: bool) -> str:
    g.display_zone = report.period.tz  # times in the report are in its zone, whoever renders it
    return render_template("reports/report.html", report=report, cover=COVER, sections=SECTIONS, for_print=for_print,
                           titles=stats_panels.TITLES)


def write_pdf(html: str, out: IO[bytes]) -> None:
    # Imported here: loading WeasyPrint (and Pango) costs a second that pages and commands
    # without a PDF should not pay.
    from weasyprint import HTML

    from .fetcher import ReportFetcher

    fetcher = ReportFetcher(Path(current_app.static_folder), current_app.config["SETTINGS"], base_url=BASE_URL,
                            timeout=FETCH_TIMEOUT_S, budget=FETCH_BUDGET_S)
    HTML(string=html, base_url=BASE_URL, url_fetcher=fetcher).write_pdf(out)
