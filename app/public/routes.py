"""The landing page: what Audiospective is, and the way in (sign-in with Spotify)."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

bp = Blueprint("public", __name__)


@bp.get("/")
def landing():
    if current_user.is_authenticated:
        return redirect(url_for("stats.dashboard"))
    return render_template("public/landing.html")
