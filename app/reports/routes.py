"""/report/preview: the report of a period as a web page (the PDF has the same pages)."""

from __future__ import annotations

from flask import Blueprint, request
from flask_login import current_user, login_required

from ..db import get_database
from ..errors import problem
from ..stats.periods import PeriodError, parse_dates
from ..time import now, zone
from .report import gather, render_html, report_period

bp = Blueprint("reports", __name__, url_prefix="/report")


@bp.get("/preview")
@login_required
def preview():
    try:
        first_day, last_day = parse_dates(request.args.get("from"), request.args.get("to"))
    except PeriodError as exc:
        return problem("That report cannot be shown", str(exc), status=400)
    moment = now()
    period = report_period(first_day, last_day, current_user.timezone, moment.astimezone(zone(current_user.timezone))
                           .date())
    with get_database().reading() as conn:
        report = gather(conn, current_user.id, current_user.display_name, period, now=moment)
    return render_html(report, for_print=False)
