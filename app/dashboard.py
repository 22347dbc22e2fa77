"""The signed-in user's home: who they are, and the health of their archive. The stats
issue adds the charts."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required

from .archival.health import archive_health
from .auth.accounts import reauthorise_by
from .db import get_session

bp = Blueprint("dashboard", __name__)


@bp.get("/dashboard")
@login_required
def index():
    user = current_user
    return render_template(
        "dashboard.html",
        user=user,
        health=archive_health(get_session(), user),
        reauthorise_by=reauthorise_by(user),
    )


@bp.get("/dashboard/archive-health")
@login_required
def archive_health_panel():
    """The panel alone: it refreshes itself (HTMX) so new plays show up without a reload."""
    return render_template("_archive_health.html", health=archive_health(get_session(), current_user))
