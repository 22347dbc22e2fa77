"""The landing page: what Audiospective is, and the way in (sign-in with Spotify)."""

from __future__ import annotations

from flask import Blueprint, current_app, redirect, render_template, url_for
from flask_login import current_user

from ..db import get_session
from ..membership.seats import seats_left
from ..time import now

bp = Blueprint("public", __name__)


@bp.get("/")
def landing():
    if current_user.is_authenticated:
        return redirect(url_for("stats.dashboard"))
    return render_template("public/landing.html", seats_left=seats_left(
        get_session(), current_app.config["SETTINGS"].founding_member_cap, now()))
