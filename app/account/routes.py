"""/settings: the time zone and ranking preferences, the browser's zone on a first visit,
the person's email address and sign-ins (sign out everywhere), and leaving: pausing
collection or deleting the account."""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required, logout_user

from ..alerts.service import set_alerts, wants_alerts
from ..db import get_session
from ..errors import problem
from ..models import User
from ..signed import LinkError
from ..time import now
from . import sessions
from .addresses import AddressError, change_email, confirm_email
from .leaving import SPOTIFY_APPS_URL, LeavingError, delete_account, holdings, pause_archiving, resume_archiving
from .preferences import COUNT_PODCASTS, RANK_BY, counts_podcasts, rank_by, save_preferences, selectable_zones

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
                                  timezone_confirmed=True, **{COUNT_PODCASTS: "count_podcasts" in request.form}):
            error = f"“{timezone_name}” is not a time zone this server knows."
        else:
            session.commit()
            flash("Settings saved.", "info")
            return redirect(url_for("account.settings"), code=303)
    return _settings_page(error)


def _settings_page(error: str | None = None, email_error: str | None = None):
    status = 400 if error or email_error else 200
    return render_template("account/settings.html", zones=selectable_zones(), error=error, email_error=email_error,
                           rank_by=rank_by(current_user), count_podcasts=counts_podcasts(current_user),
                           sign_ins=sessions.active(get_session(), current_user.id, now=now()),
                           this_sign_in=sessions.token_hash(current_user.get_id()),
                           session_days=f"{current_app.config['SETTINGS'].session_days:g}",
                           smtp=current_app.config["SETTINGS"].smtp is not None,
                           alerts_on=(current_user.preferences or {}).get("alerts", True) is not False,
                           alerts_reach=wants_alerts(current_user)), status


@bp.post("/settings/collection")
@login_required
def collection():
    """Pause collection (everything kept, nothing polled) or resume it."""
    session = get_session()
    user = session.get(User, current_user.id)
    action = request.form.get("action")
    try:
        if action == "pause":
            pause_archiving(session, user)
            message = "Collection is paused. Your archive is kept; nothing new is added until you resume."
        elif action == "resume":
            resume_archiving(session, user, now=now())
            message = "Collection is running again; the first poll comes within a minute."
        else:
            return problem("Collection was not changed", "Choose pause or resume.", status=400,
                           action=("Settings", url_for("account.settings")))
    except LeavingError as exc:
        session.rollback()
        return problem("Collection was not changed", str(exc), status=409, action=("Settings", url_for(
            "account.settings")))
    session.commit()
    flash(message, "info")
    return redirect(url_for("account.settings"), code=303)


CONFIRM_WORD = "delete"


@bp.route("/settings/delete", methods=["GET", "POST"])
@login_required
def delete():
    """A confirmation page that says what goes, then the deletion itself."""
    session = get_session()
    error = None
    if request.method == "POST":
        if request.form.get("confirm", "").strip().lower() == CONFIRM_WORD:
            user_id = current_user.id
            delete_account(session, user_id)
            session.commit()
            logout_user()  # the sign-ins went with the account; this clears the cookie too
            return redirect(url_for("account.goodbye"), code=303)
        error = f"Type “{CONFIRM_WORD}” to confirm."
    return render_template("account/delete.html", holdings=holdings(session, current_user.id), error=error,
                           confirm_word=CONFIRM_WORD), 400 if error else 200


@bp.get("/goodbye")
def goodbye():
    return render_template("account/goodbye.html", spotify_apps_url=SPOTIFY_APPS_URL)


@bp.post("/settings/email")
@login_required
def email():
    session = get_session()
    user = session.get(User, current_user.id)
    try:
        address = change_email(session, user, request.form.get("email"),
                               secret=current_app.config["SETTINGS"].secret_key, now=now())
    except AddressError as exc:
        session.rollback()
        return _settings_page(email_error=str(exc))
    session.commit()
    flash(f"We sent a confirmation link to {address}. Open it to start receiving mail there.", "info")
    return redirect(url_for("account.settings"), code=303)


@bp.post("/settings/alerts")
@login_required
def alerts():
    """Warnings when collection stops or consent runs out (app/alerts): on by default."""
    session = get_session()
    set_alerts(session, session.get(User, current_user.id), request.form.get("alerts") == "on")
    session.commit()
    flash("Alerts are on." if request.form.get("alerts") == "on" else "Alerts are off.", "info")
    return redirect(url_for("account.settings", _anchor="email"), code=303)


@bp.get("/settings/email/confirm")
def confirm_email_link():
    """The link in the confirmation mail; works signed in or not (the signature is the proof)."""
    session = get_session()
    try:
        user = confirm_email(session, request.args.get("t", ""), secret=current_app.config["SETTINGS"].secret_key,
                             now=now())
    except LinkError as exc:
        return problem("This confirmation link cannot be used",
                       "It has expired or was replaced by a newer one; ask for a new link in Settings."
                       if exc.expired else "The link is incomplete or was changed. Copy the whole link from the "
                       "email, or ask for a new one in Settings.", status=410 if exc.expired else 400,
                       action=("Settings", url_for("account.settings")))
    session.commit()
    flash(f"{user.email} is confirmed: export links and alerts will be sent there.", "info")
    return redirect(url_for("account.settings"), code=303)


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
