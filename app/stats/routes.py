"""Pages and HTMX fragments: the dashboard (each panel its own fragment endpoint), entity
pages, the history. Views parse the request and render; the numbers come from
panels.py, entities.py and history.py."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Blueprint, Flask, abort, current_app, render_template, request
from flask_login import current_user, login_required

from ..account.preferences import counts_podcasts, rank_by
from ..api.ingest import playing_now
from ..archival.health import archive_health
from ..db import get_database, get_session
from ..errors import problem as error_problem
from ..spotify.tokens import reauthorise_by
from ..time import now, zone
from . import charts, entities, history, panels
from .panels import PANELS
from .cache import FragmentCache, archive_version
from .periods import EARLIEST, PERIODS, Period, PeriodError, local_midnight, resolve

bp = Blueprint("stats", __name__)



def init_app(app: Flask) -> None:
    app.extensions["stats_cache"] = FragmentCache()
    app.register_blueprint(bp)


# --- dashboard -------------------------------------------------------------------------------


def _period() -> tuple[Period, str | None]:
    tz = zone(current_user.timezone)
    try:
        return resolve(request.args.get("period"), tz, now(), start=request.args.get("from"),
                       end=request.args.get("to")), None
    except PeriodError as exc:
        return resolve(None, tz, now()), str(exc)


def _rank_by() -> str:
    return rank_by(current_user, request.args.get("rank"))


def _stats_context(period: Period, error: str | None) -> dict:
    return {"period": period, "periods": PERIODS, "period_error": error, "panels": PANELS, "rank_by": _rank_by(),
            "today": now().astimezone(period.tz).date()}


@bp.get("/dashboard")
@login_required
def dashboard():
    period, error = _period()
    session = get_session()
    return render_template("stats/dashboard.html", user=current_user, health=archive_health(session, current_user),
                           reauthorise_by=reauthorise_by(current_user),
                           current=playing_now(session, current_user.id, now=now()), **_stats_context(period, error))


@bp.get("/dashboard/stats")
@login_required
def stats_region():
    """The period selector and the panels, swapped in when the period changes."""
    period, error = _period()
    return render_template("stats/_stats.html", **_stats_context(period, error))


@bp.get("/dashboard/panel/<name>")
@login_required
def panel(name: str):
    if name not in PANELS:
        abort(404)
    period, _ = _period()
    rank_by = _rank_by()
    podcasts = counts_podcasts(current_user)
    database = get_database()
    with database.reading() as conn:
        version = archive_version(conn, current_user.id)
        key = (current_user.id, version, period.tz.key, name, tuple(sorted(period.query().items())), rank_by, podcasts)
        return current_app.extensions["stats_cache"].get_or_render(
            key, lambda: panels.render(name, panels.compute(conn, current_user.id, name, period, rank_by,
                                                            podcasts=podcasts), period, rank_by))


@bp.get("/dashboard/archive-health")
@login_required
def archive_health_panel():
    """The archive-health panel alone: it refreshes itself so new plays show up."""
    return render_template("archival/_health.html", health=archive_health(get_session(), current_user))


# --- entity pages ----------------------------------------------------------------------------


@bp.get("/<any(artist, album, track):kind>/<id:entity_id>")
@login_required
def entity(kind: str, entity_id: int):
    with get_database().reading() as conn:
        stats = entities.entity_stats(conn, current_user.id, kind + "s", entity_id)
    if stats is None:
        abort(404)
    fmt = "%b %Y"
    figure = charts.columns(f"Plays per month of {stats.name}", [(d.strftime(fmt), v) for d, v in stats.monthly])
    return render_template("stats/entity.html", stats=stats, kind=kind, figure=figure)


# --- history ---------------------------------------------------------------------------------


def _history_args() -> tuple[str, history.Cursor | None, str | None, str | None]:
    """(search, where to start, the source filter, what is wrong with the request, if anything)."""
    query = (request.args.get("q") or "").strip()[:100]
    cursor = history.Cursor.decode(request.args.get("cursor"))
    source = request.args.get("source") or None
    problem = None
    if source is not None and source not in history.SOURCES:
        source, problem = None, "There is no such source; here are plays from every source."
    elif cursor is None and request.args.get("cursor"):
        problem = "That link to a page of your history is broken; here are your latest plays."
    elif cursor is None and request.args.get("date"):
        try:
            day = date.fromisoformat(request.args["date"])
            if not EARLIEST <= day <= now().date() + timedelta(days=1):
                raise ValueError(day)
            cursor = history.Cursor.at(local_midnight(day + timedelta(days=1), zone(current_user.timezone)))
        except (ValueError, OverflowError):
            problem = "That is not a date."
    return query, cursor, source, problem


def _history_page(query: str, cursor: history.Cursor | None, source: str | None):
    with get_database().reading() as conn:
        track_ids = history.matching_tracks(conn, current_user.id, query) if query else None
        return history.page(conn, current_user.id, cursor, track_ids=track_ids, source=source)


@bp.get("/history")
@login_required
def history_page():
    query, cursor, source, problem = _history_args()
    rows, next_cursor = _history_page(query, cursor, source)
    return render_template("stats/history.html", rows=rows, next_cursor=next_cursor, query=query, problem=problem,
                           date_value=request.args.get("date", ""), previous_day=None, source=source,
                           sources=history.SOURCES), 400 if problem else 200


@bp.get("/history/more")
@login_required
def history_more():
    """The next page of rows, and a new sentinel that loads the one after when revealed."""
    query, cursor, source, problem = _history_args()
    if problem:
        return error_problem("That page cannot be loaded", problem, status=400)
    rows, next_cursor = _history_page(query, cursor, source)
    previous = cursor.played_at.astimezone(zone(current_user.timezone)).strftime("%Y-%m-%d") if cursor else None
    return render_template("stats/_history_rows.html", rows=rows, next_cursor=next_cursor, query=query,
                           previous_day=previous, source=source)
