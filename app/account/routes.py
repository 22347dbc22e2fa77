"""/settings: the time zone and ranking preferences, the browser's zone on a first visit,
and the person's sign-ins (sign out everywhere)."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, logout_user

from ..db import get_session
from ..time import now
from . import sessions
from .preferences import RANK_BY, rank_by, save_preferences, selectable_zones

bp = Blueprint("account", __name__)


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    error = None
    if request.method == "POST":
        timezone_name = request.form.get("timezone", "")
        wanted_rank = request.form.get("rank_by", "plays")
        session = get_session()
        if wanted_rank not in RANK_BY:
            error = "Choose plays or minutes."
        elif not save_preferences(session, current_user.id, timezone=timezone_name, rank_by=wanted_rank,
                                  timezone_confirmed=True):
            error = f"“{timezone_name}” is not a time zone this server knows."
        else:
            session.commit()
            flash("Settings saved.", "info")
            return redirect(url_for("account.settings"), code=303)
    return render_template("account/settings.html", zones=selectable_zones(), error=error,
                           rank_by=rank_by(current_user), sign_ins=sessions.active(get_session(), current_user.id,
                                                                                   now=now()),
                           this_sign_in=sessions.token_hash(current_user.get_id()),
                           session_days=f"{current_app.config['SETTINGS'].session_days:g}"), 400 if error else 200


@bp.post("/settings/sign-out-everywhere")
@login_required
def sign_out_everywhere():
    """Ends every sign-in of this person, on every device, this one included."""
    session = get_session()
    ended = sessions.end_all(session, current_user.id, now=now())
    session.commit()
    logout_user()
    flash(f"Signed out everywhere ({ended} sign-in{'s' if ended != 1 else ''} ended).", "info")
    return redirect(url_for("public.landing"), code=303)


@bp.post("/settings/timezone")
@login_required
def detect_timezone():
    """The browser's time zone, sent once on a user's first visit; later changes are the
    settings page's. 200 when it changed what is shown (the page reloads), else 204."""
    if (current_user.preferences or {}).get("timezone_confirmed"):
        return "", 204
    name = request.form.get("timezone", "")
    changed = name != current_user.timezone
    session = get_session()
    saved = save_preferences(session, current_user.id, timezone=name, timezone_confirmed=True)
    session.commit()
    return ("", 200) if saved and changed else ("", 204)
